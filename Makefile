# cruijff_kit: every target sets itself up (venv, pinned installs). Two commands matter to newcomers:
#   make sanity-check   -> the main job: the predictable_or_not sanity check, tiny model, end to end on CPU
#   make test           -> the whole test suite (starts a single-node SLURM first)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c requirements/constraints.txt
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: venv sanity-check test test-fast slurm-up slurm-down bench lint

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[cruijff_kit] installing pinned dependencies into $(VENV) (first time: a few minutes)"
	@$(PIP) --upgrade pip 2>&1 | grep -v "is ignored" || true
	@set -o pipefail; $(PIP) -e '.[train,dev]' 2>&1 | { grep -v "is ignored" || true; }
	@touch $@

sanity-check: venv
	@bash scripts/sanity-check.sh

slurm-up:
	@bash scripts/slurm-local.sh up

slurm-down:
	@bash scripts/slurm-local.sh down

test: venv slurm-up
	@set -o pipefail; CK_REQUIRE_SLURM=1 $(PY) -m pytest -q tests

test-fast: venv
	@$(PY) -m pytest -q -m "not slow" tests

bench: venv
	@$(PY) benchmarks/cli_startup.py
	@$(PY) benchmarks/scaffold_sweep.py

lint: venv
	@$(VENV)/bin/ruff check .

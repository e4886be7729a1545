# cruijff_kit: every target sets itself up (venv, pinned installs). Two commands matter to newcomers:
#   make sanity-check   -> the main job: the predictable_or_not sanity check, tiny model, end to end on CPU
#   make test           -> the whole test suite (starts a single-node SLURM first; validates the Claude Code plugin)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c requirements/constraints.txt
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: venv sanity-check test test-fast slurm-up slurm-down bench lint plugin-check node browser

# The pinned Claude Code CLI that validates the plugin (.claude-plugin/); installed under .ci/node (gitignored).
CLAUDE_CODE_VERSION := 2.1.332
CLAUDE := .ci/node/node_modules/.bin/claude

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

test: venv slurm-up plugin-check browser
	@set -o pipefail; CK_REQUIRE_SLURM=1 $(PY) -m pytest -q tests

# headless Chromium from apt, only when missing: tests/test_pages.py opens every page summarize writes
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "[cruijff_kit] installing chromium with apt-get (headless page tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# node and npm from apt, only when missing (non-interactive)
node:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "[cruijff_kit] installing nodejs and npm with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }

$(CLAUDE): | node
	@echo "[cruijff_kit] installing @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) into .ci/node"
	@npm install --prefix .ci/node --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)

# `claude plugin validate .`: the plugin manifest, the local marketplace, every skill and agent
plugin-check: $(CLAUDE)
	@$(CLAUDE) --version | grep -q '^$(CLAUDE_CODE_VERSION) ' || \
	  npm install --prefix .ci/node --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	@$(CLAUDE) plugin validate . >/dev/null || $(CLAUDE) plugin validate .
	@echo "[cruijff_kit] claude plugin validate . passed (Claude Code $(CLAUDE_CODE_VERSION))"

test-fast: venv
	@$(PY) -m pytest -q -m "not slow" tests

bench: venv
	@$(PY) benchmarks/cli_startup.py
	@$(PY) benchmarks/scaffold_sweep.py

lint: venv
	@$(VENV)/bin/ruff check .

"""Shared fixtures: the repo root, an isolated scratch dir per test, a CLI runner, the tiny model."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from ci_rules import pytest_runtest_makereport, require_slurm  # noqa: F401  (the CI hook, registered here)

REPO = Path(__file__).resolve().parent.parent
SANITY = REPO / "sanity_checks" / "predictable_or_not"


@pytest.fixture(scope="session", autouse=True)
def sanity_data() -> Path:
    """The sanity check's data is generated (seeded, git-ignored), never committed: make it once per session."""
    subprocess.run([sys.executable, str(SANITY / "generate_data.py")], check=True, capture_output=True)
    return SANITY / "data" / "green" / "predictable_or_not"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """An isolated scratch dir; no claude.local.md is picked up from the developer's tree."""
    path = tmp_path / "scratch"
    path.mkdir()
    monkeypatch.setenv("CK_SCRATCH", str(path))
    monkeypatch.setenv("CK_SETTINGS", str(_empty_settings(tmp_path)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    return path


def _empty_settings(tmp_path: Path) -> Path:
    path = tmp_path / "claude.local.md"
    if not path.exists():
        path.write_text("# test settings\n")
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run `python -m cruijff_kit ARGS` in a subprocess: what a user's shell would see."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cruijff_kit", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def cli_env(root: Path, settings: str = "# test settings\n") -> dict:
    """The environment of a CLI subprocess with its own claude.local.md (text `settings`) and scratch dir,
    both under `root`; offline."""
    path = root / "claude.local.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(settings)
    return {**os.environ, "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(path),
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


TINY_BUILD_ENV = {"TIKTOKEN_CACHE_DIR": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@contextmanager
def tiny_build_env():
    """Building or reading a tiny model: offline, and tiktoken's cache off ("": it caches even local files
    by path, so a rebuilt tokenizer at the same path would be read stale)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TINY_BUILD_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The tiny Llama (seed 0), built once per session. Tests read it and never write into it."""
    from cruijff_kit.models import tiny

    with tiny_build_env():
        yield tiny.make_tiny(tmp_path_factory.mktemp("ck-tiny") / "tiny-llama", seed=0)

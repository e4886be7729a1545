"""A non-editable install (a wheel, as `pip install .` builds it) carries everything scaffolding needs.

The package is built from a copy of the tracked files into a wheel, installed with `--target` into an empty
folder, and run from there (PYTHONPATH first, so this checkout's editable install is not used). Every bundled
design is scaffolded with it and the rendered files are compared with the editable install's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DESIGNS = {
    "predictable_or_not": REPO / "sanity_checks" / "predictable_or_not" / "experiment_summary.yaml",
    "sft_then_dpo": REPO / "examples" / "sft_then_dpo" / "experiment_summary.yaml",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """cruijff_kit installed from a wheel into an empty target folder."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(src)],
                   check=True, capture_output=True)
    wheel = next((work / "dist").glob("cruijff_kit-*.whl"))
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    return target


def _ck(target: Path, *args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff_kit", *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(target)})


def test_wheel_carries_templates_and_schema(installed):
    pkg = installed / "cruijff_kit"
    assert (pkg / "experiment" / "schema.json").is_file()
    templates = {p.relative_to(pkg / "templates").as_posix() for p in (pkg / "templates").rglob("*.j2")}
    shipped = {p.relative_to(REPO / "cruijff_kit" / "templates").as_posix()
               for p in (REPO / "cruijff_kit" / "templates").rglob("*.j2")}
    assert templates == shipped and len(shipped) > 10


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_wheel_scaffolds_bundled_design(installed, name, scratch, tmp_path):
    design_src = DESIGNS[name]
    copy = tmp_path / "design" / name
    shutil.copytree(design_src.parent, copy, ignore=shutil.ignore_patterns("answer42_prefs*", "__pycache__"))
    env = dict(os.environ)
    where = subprocess.run([sys.executable, "-c", "import cruijff_kit; print(cruijff_kit.__file__)"],
                           capture_output=True, text=True, env={**env, "PYTHONPATH": str(installed)}, check=True,
                           cwd=tmp_path)
    assert where.stdout.strip().startswith(str(installed)), "the wheel's package must be the one imported"
    proc = _ck(installed, "scaffold", str(copy / design_src.name), "--profile", "tiny", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    jobs = list((scratch).rglob("jobs.json"))
    assert len(jobs) == 1, f"one scaffolded experiment expected, found {jobs}"
    exp_dir = jobs[0].parent
    configs = list(exp_dir.rglob("finetune.yaml"))
    scripts = list(exp_dir.rglob("finetune.slurm"))
    assert configs and len(configs) == len(scripts)
    for script in scripts:
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0

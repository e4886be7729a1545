"""The suite can fail: under CI a SLURM skip is a failure, outside CI it stays a skip."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PROBE = """
import pytest

def test_needs_slurm():
    pytest.skip("sbatch is not installed: start a local SLURM with `bash scripts/slurm-local.sh up`")

def test_needs_two_cpus():
    pytest.skip("the node has fewer than 2 CPUs")
"""


@pytest.mark.parametrize("ci,expected", [("true", "1 failed, 1 skipped"), ("", "2 skipped")])
def test_slurm_skip_fails_under_ci(ci, expected, tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "CI": ci, "CK_REQUIRE_SLURM": "", "PYTHONPATH": f"{TESTS}{os.pathsep}"
           + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "ci_rules", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert expected in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == (1 if ci else 0)
    if ci:
        assert "CI requires a working SLURM" in proc.stdout

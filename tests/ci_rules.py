"""Suite rules for CI: a SLURM that does not answer fails the suite instead of skipping it.

conftest.py registers the hook; tests/test_suite_rules.py runs it against a probe test in a subprocess.
"""
from __future__ import annotations

import os

import pytest


def require_slurm() -> bool:
    """CI=true (or CK_REQUIRE_SLURM=1): a SLURM that does not answer fails the suite instead of skipping it."""
    return (os.environ.get("CI", "").lower() in ("true", "1", "yes")
            or os.environ.get("CK_REQUIRE_SLURM", "") == "1")


_SLURM_SKIP = ("slurm", "sbatch", "sinfo", "sacct")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a test skipped because SLURM is missing is a failure: a dead cluster must not look green."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and require_slurm()) or getattr(report, "wasxfail", None) is not None:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(word in reason.lower() for word in _SLURM_SKIP):
        report.outcome = "failed"
        report.longrepr = f"CI requires a working SLURM, but the test was skipped: {reason}"

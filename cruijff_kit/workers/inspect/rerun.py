"""How a grouped eval job is rerun (`resubmit --failed`, an interrupted run): only its unfinished cells.

The run engine asks this module through cruijff_kit.workers.rerun_policy, as it asks the torchtune one:
    rerun_env(job, js, output_dir, exp_dir) -> env   CK_EVAL_SKIP_DONE=1 for a grouped job
    oom_retry(job, js, exp_dir)                      no smaller setting to retry with
    notes(env) -> [str]                              how the Status table names the override
tools/inspect/run_group.py then skips every cell that already has a successful .eval log.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.workers.inspect.groups import SKIP_DONE

OVERRIDES = (SKIP_DONE,)  # set only by the engine: a job never inherits it from the shell


@dataclass
class NoRetry:
    env: dict = field(default_factory=dict)
    note: str = ""
    before: str = ""


def rerun_env(job: JobSpec, js: dict, output_dir: Path | None, exp_dir: Path) -> dict:
    return {SKIP_DONE: "1"} if len(job.cells()) > 1 else {}


def oom_retry(job: JobSpec, js: dict, exp_dir: Path) -> NoRetry:
    return NoRetry()


def notes(env: dict) -> list[str]:
    return ["finished cells not evaluated again"] if env.get(SKIP_DONE) else []

"""The job graph: the contract between `scaffold` (writes it) and `run` (reads it).

`{experiment_dir}/jobs.json` lists every job script scaffold rendered, with its dependencies.
Both executors run exactly these scripts (`sbatch SCRIPT` or `bash SCRIPT`), so they cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout
from cruijff_kit.files import read_json

JOBS_FILE = layout.JOBS


@dataclass
class JobSpec:
    id: str  # "pp_output_only.train", "pp_output_only.eval.next_value_epoch1"
    kind: str  # "train" | "eval" | "prefs" ...
    run: str
    script: str  # path relative to the experiment dir
    after: list[str] = field(default_factory=list)  # job ids that must COMPLETE first (afterok)
    log: str = ""  # absolute path of stdout/stderr; may contain %j (the job id)
    output_dir: str = ""  # where the job writes its results (checkpoints, eval logs)
    stage: str = ""
    task: str = ""
    epoch: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def exit_code_file(self) -> str:
        """Written by the job script itself when it ends (fallback when accounting is absent)."""
        return layout.exit_code_file(self.script)


def jobs_payload(experiment: str, jobs: list[JobSpec]) -> dict:
    return {"experiment": experiment, "version": 1, "jobs": [dict(vars(j)) for j in jobs]}


def read_jobs(exp_dir: str | Path) -> list[JobSpec]:
    path = layout.jobs_file(exp_dir)
    data = read_json(path)
    if data is None:
        raise UserError(f"no {JOBS_FILE}: this experiment has not been scaffolded", where=str(exp_dir),
                        hint=f"run `cruijff-kit scaffold {exp_dir}` first")
    return [JobSpec(**job) for job in data["jobs"]]

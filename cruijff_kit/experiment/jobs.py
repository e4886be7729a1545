"""The job graph: the contract between `scaffold` (writes it) and `run` (reads it).

`{experiment_dir}/jobs.json` lists every job script scaffold rendered, with its dependencies.
Every executor runs exactly these scripts (`sbatch SCRIPT` or `bash SCRIPT`), so they cannot drift.
`resources` holds what the script's #SBATCH lines ask for (time, mem, cpus, gpus, partition, account,
constraint), so a backend need not parse the script; it is optional ({} in jobs.json files written before).
A grouped eval job (evaluation.group checkpoint | run) evaluates several cells: `meta["cells"]` lists them
and `cells()` gives one JobSpec view per cell (its cell id, task, epoch and log dir), so whatever reads eval
results per cell (gates, status) reads a grouped job the same way as per-cell jobs.
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
    resources: dict = field(default_factory=dict)  # {time, mem, cpus, gpus, partition, account, constraint}

    def cells(self) -> list[JobSpec]:
        """The eval cells this job evaluates: itself, or one view per cell of a grouped eval job."""
        members = self.meta.get("cells")
        if not isinstance(members, list):
            return [self]
        return [JobSpec(id=c["id"], kind=self.kind, run=self.run, script=self.script, after=list(self.after),
                        log=self.log, output_dir=c.get("log_dir", ""), stage=self.stage, task=c.get("task", ""),
                        epoch=c.get("epoch"), meta={**c, "group": self.id}) for c in members]

    @property
    def exit_code_file(self) -> str:
        """Written by the job script itself when it ends (fallback when accounting is absent)."""
        return layout.exit_code_file(self.script)


def jobs_payload(experiment: str, jobs: list[JobSpec]) -> dict:
    """jobs.json; an empty `resources` is left out (the file stays as it was before the field existed)."""
    return {"experiment": experiment, "version": 1,
            "jobs": [{k: v for k, v in vars(j).items() if v or k != "resources"} for j in jobs]}


def read_jobs(exp_dir: str | Path) -> list[JobSpec]:
    path = layout.jobs_file(exp_dir)
    data = read_json(path, kind=dict)
    if data is None:
        raise UserError(f"no {JOBS_FILE}: this experiment has not been scaffolded", where=str(exp_dir),
                        hint=f"run `cruijff-kit scaffold {exp_dir}` first")
    fix = f"re-run `cruijff-kit scaffold {exp_dir}` to write it again"
    jobs = data.get("jobs")
    if not isinstance(jobs, list):
        raise UserError("has no list of jobs", where=str(path), path="jobs", hint=fix)
    known = set(JobSpec.__dataclass_fields__)
    out = []
    for i, job in enumerate(jobs):
        try:
            if not isinstance(job, dict) or not set(job) <= known:
                raise TypeError
            spec = JobSpec(**job)
            if not (all(isinstance(getattr(spec, k), str) for k in ("id", "kind", "run", "script"))
                    and isinstance(spec.after, list) and isinstance(spec.meta, dict)):
                raise TypeError
        except TypeError:
            raise UserError("is not a job this version of cruijff_kit wrote", where=str(path),
                            path=f"jobs[{i}]", hint=fix) from None
        out.append(spec)
    return out

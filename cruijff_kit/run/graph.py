"""The job graph of jobs.json: jobs by id, a topological order, children, and the selections of --only/--stage.

Pure: no state and no I/O beyond reading jobs.json (and checking that every job's script exists). A bad
graph (duplicate id, unknown dependency, missing script, a cycle) is a UserError naming jobs.json.
"""
from __future__ import annotations

from pathlib import Path

from cruijff_kit.errors import ProblemList, UserError, closest
from cruijff_kit.experiment.jobs import JOBS_FILE, JobSpec, read_jobs
from cruijff_kit.files import read_json

STAGES = ("train", "eval", "all")  # --stage choices


def experiment_dir(path: str | Path) -> Path:
    """An experiment dir, or a file inside one (experiment_summary.yaml, jobs.json)."""
    p = Path(path).expanduser().resolve()
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"experiment directory not found: {path}", where=str(path),
                        hint="give the directory `cruijff-kit scaffold` wrote (it holds jobs.json)")
    return p


def stage_of(job: JobSpec) -> str:
    """The --stage a job belongs to: eval cells are `eval`, everything else (training, preparation) `train`."""
    return "eval" if job.kind == "eval" else "train"


class JobGraph:
    def __init__(self, jobs: list[JobSpec], *, experiment: str = "", exp_dir: str | Path | None = None):
        self.jobs = list(jobs)
        self.by_id = {j.id: j for j in self.jobs}
        self.experiment = experiment
        self.exp_dir = Path(exp_dir) if exp_dir is not None else None
        self.check()
        self.order = self._topological()
        self.children: dict[str, list[str]] = {j.id: [] for j in self.jobs}
        for job in self.jobs:
            for dep in job.after:
                self.children[dep].append(job.id)

    @classmethod
    def load(cls, exp_dir: str | Path) -> JobGraph:
        """The graph of `{exp_dir}/jobs.json` (exp_dir already resolved by experiment_dir)."""
        exp_dir = Path(exp_dir)
        jobs = read_jobs(exp_dir)
        experiment = (read_json(exp_dir / JOBS_FILE, {}) or {}).get("experiment") or exp_dir.name
        return cls(jobs, experiment=experiment, exp_dir=exp_dir)

    @property
    def where(self) -> str:
        return str(self.exp_dir / JOBS_FILE) if self.exp_dir is not None else JOBS_FILE

    def check(self) -> None:
        """Duplicate ids, unknown dependencies and missing scripts, all at once (cycles: _topological)."""
        problems = ProblemList(self.where)
        seen = set()
        for i, job in enumerate(self.jobs):
            if job.id in seen:
                problems.error(f"jobs[{i}].id", f"duplicate job id {job.id!r}", "re-run `cruijff-kit scaffold`")
            seen.add(job.id)
            for k, dep in enumerate(job.after):
                if dep not in self.by_id:
                    problems.error(f"jobs[{i}].after[{k}]", f"unknown job {dep!r}",
                                   closest(dep, self.by_id) or "re-run `cruijff-kit scaffold`")
            if self.exp_dir is not None and not (self.exp_dir / job.script).is_file():
                problems.error(f"jobs[{i}].script", f"script not found: {self.exp_dir / job.script}",
                               f"re-run `cruijff-kit scaffold {self.exp_dir}`")
        problems.raise_if_errors()

    def _topological(self) -> list[str]:
        order, done, visiting = [], set(), set()

        def visit(job_id: str, path: list[str]) -> None:
            if job_id in done:
                return
            if job_id in visiting:
                raise UserError(f"dependency cycle: {' -> '.join(path + [job_id])}", where=self.where,
                                hint="re-run `cruijff-kit scaffold`")
            visiting.add(job_id)
            for dep in self.by_id[job_id].after:
                visit(dep, path + [job_id])
            visiting.discard(job_id)
            done.add(job_id)
            order.append(job_id)

        for job in self.jobs:
            visit(job.id, [])
        return order

    def select(self, only: list[str] | None = None, stage: str = "all") -> list[str]:
        """Job ids of the runs in `only` (all when empty) and the stage (train: everything but eval)."""
        runs = {j.run for j in self.jobs}
        if only:
            problems = ProblemList("--only")
            for name in only:
                if name not in runs:
                    hint = closest(name, runs)
                    problems.error("", f"no run named {name!r} in this experiment",
                                   hint or f"runs: {', '.join(sorted(runs))}")
            problems.raise_if_errors()
        if stage not in STAGES:
            raise UserError(f"unknown stage {stage!r}", where="--stage", hint="use train, eval or all")
        return [i for i in self.order if (not only or self.by_id[i].run in only)
                and (stage == "all" or stage_of(self.by_id[i]) == stage)]

    def descendants(self, job_id: str) -> list[str]:
        """Every job that (transitively) waits on `job_id`, in topological order."""
        out, stack = [], list(self.children[job_id])
        while stack:
            child = stack.pop()
            if child not in out:
                out.append(child)
                stack.extend(self.children[child])
        return [i for i in self.order if i in out]

    def ancestors(self, job_ids) -> set[str]:
        """Every job that the given jobs (transitively) wait on."""
        out, stack = set(), [d for i in job_ids for d in self.by_id[i].after]
        while stack:
            dep = stack.pop()
            if dep not in out:
                out.add(dep)
                stack.extend(self.by_id[dep].after)
        return out

"""One executor interface for every backend (submitit spirit): the engine never knows which it drives.

    submit(job, after, env=None) -> native id    queue one job; it starts once every id in `after`
                                                  (native ids of the same executor) has COMPLETED
    poll(ids) -> {native id: JobStatus}           what each job is doing now (unknown ids are left out)
    cancel(ids)                                   stop them (queued or running)

States: pending, running, completed, failed, cancelled; `reason` says why a job failed ("exit code 3",
"timeout", "oom", "node failure", ...). Every executor runs the SAME rendered script: `bash SCRIPT`
(local) or `sbatch SCRIPT` (SLURM); the script writes its exit status to `<script>.exitcode`.

What the engine needs to know about a backend it reads from declared class attributes, never from its
name (see Executor below); a new backend is one class plus one line in executors/__init__.py EXECUTORS.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.run.state import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING  # noqa: F401 (re-export)

TIMEOUT, OOM = "timeout", "oom"  # failure reasons the engine acts on
NEVER_SATISFIED = "dependency never satisfied"  # a cancelled dependent: the engine cancels it in the backend too
# a failed job whose log tail holds one of these ran out of memory
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "torch.OutOfMemoryError", "OUT_OF_MEMORY",
               "oom-kill", "Out Of Memory")
TAIL_LINES = 20


@dataclass
class JobStatus:
    state: str
    exit_code: int | None = None
    reason: str = ""
    started: str | None = None
    ended: str | None = None
    elapsed_s: float | None = None
    peak_rss_mb: float | None = None
    pid: int | None = None
    native_state: str = ""  # the backend's own word (SLURM: COMPLETED, OUT_OF_MEMORY, ...)


class SubmitError(Exception):
    """The backend refused a job (sbatch: bad partition, account, ...): the job fails with this message."""


class Executor(ABC):
    name = "abstract"  # the --executor word and what state.json records per job
    title = "abstract"  # how messages name it ("SLURM jobs keep running")
    # capabilities the engine acts on
    holds_dependencies = True  # submit(job, after=ids) holds the job until those jobs COMPLETED
    needs_runner = False  # jobs live in the runner process: `run` blocks until done, only the runner
    #                       that submitted a job can poll it, and a dead runner's jobs are cleaned up
    poll_interval = 1.0  # default seconds between polls (--poll-interval overrides)
    lost_after: int | None = None  # a submitted job the backend no longer knows, this many polls in a
    #                                row, has failed ("lost"); None: never
    continues_gates = False  # can submit a continuation job that decides stage gates without a runner

    def __init__(self, exp_dir: str | Path, *, max_parallel: int = 1, require: bool = True):
        """max_parallel: jobs at once (a backend with its own scheduler ignores it); require: fail now
        (UserError) when the backend's tools are missing, else only when a job is submitted."""
        self.exp_dir = Path(exp_dir).resolve()
        self.max_parallel = max(1, int(max_parallel or 1))

    # -- executor-owned state in state.json (e.g. the local executor's job counter) -----------------------
    def load_state(self, state: dict) -> None:
        """Take what this executor keeps in state.json (called once, right after it is made)."""
        return None

    def save_state(self, state: dict) -> None:
        """Put what this executor keeps into state.json (called under the lock after every submit)."""
        return None

    def script_path(self, job: JobSpec) -> Path:
        return self.exp_dir / job.script

    def exit_code_path(self, job: JobSpec) -> Path:
        return self.exp_dir / job.exit_code_file

    @abstractmethod
    def submit(self, job: JobSpec, after: list[str], env: dict | None = None) -> str: ...

    @abstractmethod
    def poll(self, ids: list[str]) -> dict[str, JobStatus]: ...

    @abstractmethod
    def cancel(self, ids: list[str]) -> None: ...

    def describe(self, job: JobSpec, after: list[str], env: dict | None = None) -> str:
        """The command `submit` runs, for --dry-run and the log."""
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        return f"{prefix + ' ' if prefix else ''}bash {self.script_path(job)}"

    def track(self, native: str, job: JobSpec) -> None:
        """Tell the executor which job a native id (submitted by an earlier invocation) belongs to."""
        return None

    def close(self) -> None:
        """Release what the executor holds (the local executor kills its children)."""
        return None

    @classmethod
    def stop_detached(cls, native: str, pid: int | None, *, graceful: bool = False) -> None:
        """needs_runner executors: stop a job of another (or a dead) runner, one this process holds no
        handle on; graceful: give it a moment to end (a user's cancel) before it is killed."""
        return None

    def submit_continuation(self, engine, st: dict, after: list[str]) -> str:
        """continues_gates executors: submit the job that continues the experiment once the jobs `after`
        ended (it decides the gate and submits the next stage); returns its id; RuntimeError on refusal."""
        raise RuntimeError(f"the {self.name} executor cannot continue an experiment without a runner")


def job_env(env: dict | None) -> dict:
    """The submitting environment with the engine's overrides: inherited override vars (those of the
    rerun policies, cruijff_kit.workers.rerun_overrides) never leak."""
    from cruijff_kit.workers import rerun_overrides

    overrides = rerun_overrides()
    base = {k: v for k, v in os.environ.items() if k not in overrides}
    base.update({k: str(v) for k, v in (env or {}).items()})
    return base


def resolve_log(job: JobSpec, native_id: str, exp_dir: Path) -> str:
    """The job's stdout/stderr file with %j replaced by its native id."""
    pattern = job.log or str(layout.job_log(exp_dir / Path(job.script).parent))
    return pattern.replace("%j", str(native_id))


def log_tail(path: str | Path, n: int = TAIL_LINES) -> list[str]:
    """Last `n` lines of a (possibly large) log file; [] when it does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return [ln.rstrip() for ln in deque(lines, maxlen=n)]


def looks_oom(lines: list[str]) -> bool:
    return any(marker in line for line in lines for marker in OOM_MARKERS)


def read_exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def state_for_exit(code: int | None) -> tuple[str, str]:
    if code == 0:
        return COMPLETED, ""
    if code is None:
        return FAILED, "no exit status"
    if code in (137, 143) or code < 0:
        return FAILED, f"killed (exit code {code})"
    return FAILED, f"exit code {code}"

"""SLURM executor: `sbatch --parsable [--dependency=afterok:A:B] SCRIPT`, status from squeue then sacct.

Status order: squeue (authoritative for queued/running jobs), then `sacct --parsable2 -n -j IDS -o
JobID,State,ExitCode,Elapsed,MaxRSS,Start,End` for jobs that left the queue (job line for the state,
the `.batch`/`.extern` steps only for MaxRSS), then `scontrol show job` and finally the
`<script>.exitcode` file the job script writes, for clusters without accounting.
"""
from __future__ import annotations

import getpass
import re
import shlex
import shutil
import subprocess

from cruijff_kit.errors import UserError
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.run.executors.base import (
    NEVER_SATISFIED,
    CANCELLED,
    COMPLETED,
    FAILED,
    OOM,
    SubmitError,
    PENDING,
    RUNNING,
    TIMEOUT,
    Executor,
    JobStatus,
    job_env,
    read_exit_code,
    state_for_exit,
)

# SLURM state -> (our state, failure reason)
STATE_MAP = {
    "PENDING": (PENDING, ""), "CONFIGURING": (PENDING, ""), "REQUEUED": (PENDING, ""),
    "REQUEUE_HOLD": (PENDING, ""), "REQUEUE_FED": (PENDING, ""), "RESV_DEL_HOLD": (PENDING, ""),
    "SUSPENDED": (PENDING, ""), "STOPPED": (PENDING, ""), "SPECIAL_EXIT": (PENDING, ""),
    "RUNNING": (RUNNING, ""), "COMPLETING": (RUNNING, ""), "SIGNALING": (RUNNING, ""),
    "STAGE_OUT": (RUNNING, ""), "RESIZING": (RUNNING, ""),
    "COMPLETED": (COMPLETED, ""),
    "FAILED": (FAILED, ""), "BOOT_FAIL": (FAILED, "boot failure"), "DEADLINE": (FAILED, "deadline"),
    "NODE_FAIL": (FAILED, "node failure"), "PREEMPTED": (FAILED, "preempted"), "REVOKED": (FAILED, "revoked"),
    "TIMEOUT": (FAILED, TIMEOUT), "OUT_OF_MEMORY": (FAILED, OOM),
    "CANCELLED": (CANCELLED, "cancelled"),
}
SACCT_FIELDS = "JobID,State,ExitCode,Elapsed,MaxRSS,Start,End"
CMD_TIMEOUT_S = 60


def map_state(slurm_state: str, pending_reason: str = "") -> tuple[str, str]:
    """(our state, reason) for a SLURM state word such as 'CANCELLED by 1000' or 'OUT_OF_MEMORY'."""
    word = (slurm_state or "").split()[0].rstrip("+") if slurm_state else ""
    if pending_reason == "DependencyNeverSatisfied":
        return CANCELLED, NEVER_SATISFIED
    state, reason = STATE_MAP.get(word, (FAILED, f"SLURM state {slurm_state}"))
    if word == "CANCELLED" and " by " in slurm_state:
        reason = f"cancelled ({slurm_state.strip()})"
    return state, reason


def parse_elapsed(text: str) -> float | None:
    """'1-02:03:04', '02:03:04', '03:04', '04.5' -> seconds."""
    if not text or text in ("Unknown", "INVALID"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return days * 86400 + seconds


def parse_mem_mb(text: str) -> float | None:
    """sacct MaxRSS such as '4680K', '1.5G', '123456' (bytes)... -> MB."""
    m = re.match(r"^([\d.]+)([KMGTP]?)", text or "")
    if not m:
        return None
    scale = {"": 1 / 1024 / 1024, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2, "P": 1024 ** 3}[m.group(2)]
    return round(float(m.group(1)) * scale, 1)


def parse_exit(text: str) -> int | None:
    """sacct/scontrol ExitCode 'code:signal' -> a shell exit status (128+signal when signalled)."""
    try:
        code, _, sig = (text or "").partition(":")
        code, sig = int(code), int(sig or 0)
    except ValueError:
        return None
    return code if code or not sig else 128 + sig


# JobSpec.resources key -> sbatch option (the same #SBATCH lines the job script carries, from jobs.json)
RESOURCE_OPTIONS = {"time": "--time", "mem": "--mem", "cpus": "--cpus-per-task", "gpus": "--gres=gpu",
                    "partition": "--partition", "account": "--account", "constraint": "--constraint"}


def resource_args(resources: dict | None) -> list[str]:
    """sbatch options for a job's resources from jobs.json; empty or zero values are left out, so a job
    scaffolded before jobs.json carried resources keeps its #SBATCH lines alone."""
    out = []
    for key, option in RESOURCE_OPTIONS.items():
        value = (resources or {}).get(key)
        if value in (None, "", 0, "0"):
            continue
        out.append(f"{option}:{value}" if option == "--gres=gpu" else f"{option}={value}")
    return out


def _time(text: str) -> str | None:
    return None if not text or text in ("Unknown", "None", "N/A") else text


class SlurmExecutor(Executor):
    name, title = "slurm", "SLURM"
    holds_dependencies = True  # --dependency=afterok
    needs_runner = False  # jobs live on the cluster: `run` submits and returns; anyone can poll them
    poll_interval = 10.0
    lost_after = 5  # neither squeue, sacct, scontrol nor an exit code file knows it, 5 polls in a row
    continues_gates = True  # continuation.py: an sbatch job decides the gate and submits the next stage

    def __init__(self, exp_dir, *, max_parallel: int = 1, require: bool = True):
        super().__init__(exp_dir, max_parallel=max_parallel, require=require)
        if require and shutil.which("sbatch") is None:
            raise UserError("sbatch not found: this machine has no SLURM client", where="--executor slurm",
                            hint="use --executor local, or start a local SLURM with `bash scripts/slurm-local.sh up`")
        self.scripts: dict[str, JobSpec] = {}  # native id -> job (for the exit-code-file fallback)

    def track(self, native: str, job: JobSpec) -> None:
        self.scripts[native] = job

    def sbatch_args(self, job: JobSpec, after: list[str]) -> list[str]:
        args = ["sbatch", "--parsable", *resource_args(job.resources)]
        if after:
            args.append("--dependency=afterok:" + ":".join(after))
        return args + [str(self.script_path(job))]

    def describe(self, job: JobSpec, after: list[str], env: dict | None = None) -> str:
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        args = self.sbatch_args(job, after)
        return (prefix + " " if prefix else "") + " ".join(args[:-1] + [shlex.quote(args[-1])])

    def submit(self, job: JobSpec, after: list[str], env: dict | None = None) -> str:
        script = self.script_path(job)
        proc = subprocess.run(self.sbatch_args(job, after), cwd=str(script.parent), env=job_env(env),
                              capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                              start_new_session=True)
        if proc.returncode != 0:
            message = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
            raise SubmitError(f"sbatch: {message}")
        native = proc.stdout.strip().split(";")[0]
        if not native.isdigit():
            raise SubmitError(f"sbatch printed no job id: {proc.stdout.strip()!r}")
        self.track(native, job)
        return native

    def cancel(self, ids: list[str]) -> None:
        if ids:
            self._run(["scancel", *ids])

    def submit_continuation(self, engine, st: dict, after: list[str]) -> str:
        from cruijff_kit.run.executors import continuation

        return continuation.submit(engine, st, after)

    # -- status -------------------------------------------------------------------------------------------
    def poll(self, ids: list[str]) -> dict[str, JobStatus]:
        ids = [str(i) for i in ids]
        if not ids:
            return {}
        out = self._squeue(ids)
        gone = [i for i in ids if i not in out]  # left the queue (or never seen by squeue)
        if gone:
            out.update(self._sacct(gone))
        for native in gone:
            known = out.get(native)
            if known is not None and known.state in (COMPLETED, FAILED, CANCELLED):
                continue
            # no accounting, or accounting lags behind: scontrol, then the script's own exit code file
            status = self._scontrol(native)
            if status is None or status.state in (PENDING, RUNNING):
                status = self._exit_file(native) or status
            if status is not None and (known is None or status.state not in (PENDING, RUNNING)):
                out[native] = status
        for native, status in out.items():
            # SLURM folds a signal death (exit 137) into '9:0', and a batch shell that trapped the time
            # limit's TERM can end 'COMPLETED': the script's own record (128+N) is exact
            if status.state == COMPLETED or (status.state == FAILED and status.reason.startswith("exit code")):
                code = read_exit_code(self.exit_code_path(self.scripts[native])) if native in self.scripts else None
                if code is not None and code != 0:
                    status.state, (_, status.reason) = FAILED, state_for_exit(code)
                    status.exit_code = code
        return out

    def _run(self, args: list[str]) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                                  start_new_session=True)
        except (OSError, subprocess.TimeoutExpired):
            return None

    def _squeue(self, ids: list[str]) -> dict[str, JobStatus]:
        proc = self._run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%r|%S"])
        if proc is None or proc.returncode != 0:
            return {}
        wanted, out = set(ids), {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 3 or parts[0] not in wanted:
                continue
            native, word, why = parts[0], parts[1], parts[2]
            state, reason = map_state(word, why)
            if state in (COMPLETED, FAILED) or word == "COMPLETING":
                continue  # leaving the queue: sacct has the exit code
            started = _time(parts[3]) if state == RUNNING and len(parts) > 3 else None
            out[native] = JobStatus(state=state, reason=reason, started=started, native_state=word)
        return out

    def _sacct(self, ids: list[str]) -> dict[str, JobStatus]:
        proc = self._run(["sacct", "--parsable2", "-n", "-j", ",".join(ids), "-o", SACCT_FIELDS])
        if proc is None or proc.returncode != 0:
            return {}
        jobs: dict[str, list[str]] = {}
        rss: dict[str, float] = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 7:
                continue
            job_id, _, step = parts[0].partition(".")
            if step:  # .batch / .extern / numbered steps: only their peak memory counts
                mem = parse_mem_mb(parts[4])
                if mem is not None:
                    rss[job_id] = max(rss.get(job_id, 0.0), mem)
                continue
            jobs[job_id] = parts
        out = {}
        for job_id, parts in jobs.items():
            _, word, exit_text, elapsed, maxrss, start, end = parts[:7]
            state, reason = map_state(word)
            code = parse_exit(exit_text)
            if state == FAILED and not reason:
                reason = f"exit code {code}" if code is not None else "failed"
            if state in (PENDING, RUNNING):
                code = None
            mem = rss.get(job_id, parse_mem_mb(maxrss))
            out[job_id] = JobStatus(state=state, exit_code=code, reason=reason, started=_time(start),
                                    ended=_time(end) if state not in (PENDING, RUNNING) else None,
                                    elapsed_s=parse_elapsed(elapsed), peak_rss_mb=mem, native_state=word)
        return out

    def _scontrol(self, native: str) -> JobStatus | None:
        proc = self._run(["scontrol", "show", "job", native])
        if proc is None or proc.returncode != 0:
            return None
        fields = dict(re.findall(r"(\w+)=(\S*)", proc.stdout))
        word = fields.get("JobState", "")
        if not word:
            return None
        state, reason = map_state(word, fields.get("Reason", ""))
        code = parse_exit(fields.get("ExitCode", "")) if state not in (PENDING, RUNNING) else None
        if state == FAILED and not reason:
            reason = f"exit code {code}"
        return JobStatus(state=state, exit_code=code, reason=reason, started=_time(fields.get("StartTime", "")),
                         ended=_time(fields.get("EndTime", "")) if state not in (PENDING, RUNNING) else None,
                         elapsed_s=parse_elapsed(fields.get("RunTime", "")), native_state=word)

    def _exit_file(self, native: str) -> JobStatus | None:
        job = self.scripts.get(native)
        if job is None:
            return None
        code = read_exit_code(self.exit_code_path(job))
        if code is None:
            return None
        state, reason = state_for_exit(code)
        return JobStatus(state=state, exit_code=code, reason=reason, native_state="exitcode file")

"""`{exp}/.ck/state.json`: the run state of every job, the single source of truth for `status`.

Written atomically (files.write_json) so a reader never sees half a file, and changed only under an
exclusive flock on `.ck/state.lock` (read-modify-write), so the runner, `status` in another terminal,
`cancel` and `resubmit` never lose each other's updates.

Per job: state (pending|running|completed|failed|cancelled), native_id (SLURM id or local-N; null while
not submitted), executor, attempts, submitted/started/ended timestamps, exit_code, reason, log path,
and the tail of the log of a failed job. The process driving the experiment (`runner`) is recorded
with its pid and process start time so `status` can tell a live runner from a dead one.
"""
from __future__ import annotations

import copy
import fcntl
import os
import socket
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout
from cruijff_kit.files import read_json, write_json

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
STATES = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
ACTIVE = frozenset({PENDING, RUNNING})
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

STATE_FILE = layout.STATE
LOCK_FILE = layout.STATE_LOCK
VERSION = 1

# reasons with a meaning for the engine
INTERRUPTED = "interrupted"
BY_USER = "cancelled by user"
DEPENDENCY_PREFIX = "dependency "


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def parse_time(text) -> datetime | None:
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def seconds_between(start, end) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return round((b - a).total_seconds(), 1) if a and b else None


def new_job() -> dict:
    return {"state": PENDING, "native_id": None, "executor": None, "attempts": 0, "submitted": None,
            "started": None, "ended": None, "exit_code": None, "reason": "", "log": "", "pid": None,
            "env": {}, "tail": [], "oom_retried": False, "wall_s": None, "peak_rss_mb": None}


def is_submitted(js: dict) -> bool:
    """Handed to an executor and not finished (queued or running)."""
    return js["state"] in ACTIVE and bool(js.get("native_id"))


def reset_job(js: dict, *, keep_env: bool = False) -> dict:
    """Back to pending, not submitted: for a rerun. Attempts and retry flags are kept."""
    fresh = new_job()
    for key in ("attempts", "oom_retried"):
        fresh[key] = js.get(key, fresh[key])
    if keep_env:
        fresh["env"] = dict(js.get("env") or {})
    js.clear()
    js.update(fresh)
    return js


# -- the process driving an experiment ------------------------------------------------------------------
def process_start(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields and fields[0] == "Z":  # a zombie is dead
        return None
    return fields[19] if len(fields) > 19 else None


def runner_record(executor: str, command: str = "run") -> dict:
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid), "host": socket.gethostname(), "executor": executor,
            "command": command, "started": now()}


def runner_alive(record: dict | None) -> bool:
    """True when the recorded runner process still runs (same host, same pid, same start time)."""
    if not record:
        return False
    if record.get("host") != socket.gethostname():
        return True  # cannot tell from here; assume it runs
    start = process_start(int(record["pid"]))
    return start is not None and start == record.get("pid_start")


# -- the store ------------------------------------------------------------------------------------------
class StateStore:
    def __init__(self, exp_dir: str | Path):
        self.exp_dir = Path(exp_dir)
        self.path = self.exp_dir / STATE_FILE
        self.lock_path = self.exp_dir / LOCK_FILE
        self.fallback: dict | None = None  # what a lost file reads as, without writing it (dry runs)

    def exists(self) -> bool:
        return self.path.exists()

    def lost(self) -> bool:
        """Absent, or emptied (a full disk, a careless `> state.json`): rebuilt from disk (Engine.recover)."""
        try:
            return self.path.stat().st_size == 0 or not self.path.read_bytes().strip()
        except FileNotFoundError:
            return True
        except OSError:
            return False  # unreadable: read() says so

    def fix(self) -> str:
        return (f"move it aside (mv {self.path} {self.path}.bad) and run `cruijff-kit status {self.exp_dir}` "
                "to rebuild it from the jobs' exit-code files and checkpoints")

    def read(self) -> dict:
        """A consistent snapshot (writes are atomic); no lock needed to read. A lost file reads as no
        state; a damaged one is a one-line UserError naming the file and the fix."""
        if self.lost():
            return normalise(copy.deepcopy(self.fallback))
        try:
            data = read_json(self.path, None, kind=dict)
        except UserError as exc:
            raise UserError(exc.problems[0].message, where=str(self.path), hint=self.fix()) from None
        problem = shape_problem(data)
        if problem:
            raise UserError(problem[1], where=str(self.path), path=problem[0], hint=self.fix())
        return normalise(data)

    def write(self, state: dict) -> None:
        state["updated"] = now()
        write_json(self.path, state)

    def replace(self, state: dict, *, unless=None) -> bool:
        """Write `state` under the lock without reading the file (it may be lost or damaged); skipped when
        `unless()` (called under the lock) says the file is fine after all."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if unless is not None and unless():
                return False
            self.write(state)
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def locked(self):
        """Read-modify-write under the lock: yields the state; writes it back when the block ends."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self.read()
            yield state
            self.write(state)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


_OPTIONAL_STR = (str, type(None))
_NUMBER = (int, float, type(None))
_SHAPE = {"native_id": _OPTIONAL_STR, "executor": _OPTIONAL_STR, "attempts": int, "submitted": _OPTIONAL_STR,
          "started": _OPTIONAL_STR, "ended": _OPTIONAL_STR, "exit_code": (int, type(None)), "reason": str,
          "log": str, "pid": (int, type(None)), "env": dict, "tail": list, "oom_retried": bool,
          "wall_s": _NUMBER, "peak_rss_mb": _NUMBER}
_TYPE_WORDS = {str: "text", int: "an integer", dict: "an object", list: "a list", bool: "true/false"}


def _expected(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else _TYPE_WORDS.get(k, "a number") for k in kinds)


def shape_problem(data: dict) -> tuple[str, str] | None:
    """(key path, what is wrong) for a state that this version cannot use, else None."""
    jobs = data.get("jobs", {})
    if not isinstance(jobs, dict):
        return "jobs", f"holds a JSON {type(jobs).__name__}, expected an object of jobs"
    for job_id, js in jobs.items():
        if not isinstance(js, dict):
            return f"jobs.{job_id}", f"holds a JSON {type(js).__name__}, expected an object"
        if js.get("state", PENDING) not in STATES:
            return f"jobs.{job_id}.state", f"{js.get('state')!r} is not one of {', '.join(STATES)}"
        for key, kind in _SHAPE.items():
            value = js.get(key)
            if key in js and (not isinstance(value, kind) or (isinstance(value, bool) and kind is int)):
                return f"jobs.{job_id}.{key}", f"{value!r:.40} is not {_expected(kind)}"
    runner = data.get("runner")
    if runner is not None and not (isinstance(runner, dict) and isinstance(runner.get("pid"), int)):
        return "runner", "is not a runner record (an object with an integer pid)"
    if not isinstance(data.get("local_seq", 0), int):
        return "local_seq", "is not an integer"
    return None


def normalise(data: dict | None) -> dict:
    data = dict(data or {})
    data.setdefault("version", VERSION)
    data.setdefault("jobs", {})
    data.setdefault("runner", None)
    data.setdefault("local_seq", 0)
    for js in data["jobs"].values():
        for key, value in new_job().items():
            js.setdefault(key, value)
    return data


def ensure_jobs(state: dict, job_ids) -> None:
    """Add a pending entry for every job of jobs.json the state does not know yet."""
    for job_id in job_ids:
        state["jobs"].setdefault(job_id, new_job())

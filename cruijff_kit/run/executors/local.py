"""Local executor: `bash SCRIPT` per job on this machine, a dependency-aware queue, --max-parallel slots.

Each job runs in its own process group (session) with `CK_JOB_ID=local-<n>` and its stdout+stderr
appended to the job's log (`%j` replaced by that id). When the script ends (or its bash is killed), what
is left in its process group is killed too: a trainer is never orphaned, and --max-parallel holds. Jobs wait in submission order until every job in
their `after` list COMPLETED (afterok); a job whose dependency failed is cancelled, as SLURM's
kill_invalid_depend does. The queue lives in the runner process: `close()` (Ctrl-C, a crash) kills
every child's process group, and `kill_leftovers` cleans up after a runner that died without it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.run.executors.base import (
    NEVER_SATISFIED,
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    Executor,
    JobStatus,
    job_env,
    resolve_log,
    state_for_exit,
)
from cruijff_kit.run.state import now

KILL_GRACE_S = 5.0


@dataclass
class _Entry:
    job: JobSpec
    after: list[str]
    env: dict
    state: str = PENDING
    proc: subprocess.Popen | None = None
    started: str | None = None
    ended: str | None = None
    t0: float = 0.0
    elapsed_s: float | None = None
    exit_code: int | None = None
    reason: str = ""
    peak_rss_mb: float | None = None
    log: str = ""
    extra: dict = field(default_factory=dict)


class LocalExecutor(Executor):
    name = title = "local"
    holds_dependencies = True  # the queue holds a job until its `after` jobs completed
    needs_runner = True  # the children die with the runner; only it can poll them
    poll_interval = 0.25
    lost_after = None  # a job the queue does not know is another runner's: never "lost"
    continues_gates = False
    SEQ_KEY = "local_seq"  # in state.json: the last local-N handed out (ids stay unique across runs)

    def __init__(self, exp_dir, *, max_parallel: int = 1, require: bool = True, seq: int = 0):
        super().__init__(exp_dir, max_parallel=max_parallel, require=require)
        self.seq = int(seq)
        self.entries: dict[str, _Entry] = {}

    def load_state(self, state: dict) -> None:
        self.seq = int(state.get(self.SEQ_KEY) or 0)

    def save_state(self, state: dict) -> None:
        state[self.SEQ_KEY] = self.seq

    @classmethod
    def stop_detached(cls, native: str, pid: int | None, *, graceful: bool = False) -> None:
        kill_leftovers(pid, native, sig=signal.SIGTERM if graceful else signal.SIGKILL)

    # -- interface --------------------------------------------------------------------------------------
    def submit(self, job: JobSpec, after: list[str], env: dict | None = None) -> str:
        self.seq += 1
        native = f"local-{self.seq}"
        self.entries[native] = _Entry(job, list(after), dict(env or {}), log=resolve_log(job, native, self.exp_dir))
        self._tick()
        return native

    def poll(self, ids: list[str]) -> dict[str, JobStatus]:
        self._tick()
        return {i: self._status(self.entries[i]) for i in ids if i in self.entries}

    def cancel(self, ids: list[str]) -> None:
        for native in ids:
            entry = self.entries.get(native)
            if entry is None:
                continue
            if entry.state == PENDING:
                entry.state, entry.reason, entry.ended = CANCELLED, "cancelled", now()
            elif entry.state == RUNNING:
                self._kill(entry)
                entry.state, entry.reason = CANCELLED, "cancelled"
        self._tick()

    def describe(self, job: JobSpec, after: list[str], env: dict | None = None) -> str:
        text = super().describe(job, after, env)
        return text + (f"  (after {', '.join(after)})" if after else "")

    def close(self) -> None:
        """Kill every running child and drop the queue (the runner is stopping)."""
        for entry in self.entries.values():
            if entry.state == RUNNING:
                self._kill(entry)
                entry.state, entry.reason = CANCELLED, "interrupted"

    # -- queue ------------------------------------------------------------------------------------------
    def running(self) -> int:
        return sum(1 for e in self.entries.values() if e.state == RUNNING)

    def _tick(self) -> None:
        for entry in self.entries.values():
            if entry.state == RUNNING:
                self._reap(entry, block=False)
        changed = True
        while changed:  # a cancellation can unblock (cancel) further jobs
            changed = False
            for entry in self.entries.values():
                if entry.state != PENDING:
                    continue
                deps = [self.entries.get(a) for a in entry.after]
                if any(d is None or d.state in (FAILED, CANCELLED) for d in deps):
                    entry.state, entry.reason, entry.ended = CANCELLED, NEVER_SATISFIED, now()
                    changed = True
                elif all(d.state == COMPLETED for d in deps) and self.running() < self.max_parallel:
                    self._start(entry)

    def _start(self, entry: _Entry) -> None:
        script = self.script_path(entry.job)
        native = next(k for k, v in self.entries.items() if v is entry)
        Path(entry.log).parent.mkdir(parents=True, exist_ok=True)
        env = job_env(entry.env)
        env["CK_JOB_ID"] = native
        with open(entry.log, "ab") as out:
            entry.proc = subprocess.Popen(["bash", str(script)], stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=str(script.parent), env=env,
                                          start_new_session=True)
        entry.state, entry.started, entry.t0 = RUNNING, now(), time.monotonic()

    def _reap(self, entry: _Entry, *, block: bool) -> bool:
        """Collect a finished child with its own rusage (peak RSS of it and its waited-for children)."""
        proc = entry.proc
        if not block and not _has_ended(proc.pid):
            return False
        # the job ends with its script: whatever it left in its process group (a trainer whose bash wrapper
        # was killed, a stray background child) goes too, so no orphan outlives it and --max-parallel holds.
        # The group leader is not reaped yet (a zombie), so its pid, the group id, cannot have been reused.
        if proc.returncode is None:  # not reaped before
            _kill_group(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + KILL_GRACE_S
            while _group_alive(proc.pid) and time.monotonic() < deadline:  # SIGKILL takes a moment
                time.sleep(0.01)
        try:
            pid, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            pid, status, usage = proc.pid, proc.returncode or 0, None
        if pid == 0:
            return False
        code = os.waitstatus_to_exitcode(status) if usage is not None else proc.returncode
        proc.returncode = code
        entry.exit_code = code
        entry.ended = now()
        entry.elapsed_s = round(time.monotonic() - entry.t0, 1)
        if usage is not None:
            entry.peak_rss_mb = round(usage.ru_maxrss / 1024, 1)
        if entry.state == RUNNING:
            entry.state, entry.reason = state_for_exit(code if code is None or code >= 0 else 128 - code)
        return True

    def _kill(self, entry: _Entry) -> None:
        proc = entry.proc
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
            _kill_group(proc.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self._reap(entry, block=False):
                    return
                time.sleep(0.05)
        self._reap(entry, block=True)

    def _status(self, entry: _Entry) -> JobStatus:
        return JobStatus(state=entry.state, exit_code=entry.exit_code, reason=entry.reason, started=entry.started,
                         ended=entry.ended, elapsed_s=entry.elapsed_s, peak_rss_mb=entry.peak_rss_mb,
                         pid=entry.proc.pid if entry.proc else None)


def _has_ended(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process other than the (zombie) leader still lives in process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _job_processes(pgid: int, native_id: str) -> list[int]:
    """Pids in process group `pgid` that carry CK_JOB_ID=native_id (so a reused pid is never hit)."""
    marker = f"CK_JOB_ID={native_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def kill_leftovers(pgid: int | None, native_id: str, *, sig: int = signal.SIGKILL, grace_s: float = 3.0) -> int:
    """Stop the processes of a local job we hold no handle on (another runner's, or a dead runner's).

    Only processes in the job's process group AND carrying CK_JOB_ID=native_id are signalled; with
    SIGTERM they get `grace_s` seconds before SIGKILL. Returns how many processes were found.
    """
    if not pgid:
        return 0
    pids = _job_processes(int(pgid), native_id)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    if sig != signal.SIGKILL and pids:
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _job_processes(int(pgid), native_id):
            time.sleep(0.05)
        for pid in _job_processes(int(pgid), native_id):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return len(pids)

"""SLURM and local hygiene on real local jobs: a job's process group dies with it (a killed bash wrapper
never orphans its "trainer", --max-parallel 1 holds, cancel kills the whole group), `resubmit --failed`
brings back the cancelled parent of a dependency-cancelled job, and a dependent that can never run is
cancelled in the backend that still holds it.

Job scripts are rendered from templates/job.sh.j2 (tests/run_fixtures.py) and run by the real local
executor through the real CLI.
"""
from __future__ import annotations

import os
import signal

import pytest
from run_fixtures import Fake, build, job_state, marker, pid_alive, start_cli, state, wait_for

from cruijff_kit import logbook
from cruijff_kit.run import executors
from cruijff_kit.run.engine import Engine
from cruijff_kit.run.executors.base import NEVER_SATISFIED, Executor, JobStatus, read_exit_code, state_for_exit
from cruijff_kit.run.state import PENDING, RUNNING


def spawner(marks, name: str, seconds: int = 300) -> str:
    """Payload: a child `sleep` (the "trainer") whose pid is written down, and bash waiting on it."""
    return (f'sleep {seconds} &\necho $! > "{marks}/{name}.child"\n'
            f'echo "$$" > "{marks}/{name}.bash"\nwait\n')


def read_pid(marks, name: str, what: str) -> int:
    path = marks / f"{name}.{what}"
    wait_for(lambda: path.exists() and path.read_text().strip(), 30, what=str(path))
    return int(path.read_text())


def stop(proc) -> str:
    try:
        out, _ = proc.communicate(timeout=60)
        return out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_killing_the_bash_wrapper_kills_its_trainer_and_max_parallel_holds(tmp_path, scratch):
    marks = tmp_path / "marks"
    marks.mkdir()
    check = (f'st=$(cut -d" " -f3 "/proc/$(cat {marks}/a.train.child)/stat" 2>/dev/null)\n'
             f'if [ -n "$st" ] && [ "$st" != Z ]; then echo alive; else echo gone; fi > "{marks}/seen"\n')
    exp = build(tmp_path / "exp", [Fake("a.train", spawner(marks, "a.train")),
                                   Fake("b.train", marker(marks, "b.train", 0.0, check))])
    runner = start_cli("run", str(exp), "--executor", "local", "--max-parallel", "1")
    try:
        child, wrapper = read_pid(marks, "a.train", "child"), read_pid(marks, "a.train", "bash")
        assert pid_alive(child) and pid_alive(wrapper)
        os.kill(wrapper, signal.SIGKILL)  # the bash wrapper dies; its child must not outlive it
        out = stop(runner)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert not pid_alive(child), "the trainer was orphaned"
    assert (marks / "seen").read_text().strip() == "gone", "b.train started while a.train's trainer still ran"
    st = state(exp)
    assert st["jobs"]["a.train"]["state"] == "failed" and st["jobs"]["b.train"]["state"] == "completed", out


def test_cancel_kills_the_whole_group_and_resubmit_brings_back_the_cancelled_parent(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    flag = tmp_path / "quick"
    train = f'if [ -f "{flag}" ]; then echo quick; else\n{spawner(marks, "a.train")}fi\n'
    exp = build(tmp_path / "exp", [Fake("a.train", train),
                                   Fake("a.eval.task_epoch0", marker(marks, "a.eval", 0.0), after=["a.train"])])
    runner = start_cli("run", str(exp), "--executor", "local")
    try:
        child = read_pid(marks, "a.train", "child")
        wait_for(lambda: job_state(exp, "a.train") == "running", 30, what="a.train running")
        proc = cli("cancel", str(exp), "--stage", "train", timeout=60)  # like `scancel` of the training job
        assert proc.returncode == 0 and "cancelled 1 job(s): a.train" in proc.stdout, proc.stdout + proc.stderr
        out = stop(runner)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(child), 15, what="the trainer child to die")
    st = state(exp)
    assert st["jobs"]["a.train"]["reason"] == "cancelled by user"
    assert st["jobs"]["a.eval.task_epoch0"]["reason"] == "dependency a.train cancelled"
    assert "resubmit" in out and "--failed`" in out  # the advice names --failed ...

    dry = cli("resubmit", str(exp), "--failed", "--dry-run", timeout=60)  # ... and --failed brings both back
    assert dry.returncode == 0 and "rerun  a.train" in dry.stdout and "rerun  a.eval.task_epoch0" in dry.stdout
    flag.write_text("yes")
    proc = cli("resubmit", str(exp), "--failed", "--executor", "local", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert {j: st["jobs"][j]["state"] for j in st["jobs"]} == {"a.train": "completed", "a.eval.task_epoch0": "completed"}
    assert st["jobs"]["a.train"]["attempts"] == 2 and (marks / "a.eval.end").exists()


class HoldingExecutor(Executor):
    """Like a SLURM cluster without kill_invalid_depend: a dependent of a failed job is reported
    'dependency never satisfied' but stays queued until cancel() removes it."""

    name = title = "holding"
    holds_dependencies = True
    needs_runner = False
    poll_interval = 0.05
    lost_after = None
    queued: dict = {}  # native id -> (job, after): what the "cluster" still holds, across instances
    cancelled: list = []

    def track(self, native, job) -> None:
        HoldingExecutor.queued.setdefault(native, (job, []))

    def submit(self, job, after, env=None) -> str:
        native = f"h{len(HoldingExecutor.queued) + 1}"
        HoldingExecutor.queued[native] = (job, list(after))
        if not after:  # run it to its end now, like a fast cluster
            import subprocess

            subprocess.run(["bash", str(self.script_path(job))], cwd=str(self.script_path(job).parent),
                           capture_output=True)
        return native

    def poll(self, ids):
        out = {}
        for native in ids:
            if native not in HoldingExecutor.queued:
                continue
            job, after = HoldingExecutor.queued[native]
            code = read_exit_code(self.exit_code_path(job))
            if code is not None:
                out[native] = JobStatus(*state_for_exit(code)[:1], exit_code=code)
            elif any(HoldingExecutor.queued.get(a) and read_exit_code(self.exit_code_path(HoldingExecutor.queued[a][0]))
                     not in (None, 0) for a in after):
                out[native] = JobStatus(state="cancelled", reason=NEVER_SATISFIED)  # still queued!
            else:
                out[native] = JobStatus(state=PENDING if after else RUNNING)
        return out

    def cancel(self, ids) -> None:
        for native in ids:
            HoldingExecutor.cancelled.append(native)
            HoldingExecutor.queued.pop(native, None)


@pytest.fixture
def holding(monkeypatch):
    monkeypatch.setitem(executors.EXECUTORS, "holding", HoldingExecutor)
    HoldingExecutor.queued, HoldingExecutor.cancelled = {}, []
    return HoldingExecutor


def test_a_dependent_that_can_never_run_is_cancelled_in_the_backend(tmp_path, scratch, holding):
    exp = build(tmp_path / "exp", [Fake("a.train", "exit 3"), Fake("a.eval.task_epoch0", "true", after=["a.train"])])
    engine = Engine(exp, out=lambda line: None)
    assert engine.run("holding", wait=True, poll_interval=0.05) == 1
    st = state(exp)
    eval_native = st["jobs"]["a.eval.task_epoch0"]["native_id"]
    assert st["jobs"]["a.train"]["state"] == "failed" and st["jobs"]["a.eval.task_epoch0"]["state"] == "cancelled"
    assert st["jobs"]["a.eval.task_epoch0"]["reason"] == "dependency a.train failed"
    assert eval_native in holding.cancelled and eval_native not in holding.queued  # not left PENDING
    assert any(e.action == "STATE_CHANGE" and "a.eval.task_epoch0: pending -> cancelled" in e.description
               for e in logbook.read(exp / "run-experiment.log"))

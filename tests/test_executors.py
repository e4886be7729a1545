"""A new executor is one class plus one registry line: the engine drives it by its declared capabilities.

The in-test SyncExecutor runs `bash SCRIPT` to the end inside `submit` (holds no dependencies, needs the
runner); it is registered at test time in cruijff_kit.run.executors.EXECUTORS and an experiment of real
job scripts (tests/run_fixtures.py) runs to COMPLETED through the unchanged Engine. Also: the SLURM
executor reads JobSpec.resources, and the torchtune rerun policy is reached through the worker registry.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from run_fixtures import Fake, build, marker, stamp, state, table_states

from cruijff_kit import logbook
from cruijff_kit.experiment.jobs import JobSpec, jobs_payload, read_jobs
from cruijff_kit.files import write_json
from cruijff_kit.run import executors
from cruijff_kit.run.executors.base import (
    Executor,
    JobStatus,
    job_env,
    read_exit_code,
    resolve_log,
    state_for_exit,
)
from cruijff_kit.run.state import RUNNING, now

REPO = Path(__file__).resolve().parents[1]


class SyncExecutor(Executor):
    """Runs each job to its end inside submit(): no queue, so no dependencies held."""

    name = title = "sync"
    holds_dependencies = False
    needs_runner = True
    poll_interval = 0.01
    lost_after = None
    submitted: list = []  # (job id, after) per submit, across instances

    def __init__(self, exp_dir, *, max_parallel: int = 1, require: bool = True):
        super().__init__(exp_dir, max_parallel=max_parallel, require=require)
        self.seq, self.done = 0, {}

    def load_state(self, state: dict) -> None:
        self.seq = int(state.get("sync_seq") or 0)

    def save_state(self, state: dict) -> None:
        state["sync_seq"] = self.seq

    def submit(self, job, after, env=None) -> str:
        SyncExecutor.submitted.append((job.id, list(after)))
        self.seq += 1
        native = f"sync-{self.seq}"
        log = Path(resolve_log(job, native, self.exp_dir))
        log.parent.mkdir(parents=True, exist_ok=True)
        started, t0 = now(), time.monotonic()
        with open(log, "ab") as out:
            code = subprocess.run(["bash", str(self.script_path(job))], stdout=out, stderr=subprocess.STDOUT,
                                  cwd=str(self.script_path(job).parent), env=job_env(env)).returncode
        state, reason = state_for_exit(code)
        self.done[native] = JobStatus(state=state, exit_code=code, reason=reason, started=started, ended=now(),
                                      elapsed_s=round(time.monotonic() - t0, 1))
        return native

    def poll(self, ids):
        return {i: self.done[i] for i in ids if i in self.done}

    def cancel(self, ids) -> None:
        return None


class DetachedExecutor(Executor):
    """Jobs outlive the runner (like SLURM's): `bash SCRIPT` in its own session, state from the exit code file
    the script writes, so any later process can poll them once the engine tracks their ids."""

    name = title = "detached"
    holds_dependencies = False
    needs_runner = False
    poll_interval = 0.05
    lost_after = 3
    forget: set = set()  # job ids whose native ids poll() pretends not to know

    def __init__(self, exp_dir, *, max_parallel: int = 1, require: bool = True):
        super().__init__(exp_dir, max_parallel=max_parallel, require=require)
        self.jobs, self.procs = {}, []

    def track(self, native, job) -> None:
        self.jobs[native] = job

    def submit(self, job, after, env=None) -> str:
        native = f"d{time.monotonic_ns()}"
        log = Path(resolve_log(job, native, self.exp_dir))
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.procs.append(subprocess.Popen(["bash", str(self.script_path(job))], stdout=out, stderr=subprocess.STDOUT,
                                               cwd=str(self.script_path(job).parent), env=job_env(env),
                                               start_new_session=True))
        self.track(native, job)
        return native

    def poll(self, ids):
        for proc in self.procs:
            proc.poll()  # reap
        out = {}
        for native in ids:
            job = self.jobs.get(native)
            if job is None or job.id in self.forget:
                continue
            code = read_exit_code(self.exit_code_path(job))
            state, reason = state_for_exit(code) if code is not None else (RUNNING, "")
            out[native] = JobStatus(state=state, exit_code=code, reason=reason)
        return out

    def cancel(self, ids) -> None:
        return None


@pytest.fixture
def detached(monkeypatch):
    monkeypatch.setitem(executors.EXECUTORS, "detached", DetachedExecutor)
    DetachedExecutor.forget = set()
    return DetachedExecutor


@pytest.fixture
def sync(monkeypatch):
    monkeypatch.setitem(executors.EXECUTORS, "sync", SyncExecutor)  # the one registry line
    SyncExecutor.submitted = []
    return SyncExecutor


def two_jobs(tmp_path: Path, train: str) -> tuple[Path, Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    exp = build(tmp_path / "exp", [Fake("a.train", marker(marks, "a.train", 0.1, train)),
                                   Fake("a.eval.task_epoch0", marker(marks, "a.eval.task_epoch0"), after=["a.train"])])
    return exp, marks


def test_a_registered_executor_runs_an_experiment_to_completed(tmp_path, scratch, sync):
    from cruijff_kit.run.engine import Engine

    exp, marks = two_jobs(tmp_path, "")
    lines: list[str] = []
    code = Engine(exp, out=lines.append).run("sync")
    assert code == 0, "\n".join(lines)

    st = state(exp)
    jobs = st["jobs"]
    assert {j: jobs[j]["state"] for j in jobs} == {"a.train": "completed", "a.eval.task_epoch0": "completed"}
    assert [jobs[j]["native_id"] for j in ("a.train", "a.eval.task_epoch0")] == ["sync-1", "sync-2"]
    assert {jobs[j]["executor"] for j in jobs} == {"sync"} and st["runner"] is None
    assert st["sync_seq"] == 2  # the executor's own state went through state.json
    # holds no dependencies: the eval was submitted only after its training completed, with no `after`
    assert sync.submitted == [("a.train", []), ("a.eval.task_epoch0", [])]
    assert stamp(marks, "a.eval.task_epoch0", "start") >= stamp(marks, "a.train", "end")
    assert "job a.train running as" in Path(jobs["a.train"]["log"]).read_text()
    assert json.loads((exp / "a" / "compute.json").read_text())["executor"] == "sync"
    assert table_states(exp) == {"a": "completed", "a/task/0": "completed"}
    entries = logbook.read(exp / "run-experiment.log")
    assert [e.action for e in entries if e.action.startswith("SUBMIT")] == ["SUBMIT_JOB", "SUBMIT_EVAL"]
    assert any(e.action == "ALL_COMPLETE" for e in entries)
    assert any(line.startswith("done in") for line in lines)

    # a second run skips what completed, and the job counter continues from state.json
    lines.clear()
    assert Engine(exp, out=lines.append).run("sync") == 0 and len(sync.submitted) == 2


def test_a_failure_cascades_and_the_dry_run_uses_the_capabilities(tmp_path, scratch, sync):
    from cruijff_kit.run.dry_run import dry_run
    from cruijff_kit.run.engine import Engine

    exp, _ = two_jobs(tmp_path, "exit 3")
    lines: list[str] = []
    engine = Engine(exp, out=lines.append)
    assert dry_run(engine, "sync", engine.graph.select()) == 0
    # without held dependencies the eval cannot be planned behind its training
    assert any("submit  a.train: bash" in ln for ln in lines) and any("wait    a.eval.task_epoch0" in ln for ln in lines)
    assert not (exp / ".ck" / "state.json").exists()

    assert Engine(exp, out=lines.append).run("sync") == 1
    jobs = state(exp)["jobs"]
    assert (jobs["a.train"]["state"], jobs["a.train"]["reason"]) == ("failed", "exit code 3")
    assert (jobs["a.eval.task_epoch0"]["state"], jobs["a.eval.task_epoch0"]["reason"]) == \
        ("cancelled", "dependency a.train failed")
    assert sync.submitted == [("a.train", [])]


def test_an_executor_without_runner_submits_and_returns_and_status_follows(tmp_path, scratch, detached):
    from cruijff_kit.run.engine import Engine
    from cruijff_kit.run.status import collect

    exp, marks = two_jobs(tmp_path, "")
    lines: list[str] = []
    assert Engine(exp, out=lines.append).run("detached") == 0  # one submission pass, no runner kept
    st = state(exp)
    assert st["runner"] is None and st["jobs"]["a.train"]["native_id"] and not st["jobs"]["a.eval.task_epoch0"]["native_id"]
    assert any(line.startswith("submitted in") for line in lines)
    assert "1 job(s) not yet submitted: run again, or use --wait to drip-feed them" in lines

    # `status` from another process polls jobs that live without a runner and records what changed
    wait_until = time.monotonic() + 30
    while not (exp / "a" / "finetune.slurm.exitcode").exists() and time.monotonic() < wait_until:
        time.sleep(0.05)
    data = collect(Engine(exp, command="status", out=lambda line: None))
    assert {j["id"]: j["state"] for j in data["jobs"]} == {"a.train": "completed", "a.eval.task_epoch0": "pending"}

    assert Engine(exp, out=lines.append).run("detached", wait=True) == 0  # --wait follows to the end
    assert {j: js["state"] for j, js in state(exp)["jobs"].items()} == {"a.train": "completed",
                                                                        "a.eval.task_epoch0": "completed"}
    assert stamp(marks, "a.eval.task_epoch0", "start") >= stamp(marks, "a.train", "end")


def test_a_job_its_executor_forgot_fails_as_lost_after_its_polls(tmp_path, scratch, detached):
    from cruijff_kit.run.engine import Engine

    exp, _ = two_jobs(tmp_path, "")
    detached.forget = {"a.train"}
    assert Engine(exp, out=lambda line: None).run("detached", wait=True) == 1
    jobs = state(exp)["jobs"]
    assert jobs["a.train"]["state"] == "failed"
    assert jobs["a.train"]["reason"] == (f"lost: detached no longer knows job {jobs['a.train']['native_id']} "
                                         "and it left no exit code")
    assert (jobs["a.eval.task_epoch0"]["state"], jobs["a.eval.task_epoch0"]["reason"]) == \
        ("cancelled", "dependency a.train failed")


def test_unknown_executor_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown executor 'nope'"):
        executors.executor_class("nope")
    assert executors.needs_runner("local") and not executors.needs_runner("slurm")
    assert not executors.needs_runner(None) and not executors.needs_runner("nope")


def test_the_engine_never_names_an_executor():
    text = (REPO / "cruijff_kit" / "run" / "engine.py").read_text()
    assert '"local"' not in text and '"slurm"' not in text


def test_slurm_reads_resources_from_jobs_json(tmp_path):
    from cruijff_kit.run.executors.slurm import SlurmExecutor

    exp = build(tmp_path / "exp", [Fake("r.train")])
    old = read_jobs(exp)[0]
    assert old.resources == {}  # a jobs.json written before resources existed
    ex = SlurmExecutor(exp, require=False)
    assert ex.describe(old, ["7"]) == f"sbatch --parsable --dependency=afterok:7 {exp / 'r' / 'finetune.slurm'}"

    res = {"time": "01:00:00", "mem": "8G", "cpus": 4, "gpus": 1, "partition": "gpu", "account": "", "constraint": ""}
    data = json.loads((exp / "jobs.json").read_text())
    write_json(exp / "jobs.json", jobs_payload(data["experiment"], [JobSpec(**{**data["jobs"][0], "resources": res})]))
    job = read_jobs(exp)[0]
    assert job.resources == res
    assert ex.sbatch_args(job, [])[:-1] == ["sbatch", "--parsable", "--time=01:00:00", "--mem=8G",
                                            "--cpus-per-task=4", "--gres=gpu:1", "--partition=gpu"]


def test_torchtune_rerun_policy_through_the_worker_registry(tmp_path):
    from cruijff_kit.run.state import new_job
    from cruijff_kit.workers import rerun_policy

    out = tmp_path / "out"
    train = JobSpec(id="a.train", kind="train", run="a", script="a/finetune.slurm", meta={"batch_size": 8})
    evaluation = JobSpec(id="a.eval.t_epoch0", kind="eval", run="a", script="a/eval/t/inspect.slurm")
    policy = rerun_policy(train)
    assert policy.__name__ == "cruijff_kit.workers.torchtune.rerun" and rerun_policy(evaluation) is None

    js = new_job()
    assert policy.rerun_env(train, js, out, tmp_path) == {}
    (out / "epoch_0").mkdir(parents=True)
    assert policy.rerun_env(train, js, out, tmp_path) == {}  # an empty epoch dir is no checkpoint
    (out / "epoch_0" / "adapter_model.safetensors").write_text("x")
    js["env"] = {"CK_BATCH_SIZE": "4", "OTHER": "1"}
    assert policy.rerun_env(train, js, out, tmp_path) == {"CK_BATCH_SIZE": "4", "CK_RESUME": "1"}

    assert policy.oom_retry(train, new_job(), tmp_path).env == {"CK_BATCH_SIZE": "4"}
    assert policy.oom_retry(train, {"env": {"CK_BATCH_SIZE": "3"}}, tmp_path).env == {"CK_BATCH_SIZE": "1"}
    once = policy.oom_retry(train, {"env": {"CK_BATCH_SIZE": "1"}}, tmp_path)
    assert once.env == {} and once.note == "ran out of memory at batch size 1: not retried"
    assert policy.notes({"CK_RESUME": "1", "CK_BATCH_SIZE": "4"}) == ["resumed", "batch_size 4"]

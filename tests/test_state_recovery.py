"""A lost state.json is rebuilt from disk; a damaged state.json/jobs.json is one line naming the file.

Real local runs of job scripts rendered from templates/job.sh.j2 (tests/run_fixtures.py); the verbs run
through the real CLI in subprocesses.
"""
from __future__ import annotations

import json

import pytest
from hostile_cases import JOBS_DAMAGED, STATE_DAMAGED
from run_fixtures import Fake, build, marker, state

from cruijff_kit import logbook

TWO = ["a.train", "a.eval.task_epoch0"]
VERBS = (("status",), ("status", "--json"), ("run", "--executor", "local"),
         ("resubmit", "--failed", "--executor", "local"), ("cancel",))


def two_jobs(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    return build(tmp_path / "exp", [Fake("a.train", marker(marks, "a.train", 0.1)),
                                    Fake("a.eval.task_epoch0", marker(marks, "a.eval", 0.1), after=["a.train"])]), marks


def submits(exp) -> int:
    return sum(1 for e in logbook.read(exp / "run-experiment.log") if e.action.startswith("SUBMIT"))


def status_json(cli, exp) -> dict:
    proc = cli("status", str(exp), "--json", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {j["id"]: j for j in json.loads(proc.stdout)["jobs"]}


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_lost_state_is_rebuilt_and_run_skips_completed_jobs(tmp_path, scratch, cli, how):
    exp, marks = two_jobs(tmp_path)
    assert cli("run", str(exp), "--executor", "local", timeout=120).returncode == 0
    ended = (marks / "a.train.end").read_text()
    path = exp / ".ck" / "state.json"
    if how == "deleted":
        path.unlink()
    else:
        path.write_text("\n")

    jobs = status_json(cli, exp)
    assert {j: jobs[j]["state"] for j in TWO} == {j: "completed" for j in TWO}
    assert all(jobs[j]["recovered"] and "exit-code file" in jobs[j]["reason"] for j in TWO)
    assert {j: state(exp)["jobs"][j]["state"] for j in TWO} == {j: "completed" for j in TWO}  # written back

    path.unlink()  # a dry run reads the rebuilt state but writes nothing
    dry = cli("run", str(exp), "--executor", "local", "--dry-run", timeout=60)
    assert dry.returncode == 0 and "2 skipped (completed)" in dry.stdout, dry.stdout
    assert not path.exists()

    before = submits(exp)
    proc = cli("run", str(exp), "--executor", "local", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert submits(exp) == before  # nothing reran
    assert (marks / "a.train.end").read_text() == ended
    assert any(e.action == "STATE_REBUILT" for e in logbook.read(exp / "run-experiment.log"))


def test_lost_state_resumes_training_from_complete_checkpoints(tmp_path, scratch, cli):
    """Epoch 0 saved, then the job is killed (SIGKILL: no exit-code file); state.json lost: `run` resumes."""
    marks, out = tmp_path / "marks", tmp_path / "out"
    marks.mkdir()
    train = (f'echo "${{CK_RESUME:-0}}" >> "{marks}/resume"\n'
             f'mkdir -p "{out}/epoch_0" && printf weights > "{out}/epoch_0/adapter_model.safetensors"\n'
             f'if [ "${{CK_RESUME:-0}}" != 1 ]; then kill -9 $$; fi\n'
             f'mkdir -p "{out}/epoch_1" && printf weights > "{out}/epoch_1/adapter_model.safetensors"\n')
    exp = build(tmp_path / "exp", [Fake("a.train", train, output_dir=str(out), meta={"epochs": 2}),
                                   Fake("a.eval.task_epoch0", marker(marks, "a.eval", 0.0), after=["a.train"])])
    first = cli("run", str(exp), "--executor", "local", timeout=120)
    assert first.returncode != 0 and state(exp)["jobs"]["a.train"]["state"] == "failed"
    assert not (exp / "a" / "finetune.slurm.exitcode").exists()  # SIGKILL: the trap never ran
    (exp / ".ck" / "state.json").unlink()

    jobs = status_json(cli, exp)
    assert jobs["a.train"]["state"] == "pending" and jobs["a.train"]["env"] == {"CK_RESUME": "1"}
    assert "resumes after epoch 0" in jobs["a.train"]["reason"]
    proc = cli("run", str(exp), "--executor", "local", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (marks / "resume").read_text().split() == ["0", "1"]  # the second attempt resumed
    assert {j: state(exp)["jobs"][j]["state"] for j in TWO} == {j: "completed" for j in TWO}
    assert (out / "epoch_1" / "adapter_model.safetensors").exists() and (marks / "a.eval.end").exists()


def test_never_run_experiment_keeps_no_state(tmp_path, scratch, cli):
    exp, _ = two_jobs(tmp_path)
    jobs = status_json(cli, exp)
    assert {j: jobs[j]["state"] for j in TWO} == {j: "pending" for j in TWO}
    assert not (exp / ".ck" / "state.json").exists()


DAMAGED = STATE_DAMAGED


@pytest.mark.parametrize("content,message", DAMAGED.values(), ids=list(DAMAGED))
def test_damaged_state_is_one_line_in_every_verb(tmp_path, scratch, cli, content, message):
    exp, _ = two_jobs(tmp_path)
    path = exp / ".ck" / "state.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    for verb in VERBS:
        proc = cli(verb[0], str(exp), *verb[1:], timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (verb, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(lines) == 1, (verb, proc.stderr)
        assert lines[0].startswith(f"error: {path}") or str(path) in lines[0], lines[0]
        assert message in lines[0] and f"mv {path} {path}.bad" in lines[0], lines[0]
    assert path.read_bytes() == content  # never overwritten


@pytest.mark.parametrize("content", JOBS_DAMAGED)
def test_damaged_jobs_json_is_one_line_in_every_verb(tmp_path, scratch, cli, content):
    exp, _ = two_jobs(tmp_path)
    (exp / "jobs.json").write_bytes(content)
    for verb in VERBS:
        proc = cli(verb[0], str(exp), *verb[1:], timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (verb, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "jobs.json" in proc.stderr
        assert "scaffold" in proc.stderr or "restore it" in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", ["deleted", "garbage", "rebuilt by status"])
def test_state_lost_under_a_live_runner_is_written_back_and_nothing_runs_twice(tmp_path, scratch, cli, how):
    from run_fixtures import job_state, start_cli, wait_for

    marks = tmp_path / "marks"
    marks.mkdir()
    exp = build(tmp_path / "exp", [Fake("a.train", marker(marks, "a.train", 3.0)),
                                   Fake("a.eval.task_epoch0", marker(marks, "a.eval", 0.0), after=["a.train"])])
    runner = start_cli("run", str(exp), "--executor", "local")
    try:
        wait_for(lambda: job_state(exp, "a.train") == "running", 30, what="a.train running")
        path = exp / ".ck" / "state.json"
        if how == "garbage":
            path.write_bytes(b"\xff garbage")
        else:
            path.unlink()
        if how == "rebuilt by status":
            assert cli("status", str(exp), timeout=60).returncode == 0
        out, _ = runner.communicate(timeout=90)
    finally:
        if runner.poll() is None:
            import os
            import signal

            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 0, out
    assert {j: state(exp)["jobs"][j]["state"] for j in TWO} == {j: "completed" for j in TWO}
    assert submits(exp) == 2  # a.train was not submitted a second time
    assert len((marks / "a.train.start").read_text().splitlines()) == 1
    assert any(e.action == "STATE_RESTORED" for e in logbook.read(exp / "run-experiment.log"))

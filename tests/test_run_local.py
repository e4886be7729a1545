"""`cruijff-kit run --executor local` and status/cancel/resubmit on real bash job scripts.

Every job script is rendered from templates/job.sh.j2 (tests/run_fixtures.py) and run by the real local
executor in a real subprocess; we assert on what lands on disk: markers, state.json, compute.json,
run-experiment.log (parsed back with logbook.read) and the Status tables of experiment_summary.md.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_fixtures import (
    Fake,
    build,
    failing_train,
    job_state,
    marker,
    max_overlap,
    pid_alive,
    stamp,
    standard,
    start_cli,
    state,
    status_block,
    table_states,
    wait_for,
)

from cruijff_kit import logbook

ALL6 = ["a.train", "a.eval.task_epoch0", "a.eval.task_epoch1", "b.train", "b.eval.task_epoch0", "b.eval.task_epoch1"]


def actions(exp: Path) -> list[logbook.Entry]:
    return logbook.read(exp / "run-experiment.log")


def count(exp: Path, action: str) -> int:
    return sum(1 for e in actions(exp) if e.action == action)


def test_dependency_order_records_and_rerun_skips(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    out_root = tmp_path / "outputs"
    # a's "training" writes a training_summary.json the way the recipe does
    summary = json.dumps({"tokens": 1234, "tokens_per_s": 99.5, "peak_gpu_memory_gb": 0.0})
    extra = {"a": f"mkdir -p {out_root}/ck-out-a && echo '{summary}' > {out_root}/ck-out-a/training_summary.json"}
    exp = standard(tmp_path / "exp", marks, train_extra=extra, output_root=out_root)

    proc = cli("run", str(exp), "--executor", "local", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[6/6]" in proc.stdout and "done in" in proc.stdout

    st = state(exp)
    assert {j: st["jobs"][j]["state"] for j in ALL6} == {j: "completed" for j in ALL6}
    assert st["runner"] is None
    for run in ("a", "b"):  # afterok: every eval starts after its training ended
        for cell in ("task_epoch0", "task_epoch1"):
            assert stamp(marks, f"{run}.eval.{cell}", "start") >= stamp(marks, f"{run}.train", "end")
    assert max_overlap(marks, ALL6) == 1  # --max-parallel defaults to 1

    # per-job records: the job's own log (with %j = local id) and compute.json
    js = st["jobs"]["a.train"]
    assert js["native_id"].startswith("local-") and js["exit_code"] == 0 and js["attempts"] == 1
    assert Path(js["log"]).name == f"slurm-{js['native_id']}.out"
    assert f"job a.train running as {js['native_id']}" in Path(js["log"]).read_text()
    compute = json.loads((exp / "a" / "compute.json").read_text())
    assert compute["state"] == "completed" and compute["executor"] == "local" and compute["exit_code"] == 0
    assert compute["wall_s"] >= 0.3 and compute["peak_rss_mb"] > 0
    assert compute["tokens_per_s"] == 99.5 and compute["tokens"] == 1234  # training_summary.json merged in
    cell = json.loads((exp / "b" / "eval" / "task_epoch1" / "compute.json").read_text())
    assert cell["job"] == "b.eval.task_epoch1" and cell["epoch"] == 1 and "tokens" not in cell

    # the log: one SUBMIT per job, pending -> running -> completed per job, one ALL_COMPLETE
    entries = actions(exp)
    assert count(exp, "SUBMIT_JOB") == 2 and count(exp, "SUBMIT_EVAL") == 4
    submit = next(e for e in entries if e.action == "SUBMIT_JOB")
    assert submit.extra["Job ID"] == "local-1" and "bash " in submit.command
    changes = [e.result for e in entries if e.action == "STATE_CHANGE" and e.description.startswith("a.train:")]
    assert changes == ["pending -> running", "running -> completed"]
    assert count(exp, "ALL_COMPLETE") == 1

    # Status tables: only the block between the markers changed
    assert set(table_states(exp).values()) == {"completed"} and len(table_states(exp)) == 6
    text = (exp / "experiment_summary.md").read_text()
    assert "## Quick Reference\nKeep this line." in text and "(not run yet)" not in text

    # running again continues where it stopped: nothing to do, nothing resubmitted
    again = cli("run", str(exp), "--executor", "local", timeout=60)
    assert again.returncode == 0, again.stderr
    assert count(exp, "SUBMIT_JOB") == 2 and count(exp, "SUBMIT_EVAL") == 4
    assert state(exp)["jobs"]["a.train"]["native_id"] == "local-1"


def test_max_parallel_two(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    names = [f"r{i}.train" for i in range(4)]
    exp = build(tmp_path / "exp", [Fake(n, marker(marks, n, 1.0)) for n in names])
    t0 = time.monotonic()
    proc = cli("run", str(exp), "--executor", "local", "--max-parallel", "2", timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert max_overlap(marks, names) == 2
    assert elapsed < 3.9 + 2.0  # 4 x 1 s in two slots, not one after another (plus start-up)


def test_failure_cascades_then_resubmit_resumes(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    flag = tmp_path / "fixed.flag"
    out_root = tmp_path / "outputs"
    broken = failing_train(marks, flag, out_root, "Traceback: broken: flag missing")
    exp = standard(tmp_path / "exp", marks, train_extra={"b": broken}, output_root=out_root)

    proc = cli("run", str(exp), "--executor", "local", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    st = state(exp)
    assert st["jobs"]["b.train"]["state"] == "failed" and st["jobs"]["b.train"]["exit_code"] == 3
    assert st["jobs"]["b.train"]["reason"] == "exit code 3"
    assert "Traceback: broken: flag missing" in st["jobs"]["b.train"]["tail"]
    for cell in ("task_epoch0", "task_epoch1"):
        js = st["jobs"][f"b.eval.{cell}"]
        assert js["state"] == "cancelled" and js["reason"] == "dependency b.train failed"
        assert js["native_id"] is None or js["attempts"] == 1
    assert all(st["jobs"][j]["state"] == "completed" for j in ALL6[:3])
    assert "resubmit" in proc.stdout
    failed = [e for e in actions(exp) if e.action == "JOB_FAILED"]
    assert [e.description for e in failed] == ["b.train failed: exit code 3"]
    assert table_states(exp)["b"] == "failed" and table_states(exp)["b/task/0"] == "cancelled"
    assert json.loads((exp / "b" / "compute.json").read_text())["exit_code"] == 3

    # status shows the log tail of the failed job (text and JSON)
    status = cli("status", str(exp), timeout=30)
    assert status.returncode == 0 and "b.train failed (exit code 3)" in status.stdout
    assert "  | Traceback: broken: flag missing" in status.stdout
    data = json.loads(cli("status", str(exp), "--json", timeout=30).stdout)
    assert data["counts"] == {"pending": 0, "running": 0, "completed": 3, "failed": 1, "cancelled": 2}

    # fix it, resubmit: only b's jobs rerun, and b.train resumes from its epoch_0 checkpoint
    flag.write_text("ok")
    dry = cli("resubmit", str(exp), "--failed", "--dry-run", timeout=30)
    assert dry.returncode == 0 and "rerun  b.train" in dry.stdout and "CK_RESUME=1" in dry.stdout
    assert state(exp)["jobs"]["b.train"]["state"] == "failed"  # dry run changed nothing
    proc = cli("resubmit", str(exp), "--failed", "--executor", "local", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert all(st["jobs"][j]["state"] == "completed" for j in ALL6)
    assert st["jobs"]["b.train"]["attempts"] == 2 and st["jobs"]["a.train"]["attempts"] == 1
    assert st["jobs"]["b.train"]["env"] == {"CK_RESUME": "1"}
    assert (marks / "b.resume").read_text().strip() == "resume=1"
    assert count(exp, "RESUBMIT") == 1 and count(exp, "ALL_COMPLETE") == 1
    assert json.loads((exp / "b" / "compute.json").read_text())["overrides"] == {"CK_RESUME": "1"}


def test_oom_is_retried_once_with_half_the_batch(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    payload = (f'echo "batch=${{CK_BATCH_SIZE:-none}}" >> "{marks}/oom.batches"\n'
               'if [ -z "${CK_BATCH_SIZE:-}" ]; then echo "torch.OutOfMemoryError: CUDA out of memory." >&2; exit 1; fi')
    exp = build(tmp_path / "exp", [Fake("o.train", payload), Fake("o.eval.task_epoch0", "true", after=["o.train"])])
    (exp / "o" / "finetune.yaml").write_text("batch_size: 8\nepochs: 1\n")
    proc = cli("run", str(exp), "--executor", "local", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (marks / "oom.batches").read_text().split() == ["batch=none", "batch=4"]
    st = state(exp)
    assert st["jobs"]["o.train"]["state"] == "completed" and st["jobs"]["o.train"]["oom_retried"]
    assert st["jobs"]["o.eval.task_epoch0"]["state"] == "completed"
    retry = [e for e in actions(exp) if e.action == "RETRY_OOM"]
    assert len(retry) == 1 and retry[0].command == "CK_BATCH_SIZE=4"
    assert "batch_size 4" in status_block(exp)


def test_cancel_a_running_sleeper_and_status_from_another_process(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    exp = build(tmp_path / "exp", [Fake("s.train", marker(marks, "s.train", 120)),
                                   Fake("s.eval.task_epoch0", "true", after=["s.train"])])
    runner = start_cli("run", str(exp), "--executor", "local")
    try:
        wait_for(lambda: job_state(exp, "s.train") == "running", 30, what="s.train running")
        # another terminal: status --json sees the live runner and the running job
        data = json.loads(cli("status", str(exp), "--json", timeout=30).stdout)
        assert data["runner"]["alive"] and data["runner"]["pid"] == runner.pid
        job = {j["id"]: j for j in data["jobs"]}["s.train"]
        assert job["state"] == "running" and job["native_id"] == "local-1" and not job["runner_gone"]
        sleeper = job["pid"]
        assert pid_alive(sleeper)
        # a second runner is refused while this one lives
        second = cli("run", str(exp), "--executor", "local", timeout=30)
        assert second.returncode == 2 and "is driving this experiment" in second.stderr

        proc = cli("cancel", str(exp), timeout=30)
        assert proc.returncode == 0 and "cancelled 2 job(s)" in proc.stdout
        out, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 0, out  # user cancellations are not failures
    wait_for(lambda: not pid_alive(sleeper), 10, what="the sleeper to die")
    st = state(exp)
    assert st["jobs"]["s.train"]["state"] == "cancelled" and st["jobs"]["s.train"]["reason"] == "cancelled by user"
    assert st["jobs"]["s.eval.task_epoch0"]["state"] == "cancelled"
    assert st["runner"] is None and not (marks / "s.train.end").exists()
    assert table_states(exp)["s"] == "cancelled"
    assert count(exp, "CANCEL") == 1


def test_sigint_leaves_consistent_state_and_rerun_continues(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    fast = tmp_path / "fast.flag"
    slow = f'if [ -f "{fast}" ]; then sleep 0; else sleep 120; fi'
    exp = build(tmp_path / "exp", [Fake("q.train", marker(marks, "q.train", 0.1)),
                                   Fake("s.train", marker(marks, "s.train", 0, slow)),
                                   Fake("s.eval.task_epoch0", marker(marks, "s.eval", 0), after=["s.train"])])
    marks.mkdir()
    runner = start_cli("run", str(exp), "--executor", "local")
    try:
        wait_for(lambda: job_state(exp, "s.train") == "running", 30, what="s.train running")
        sleeper = state(exp)["jobs"]["s.train"]["pid"]
        runner.send_signal(signal.SIGINT)
        out, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 130, out
    assert "interrupted" in out and "again to continue" in out
    assert not pid_alive(sleeper)
    st = state(exp)
    assert st["jobs"]["q.train"]["state"] == "completed"
    assert st["jobs"]["s.train"]["state"] == "cancelled" and st["jobs"]["s.train"]["reason"] == "interrupted"
    eval_js = st["jobs"]["s.eval.task_epoch0"]
    assert eval_js["state"] == "pending" and eval_js["native_id"] is None  # queued, never started: back to pending
    assert st["runner"] is None and count(exp, "INTERRUPTED") == 1

    fast.write_text("go")
    proc = cli("run", str(exp), "--executor", "local", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rerunning 1 interrupted job(s): s.train" in proc.stdout
    st = state(exp)
    assert {j: st["jobs"][j]["state"] for j in st["jobs"]} == dict.fromkeys(st["jobs"], "completed")
    assert st["jobs"]["s.train"]["attempts"] == 2 and st["jobs"]["q.train"]["attempts"] == 1


def test_dead_runner_is_detected_and_its_jobs_cleaned_up(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    fast = tmp_path / "fast.flag"
    exp = build(tmp_path / "exp", [Fake("k.train", marker(marks, "k", 0, f'[ -f "{fast}" ] || sleep 120'))])
    runner = start_cli("run", str(exp), "--executor", "local")
    wait_for(lambda: job_state(exp, "k.train") == "running", 30, what="k.train running")
    sleeper = state(exp)["jobs"]["k.train"]["pid"]
    os.kill(runner.pid, signal.SIGKILL)  # a crash: no cleanup at all
    runner.wait(timeout=10)
    assert pid_alive(sleeper)  # the job survived its runner
    data = json.loads(cli("status", str(exp), "--json", timeout=30).stdout)
    assert not data["runner"]["alive"] and data["jobs"][0]["runner_gone"]
    assert "GONE" in cli("status", str(exp), timeout=30).stdout

    fast.write_text("go")
    proc = cli("run", str(exp), "--executor", "local", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not pid_alive(sleeper)  # the orphan was killed before the rerun
    js = state(exp)["jobs"]["k.train"]
    assert js["state"] == "completed" and js["attempts"] == 2 and js["native_id"] == "local-2"


def test_only_stage_and_dry_run(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    exp = standard(tmp_path / "exp", marks, train_sleep=0, eval_sleep=0)
    dry = cli("run", str(exp), "--executor", "slurm", "--dry-run", timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert "sbatch --parsable --dependency=afterok:<a.train>" in dry.stdout and "6 would submit" in dry.stdout
    assert not (exp / ".ck" / "state.json").exists() and not (exp / "run-experiment.log").exists()

    proc = cli("run", str(exp), "--executor", "local", "--only", "a", "--stage", "train", timeout=60)
    assert proc.returncode == 0, proc.stderr
    st = state(exp)
    assert [j for j in ALL6 if st["jobs"][j]["state"] == "completed"] == ["a.train"]
    # eval of a now runs on its own (its training completed); b's eval waits on b.train, not selected
    proc = cli("run", str(exp), "--executor", "local", "--stage", "eval", timeout=60)
    assert proc.returncode == 0
    assert "wait on jobs outside --only/--stage" in proc.stdout
    st = state(exp)
    assert st["jobs"]["a.eval.task_epoch1"]["state"] == "completed" and st["jobs"]["b.eval.task_epoch0"]["state"] == "pending"

    bad = cli("run", str(exp), "--only", "aa", timeout=30)
    assert bad.returncode == 2 and "no run named 'aa'" in bad.stderr and "did you mean a?" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_user_errors_are_one_line(tmp_path, scratch, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("run", str(empty), timeout=30)
    assert proc.returncode == 2 and "has not been scaffolded" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("status", str(tmp_path / "nope"), timeout=30)
    assert proc.returncode == 2 and "experiment directory not found" in proc.stderr
    exp = build(tmp_path / "exp", [Fake("x.train"), Fake("x.eval.t", after=["x.trian"])])
    proc = cli("run", str(exp), timeout=30)
    assert proc.returncode == 2 and "jobs[1].after[0]: unknown job 'x.trian'" in proc.stderr
    proc = cli("run", str(exp), "--max-parallel", "0", timeout=30)
    assert proc.returncode == 2 and "--max-parallel" in proc.stderr


def test_missing_status_markers_are_appended(tmp_path, scratch, cli):
    exp = build(tmp_path / "exp", [Fake("m.train")], summary=False)
    (exp / "experiment_summary.md").write_text("# mine\n\nno markers here\n")
    assert cli("run", str(exp), "--executor", "local", timeout=60).returncode == 0
    text = (exp / "experiment_summary.md").read_text()
    assert text.startswith("# mine\n\nno markers here\n") and text.count("<!-- ck:status:start -->") == 1
    assert table_states(exp) == {"m": "completed"}


def test_state_writes_are_atomic_and_locked(tmp_path, scratch):
    """Concurrent read-modify-write through StateStore.locked never loses an update."""
    from cruijff_kit.run.state import StateStore

    store = StateStore(tmp_path)
    code = ("import sys; from cruijff_kit.run.state import StateStore\n"
            "s = StateStore(sys.argv[1])\n"
            "for _ in range(20):\n"
            "    with s.locked() as st: st['local_seq'] += 1\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert store.read()["local_seq"] == 60


def test_slurm_output_parsers():
    """The words sacct/squeue/scontrol print map to our states (no SLURM needed for this part)."""
    from cruijff_kit.run.executors.slurm import map_state, parse_elapsed, parse_exit, parse_mem_mb

    assert map_state("COMPLETED") == ("completed", "")
    assert map_state("CANCELLED by 1000") == ("cancelled", "cancelled (CANCELLED by 1000)")
    assert map_state("OUT_OF_MEMORY") == ("failed", "oom") and map_state("TIMEOUT") == ("failed", "timeout")
    assert map_state("NODE_FAIL") == ("failed", "node failure")
    assert map_state("PENDING", "DependencyNeverSatisfied") == ("cancelled", "dependency never satisfied")
    assert map_state("PENDING", "Dependency") == ("pending", "") and map_state("COMPLETING")[0] == "running"
    assert parse_elapsed("1-02:03:04") == 93784 and parse_elapsed("00:01:02") == 62 and parse_elapsed("") is None
    assert parse_mem_mb("4680K") == 4.6 and parse_mem_mb("1.5G") == 1536.0 and parse_mem_mb("") is None
    assert parse_exit("3:0") == 3 and parse_exit("0:9") == 137 and parse_exit("0:0") == 0

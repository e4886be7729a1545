"""`cruijff-kit run --executor slurm` against the real single-node SLURM (scripts/slurm-local.sh).

Real sbatch (eval cells with --dependency=afterok), squeue, sacct and scancel; job scripts rendered from
templates/job.sh.j2 by tests/run_fixtures.py. Skipped (with the reason) only when sbatch is not installed
or the cluster cannot be started.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from run_fixtures import Fake, build, failing_train, job_state, marker, stamp, standard, state, table_states, wait_for

from cruijff_kit import logbook

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slurm
POLL = ("--poll-interval", "0.3")
ALL6 = ["a.train", "a.eval.task_epoch0", "a.eval.task_epoch1", "b.train", "b.eval.task_epoch0", "b.eval.task_epoch1"]


def _answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch is not installed: start a local SLURM with `bash scripts/slurm-local.sh up`")
    if not _answers():
        up = subprocess.run(["bash", str(REPO / "scripts" / "slurm-local.sh"), "up"], capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
        if up.returncode != 0 or not _answers():
            pytest.skip(f"the local SLURM does not answer and `slurm-local.sh up` failed: {up.stderr.strip()[-300:]}")


def sacct_states(ids) -> dict[str, str]:
    out = subprocess.run(["sacct", "--parsable2", "-n", "-X", "-j", ",".join(ids), "-o", "JobID,State"],
                         capture_output=True, text=True, timeout=30).stdout
    return {line.split("|")[0]: line.split("|")[1].split()[0] for line in out.splitlines() if "|" in line}


def wait_sacct(ids, want, timeout=30.0) -> dict[str, str]:
    """sacct can lag a moment behind the controller."""
    return wait_for(lambda: (lambda s: s if all(s.get(i) in want for i in ids) else None)(sacct_states(ids)),
                    timeout, 0.3, f"sacct {want} for {ids}")


def entries(exp: Path, action: str) -> list[logbook.Entry]:
    return [e for e in logbook.read(exp / "run-experiment.log") if e.action == action]


def test_slurm_afterok_all_complete(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    exp = standard(tmp_path / "exp", marks, train_sleep=1.0, eval_sleep=0.2)
    proc = cli("run", str(exp), "--executor", "slurm", "--wait", *POLL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert {j: st["jobs"][j]["state"] for j in ALL6} == dict.fromkeys(ALL6, "completed")
    natives = {j: st["jobs"][j]["native_id"] for j in ALL6}
    assert all(n.isdigit() for n in natives.values())
    assert set(wait_sacct(natives.values(), {"COMPLETED"}).values()) == {"COMPLETED"}
    # eval cells were submitted with afterok on their own training job, and ran after it
    for e in entries(exp, "SUBMIT_EVAL"):
        run = e.description.split()[1].split(".")[0]
        assert f"--dependency=afterok:{natives[run + '.train']} " in e.command
        assert e.extra["Job ID"] in natives.values()
    assert all("--dependency" not in e.command for e in entries(exp, "SUBMIT_JOB"))
    for run in ("a", "b"):
        assert stamp(marks, f"{run}.eval.task_epoch0", "start") >= stamp(marks, f"{run}.train", "end")
    # the job's own log (SLURM wrote it, %j = the SLURM id) and the compute record
    js = st["jobs"]["a.train"]
    assert Path(js["log"]).name == f"slurm-{natives['a.train']}.out"
    assert f"job a.train running as {natives['a.train']}" in Path(js["log"]).read_text()
    compute = json.loads((exp / "a" / "compute.json").read_text())
    assert compute["executor"] == "slurm" and compute["exit_code"] == 0 and compute["native_id"] == natives["a.train"]
    assert compute["wall_s"] >= 1.0 and compute["started"] and compute["ended"]
    assert set(table_states(exp).values()) == {"completed"}
    assert len(entries(exp, "ALL_COMPLETE")) == 1 and st["runner"] is None


def test_slurm_failure_cancels_dependents_then_resubmit(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    flag = tmp_path / "fixed.flag"
    out_root = tmp_path / "outputs"
    broken = failing_train(marks, flag, out_root, "RuntimeError: broken on purpose")
    exp = standard(tmp_path / "exp", marks, train_sleep=0.2, eval_sleep=0.1, train_extra={"b": broken},
                   output_root=out_root)
    proc = cli("run", str(exp), "--executor", "slurm", "--wait", *POLL, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    st = state(exp)
    b = st["jobs"]["b.train"]
    assert b["state"] == "failed" and b["exit_code"] == 3 and b["reason"] == "exit code 3"
    assert "RuntimeError: broken on purpose" in b["tail"]
    cells = [f"b.eval.task_epoch{i}" for i in (0, 1)]
    for cell in cells:
        assert st["jobs"][cell]["state"] == "cancelled"
        assert st["jobs"][cell]["reason"] == "dependency b.train failed"
    assert all(st["jobs"][j]["state"] == "completed" for j in ALL6[:3])
    old = [st["jobs"][c]["native_id"] for c in cells]
    assert set(wait_sacct(old, {"CANCELLED"}).values()) == {"CANCELLED"}
    assert sacct_states([b["native_id"]])[b["native_id"]] == "FAILED"
    assert [e.description for e in entries(exp, "JOB_FAILED")] == ["b.train failed: exit code 3"]
    assert table_states(exp)["b"] == "failed"

    flag.write_text("fixed")
    proc = cli("resubmit", str(exp), "--failed", "--wait", *POLL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert {j: st["jobs"][j]["state"] for j in ALL6} == dict.fromkeys(ALL6, "completed")
    new = [st["jobs"][j]["native_id"] for j in ["b.train", *cells]]
    assert set(wait_sacct(new, {"COMPLETED"}).values()) == {"COMPLETED"}
    assert st["jobs"]["b.train"]["attempts"] == 2 and st["jobs"]["a.train"]["attempts"] == 1
    assert (marks / "b.resume").read_text().strip() == "resume=1"  # epoch_0 existed: resumed, not restarted
    assert sum(1 for e in entries(exp, "SUBMIT_JOB") if e.description.startswith("Submitted b.train")) == 2
    assert set(table_states(exp).values()) == {"completed"}


def test_slurm_submit_returns_status_follows_cancel(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    exp = build(tmp_path / "exp", [Fake("s.train", marker(marks, "s.train", 300)),
                                   Fake("s.eval.task_epoch0", "true", after=["s.train"])])
    t0 = time.monotonic()
    proc = cli("run", str(exp), "--executor", "slurm", timeout=60)
    assert proc.returncode == 0 and time.monotonic() - t0 < 15, proc.stdout + proc.stderr
    st = state(exp)
    ids = [st["jobs"][j]["native_id"] for j in ("s.train", "s.eval.task_epoch0")]
    assert all(i and i.isdigit() for i in ids) and st["runner"] is None

    # nobody waits: `status` polls SLURM itself and records the transition
    def running():
        data = json.loads(cli("status", str(exp), "--json", timeout=30).stdout)
        return data if data["jobs"][0]["state"] == "running" else None

    data = wait_for(running, 30, 0.5, "s.train running")
    assert data["jobs"][1]["state"] == "pending" and data["jobs"][1]["native_id"] == ids[1]
    assert job_state(exp, "s.train") == "running"
    assert any(e.result == "pending -> running" for e in entries(exp, "STATE_CHANGE"))

    proc = cli("cancel", str(exp), timeout=30)
    assert proc.returncode == 0 and "cancelled 2 job(s)" in proc.stdout
    st = state(exp)
    assert [st["jobs"][j]["reason"] for j in st["jobs"]] == ["cancelled by user"] * 2
    assert set(wait_sacct(ids, {"CANCELLED"}).values()) == {"CANCELLED"}
    # a later status does not turn SLURM's CANCELLED into something else
    cli("status", str(exp), timeout=30)
    assert state(exp)["jobs"]["s.train"]["reason"] == "cancelled by user"
    assert table_states(exp)["s"] == "cancelled"


def test_slurm_max_submit_drip_feed(tmp_path, scratch, cli):
    marks = tmp_path / "marks"
    marks.mkdir()
    names = [f"r{i}.train" for i in range(5)]
    exp = build(tmp_path / "exp", [Fake(n, marker(marks, n, 1.0)) for n in names])
    proc = cli("run", str(exp), "--executor", "slurm", "--max-submit", "2", timeout=60)
    assert proc.returncode == 0 and "3 job(s) not yet submitted (--max-submit 2)" in proc.stdout, proc.stdout
    assert len(entries(exp, "SUBMIT_JOB")) == 2
    # running again right away adds nothing while two are still queued/running
    proc = cli("run", str(exp), "--executor", "slurm", "--max-submit", "2", timeout=60)
    assert proc.returncode == 0
    if sum(1 for n in names if job_state(exp, n) == "completed") == 0:
        assert len(entries(exp, "SUBMIT_JOB")) == 2
    proc = cli("run", str(exp), "--executor", "slurm", "--max-submit", "2", "--wait", *POLL, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert all(st["jobs"][n]["state"] == "completed" for n in names)
    submits = entries(exp, "SUBMIT_JOB")
    assert sorted(e.description.split()[1] for e in submits) == names  # each exactly once
    # never more than two of ours in SLURM at once: every later job was submitted after an earlier one ended
    order = sorted(names, key=lambda n: int(st["jobs"][n]["native_id"]))
    for k, name in enumerate(order[2:], start=2):
        ended_before = [st["jobs"][m]["ended"] for m in order[:k]]
        assert sum(1 for e in ended_before if e <= st["jobs"][name]["submitted"]) >= k - 1
    assert set(wait_sacct([st["jobs"][n]["native_id"] for n in names], {"COMPLETED"}).values()) == {"COMPLETED"}


def test_slurm_sbatch_refusal_fails_the_job(tmp_path, scratch, cli):
    exp = build(tmp_path / "exp", [Fake("x.train"), Fake("x.eval.t_epoch0", after=["x.train"])])
    script = exp / "x" / "finetune.slurm"
    script.write_text(script.read_text().replace("#SBATCH --nodes=1", "#SBATCH --partition=no_such_partition"))
    proc = cli("run", str(exp), "--executor", "slurm", "--wait", *POLL, timeout=60)
    assert proc.returncode == 1
    st = state(exp)
    assert st["jobs"]["x.train"]["state"] == "failed" and st["jobs"]["x.train"]["reason"].startswith("sbatch: ")
    assert "partition" in st["jobs"]["x.train"]["reason"].lower()
    assert st["jobs"]["x.eval.t_epoch0"]["reason"] == "dependency x.train failed"


def test_fallbacks_without_accounting_agree_with_sacct(tmp_path, scratch):
    """scontrol and the script's own .exitcode file give the same answer as sacct for a real job."""
    from cruijff_kit.experiment.jobs import read_jobs
    from cruijff_kit.run.executors.slurm import SlurmExecutor

    exp = build(tmp_path / "exp", [Fake("f.train", "echo bye; exit 3")])
    job = read_jobs(exp)[0]
    ex = SlurmExecutor(exp)
    native = ex.submit(job, [])
    final = wait_for(lambda: (lambda s: s if s and s.state == "failed" else None)(ex.poll([native]).get(native)),
                     30, 0.3, "the job to fail")
    assert final.exit_code == 3 and final.reason == "exit code 3"
    by_sacct = wait_for(lambda: ex._sacct([native]).get(native), 30, 0.3, "sacct to know the job")
    by_scontrol = ex._scontrol(native)
    by_file = ex._exit_file(native)
    for status in (by_sacct, by_scontrol, by_file):
        assert (status.state, status.exit_code, status.reason) == ("failed", 3, "exit code 3")
    assert (exp / "f" / "finetune.slurm.exitcode").read_text().strip() == "3"


def test_slurm_scancel_of_training_cancels_its_eval_and_resubmit_failed_reruns_both(tmp_path, scratch, cli):
    """`scancel` of a training job outside cruijff_kit: its eval is cancelled and leaves the queue (with or
    without kill_invalid_depend: the engine scancels a dependent that can never run), and
    `resubmit --failed` reruns the training job together with the eval, not the eval alone."""
    marks = tmp_path / "marks"
    marks.mkdir()
    flag = tmp_path / "quick"
    exp = build(tmp_path / "exp", [Fake("s.train", f'if [ ! -f "{flag}" ]; then sleep 300; fi'),
                                   Fake("s.eval.task_epoch0", marker(marks, "s.eval"), after=["s.train"])])
    proc = cli("run", str(exp), "--executor", "slurm", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = {j: state(exp)["jobs"][j]["native_id"] for j in ("s.train", "s.eval.task_epoch0")}

    def status_jobs() -> dict:
        data = json.loads(cli("status", str(exp), "--json", timeout=30).stdout)
        return {j["id"]: j for j in data["jobs"]}

    wait_for(lambda: status_jobs()["s.train"]["state"] == "running", 60, 0.5, "s.train running")
    subprocess.run(["scancel", ids["s.train"]], check=True, capture_output=True, timeout=30)
    jobs = wait_for(lambda: (lambda j: j if all(x["state"] == "cancelled" for x in j.values()) else None)(status_jobs()),
                    60, 0.5, "both jobs cancelled")
    assert jobs["s.eval.task_epoch0"]["reason"] == "dependency s.train cancelled"
    assert set(wait_sacct(list(ids.values()), {"CANCELLED"}).values()) == {"CANCELLED"}
    queued = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30).stdout.split()
    assert not set(queued) & set(ids.values())  # nothing of ours left PENDING

    dry = cli("resubmit", str(exp), "--failed", "--dry-run", timeout=60)
    assert dry.returncode == 0 and "rerun  s.train" in dry.stdout and "rerun  s.eval.task_epoch0" in dry.stdout
    flag.write_text("quick")
    proc = cli("resubmit", str(exp), "--failed", "--wait", *POLL, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert {j: st["jobs"][j]["state"] for j in ids} == dict.fromkeys(ids, "completed")
    assert st["jobs"]["s.train"]["attempts"] == 2 and (marks / "s.eval.end").exists()

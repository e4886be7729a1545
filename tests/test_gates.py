"""Stage gates in the run engine, on real job scripts run by the real local executor and real inspect-ai logs.

The `.eval` logs are made once per session by inspect-ai itself (`inspect_ai.eval` with the built-in
`mockllm/model` provider and a solver that answers "42", scored by `match`), so their accuracy is known:
k of 4 samples have target "42". Each fake eval job copies one of them into its cell's `logs/`.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest_eval import SANITY_TASK, design
from run_fixtures import Fake, build, marker, state

from cruijff_kit import logbook

GEN = r'''
import sys
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput
from inspect_ai.scorer import match
from inspect_ai.solver import solver

@solver
def answer_42():
    async def solve(state, generate):
        state.output = ModelOutput.from_content("mockllm/model", "42")
        return state
    return solve

out = sys.argv[1]
for k in (1, 2, 3, 4):
    samples = [Sample(input=f"q{i}", target="42" if i < k else "7") for i in range(4)]
    task = Task(name="instruct", dataset=samples, solver=answer_42(), scorer=match())
    log = eval(task, model="mockllm/model", log_dir=f"{out}/acc{k}", display="none")[0]
    assert log.status == "success", log.error
'''

STAGES = ("base", "sft", "polish")


@pytest.fixture(scope="session")
def eval_logs(tmp_path_factory) -> dict[float, Path]:
    """{accuracy: real .eval log}: 0.25, 0.5, 0.75, 1.0 on task `instruct` (scorer match)."""
    out = tmp_path_factory.mktemp("evallogs")
    env = {"HF_HUB_OFFLINE": "1", "INSPECT_LOG_DIR": str(out), "PATH": "/usr/bin:/bin", "HOME": str(out)}
    proc = subprocess.run([sys.executable, "-c", GEN, str(out)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = {}
    for k in (1, 2, 3, 4):
        (path,) = sorted((out / f"acc{k}").glob("*.eval"))
        logs[k / 4] = path
    return logs


def copy_log(src: Path) -> str:
    return f'mkdir -p logs && cp "{src}" logs/\n'


def staged_experiment(tmp: Path, logs: dict, *, acc: dict, gates: dict, gpus: int = 0,
                      train_sleep: float = 0.0) -> Path:
    """A three-stage experiment dir (base control -> sft -> polish) in the scaffold layout.

    acc: {run: accuracy of the log its eval job writes}; gates: {stage: gate dict}.
    """
    exp = tmp / "exp"
    marks = tmp / "marks"
    marks.mkdir(parents=True, exist_ok=True)
    path = design(tmp, name="staged", runs=[
        {"name": "base", "type": "control", "model": "tiny-llama", "stage": "base"},
        {"name": "sft", "type": "fine-tuned", "model": "tiny-llama", "stage": "sft"},
        {"name": "polish", "type": "fine-tuned", "model": "tiny-llama", "stage": "polish"}],
        matrix=[{"run": "base", "tasks": ["instruct"], "epochs": None},
                {"run": "sft", "tasks": ["instruct"], "epochs": [0]},
                {"run": "polish", "tasks": ["instruct"], "epochs": [0]}],
        tasks=[{"name": "instruct", "script": str(SANITY_TASK), "function": "predictable_or_not"}],
        scorers=[{"name": "match", "params": {"location": "exact"}}], controls={"epochs": 1})
    doc = yaml.safe_load(path.read_text())
    doc["experiment"]["dir"] = str(exp)
    doc["stages"] = [{"name": s, **({"gate": gates[s]} if s in gates else {})} for s in STAGES]
    jobs = [Fake("base.eval.instruct", marker(marks, "base.eval.instruct", extra=copy_log(logs[acc["base"]])))]
    for run in ("sft", "polish"):
        jobs.append(Fake(f"{run}.train", marker(marks, f"{run}.train", train_sleep)))
        jobs.append(Fake(f"{run}.eval.instruct_epoch0", marker(marks, f"{run}.eval.instruct_epoch0",
                                                                extra=copy_log(logs[acc[run]])),
                         after=[f"{run}.train"]))
    build(exp, jobs, name="staged")
    (exp / "experiment_summary.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    data = json.loads((exp / "jobs.json").read_text())
    for job in data["jobs"]:
        job["stage"] = job["run"]
        if job["kind"] == "eval":
            job["task"] = "instruct"
        if gpus and job["kind"] == "train":
            script = exp / job["script"]
            lines = script.read_text().splitlines(keepends=True)
            script.write_text(lines[0] + f"#SBATCH --gres=gpu:{gpus}\n" + "".join(lines[1:]))
    (exp / "jobs.json").write_text(json.dumps(data))
    return exp


def set_gate(exp: Path, stage: str, gate: dict) -> None:
    path = exp / "experiment_summary.yaml"
    doc = yaml.safe_load(path.read_text())
    for entry in doc["stages"]:
        if entry["name"] == stage:
            entry["gate"] = gate
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def entries(exp: Path, action: str) -> list[logbook.Entry]:
    return [e for e in logbook.read(exp / "run-experiment.log") if e.action == action]


def states(exp: Path) -> dict[str, str]:
    return {k: v["state"] for k, v in state(exp)["jobs"].items()}


LATER = ["sft.train", "sft.eval.instruct_epoch0", "polish.train", "polish.eval.instruct_epoch0"]


def test_failing_gate_cancels_later_stages_then_relaxed_gate_resumes(tmp_path, scratch, cli, eval_logs):
    exp = staged_experiment(tmp_path, eval_logs, acc={"base": 0.5, "sft": 0.75, "polish": 1.0},
                            gates={"base": {"metric": "instruct.match.accuracy", "op": ">=", "value": 0.9}})
    marks = tmp_path / "marks"
    proc = cli("run", str(exp), "--executor", "local", timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # gate-cancelled jobs are not a success
    st = state(exp)
    assert st["jobs"]["base.eval.instruct"]["state"] == "completed"
    reason = "gate base failed: instruct.match.accuracy=0.5 not >= 0.9"
    for job_id in LATER:
        assert st["jobs"][job_id]["state"] == "cancelled"
        assert st["jobs"][job_id]["reason"] == reason
        assert st["jobs"][job_id]["native_id"] is None  # never submitted
        assert not (marks / f"{job_id}.start").exists()  # never started
    gate = st["gates"]["base"]
    assert gate["passed"] is False and gate["value"] == 0.5 and gate["threshold"] == 0.9
    assert gate["cells"] == ["base.eval.instruct"] and gate["outcome"] == "failed"
    (failed,) = entries(exp, "GATE_FAILED")
    assert "instruct.match.accuracy=0.5 >= 0.9: no" in failed.result
    assert failed.extra["Details"] == ("metric=instruct.match.accuracy value=0.5 op=>= threshold=0.9 "
                                       "cells=base.eval.instruct")
    assert not entries(exp, "SUBMIT_JOB")  # no training job was ever handed to the executor

    # status shows the gate (text and JSON)
    text = cli("status", str(exp), timeout=60)
    assert text.returncode == 0, text.stderr
    assert "base: FAILED: instruct.match.accuracy = 0.5 (needs >= 0.9" in text.stdout
    data = json.loads(cli("status", str(exp), "--json", timeout=60).stdout)
    assert data["gates"][0]["stage"] == "base" and data["gates"][0]["outcome"] == "failed"
    assert "- **base**: failed: instruct.match.accuracy = 0.5" in (exp / "experiment_summary.md").read_text()

    # the user relaxes the gate in the design; resubmit re-reads it and continues downstream
    set_gate(exp, "base", {"metric": "instruct.match.accuracy", "op": ">=", "value": 0.4})
    proc = cli("resubmit", str(exp), "--failed", "--executor", "local", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(states(exp).values()) == {"completed"}
    for job_id in LATER:
        assert (marks / f"{job_id}.end").exists()
    assert state(exp)["gates"]["base"]["passed"] is True
    (passed,) = entries(exp, "GATE_PASSED")
    assert "value=0.5 op=>= threshold=0.4" in passed.extra["Details"]
    assert stamp_of(marks, "sft.train") >= stamp_of(marks, "base.eval.instruct", "end")


def stamp_of(marks: Path, name: str, which: str = "start") -> float:
    return float((marks / f"{name}.{which}").read_text())


def test_passing_gates_run_stages_in_order_and_warn_proceeds(tmp_path, scratch, cli, eval_logs):
    exp = staged_experiment(tmp_path, eval_logs, acc={"base": 0.25, "sft": 0.75, "polish": 1.0},
                            gates={"base": {"metric": "instruct.match.accuracy", "op": ">", "value": 0.5,
                                            "on_fail": "warn"},
                                   "sft": {"metric": "instruct.match.accuracy", "op": ">=", "value": 0.75}})
    marks = tmp_path / "marks"
    proc = cli("run", str(exp), "--executor", "local", "--max-parallel", "2", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(states(exp).values()) == {"completed"}
    st = state(exp)
    assert st["gates"]["base"]["outcome"] == "warning" and st["gates"]["base"]["value"] == 0.25
    assert st["gates"]["sft"]["outcome"] == "passed" and st["gates"]["sft"]["value"] == 0.75
    assert [e.description for e in entries(exp, "GATE_WARNING")] == ["gate of stage base: warning"]
    assert len(entries(exp, "GATE_PASSED")) == 1
    # even with 2 parallel slots, a later stage starts only after the earlier stage's evals ended
    assert stamp_of(marks, "sft.train") >= stamp_of(marks, "base.eval.instruct", "end")
    assert stamp_of(marks, "polish.train") >= stamp_of(marks, "sft.eval.instruct_epoch0", "end")


def test_missing_metric_fails_the_gate_naming_what_was_found(tmp_path, scratch, cli, eval_logs):
    exp = staged_experiment(tmp_path, eval_logs, acc={"base": 0.5, "sft": 0.5, "polish": 0.5},
                            gates={"base": {"metric": "instruct.exact.accuracy", "op": ">=", "value": 0.1}})
    proc = cli("run", str(exp), "--executor", "local", timeout=180)
    assert proc.returncode == 1
    st = state(exp)
    gate = st["gates"]["base"]
    assert gate["value"] is None and "found instruct: match.accuracy, match.stderr" in gate["reason"]
    assert st["jobs"]["sft.train"]["reason"] == "gate base failed: instruct.exact.accuracy=missing not >= 0.1"


def _slurm_answers() -> bool:
    import shutil

    if shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slurm
def test_slurm_gate_stops_then_resubmit_continues(tmp_path, scratch, cli, eval_logs):
    if not _slurm_answers():
        pytest.skip("no SLURM answers here: start one with `bash scripts/slurm-local.sh up`")
    exp = staged_experiment(tmp_path, eval_logs, acc={"base": 0.25, "sft": 0.5, "polish": 0.75},
                            gates={"base": {"metric": "instruct.match.accuracy", "op": ">=", "value": 0.5}})
    marks = tmp_path / "marks"
    proc = cli("run", str(exp), "--executor", "slurm", "--wait", "--poll-interval", "0.3", timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    st = state(exp)
    assert st["jobs"]["base.eval.instruct"]["native_id"].isdigit()
    for job_id in LATER:
        assert st["jobs"][job_id]["state"] == "cancelled" and st["jobs"][job_id]["native_id"] is None
        assert st["jobs"][job_id]["reason"] == "gate base failed: instruct.match.accuracy=0.25 not >= 0.5"
        assert not (marks / f"{job_id}.start").exists()
    set_gate(exp, "base", {"metric": "instruct.match.accuracy", "op": ">=", "value": 0.2})
    proc = cli("resubmit", str(exp), "--failed", "--executor", "slurm", "--wait", "--poll-interval", "0.3",
               timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = state(exp)
    assert {st["jobs"][i]["state"] for i in st["jobs"]} == {"completed"}
    assert all(st["jobs"][i]["native_id"].isdigit() for i in LATER)
    assert st["gates"]["base"]["passed"] is True


@pytest.mark.slurm
def test_slurm_without_wait_continues_through_gates_on_the_cluster(tmp_path, scratch, cli, eval_logs):
    """One `run --executor slurm` (no --wait): continuation jobs decide each gate on the cluster."""
    import shutil

    from run_fixtures import wait_for

    if shutil.which("sbatch") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        pytest.skip("needs the single-node SLURM: `bash scripts/slurm-local.sh up`")
    exp = staged_experiment(tmp_path, eval_logs, acc={"base": 0.25, "sft": 0.75, "polish": 1.0},
                            gates={"base": {"metric": "instruct.match.accuracy", "op": "<=", "value": 0.5},
                                   "sft": {"metric": "instruct.match.accuracy", "op": ">=", "value": 0.75}})
    marks = tmp_path / "marks"
    proc = cli("run", str(exp), "--executor", "slurm", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted continuation" in proc.stdout and "wait on a stage gate" in proc.stdout
    assert states(exp)["sft.train"] == "pending" and state(exp)["jobs"]["sft.train"]["native_id"] is None

    def finished():
        cli("status", str(exp), timeout=60)  # polls SLURM; submits nothing
        current = states(exp)
        return current if all(s in ("completed", "failed", "cancelled") for s in current.values()) else None

    final = wait_for(finished, timeout=240, interval=2, what="every job to end through the continuations")
    assert set(final.values()) == {"completed"}, final
    st = state(exp)
    assert st["gates"]["base"]["outcome"] == "passed" and st["gates"]["sft"]["outcome"] == "passed"
    continuations = entries(exp, "SUBMIT_CONTINUATION")
    assert len(continuations) == 2  # one per gate, the second submitted by the first on the cluster
    first, second = (c.extra["Job ID"] for c in continuations)
    assert first != second
    for native in (first, second):
        log = (exp / ".ck" / f"continue-{native}.out").read_text()
        assert "finished with exit status 0" in log, log
    # the gates held each stage until the previous stage's evals had ended
    assert stamp_of(marks, "sft.train") >= stamp_of(marks, "base.eval.instruct", "end")
    assert stamp_of(marks, "polish.train") >= stamp_of(marks, "sft.eval.instruct_epoch0", "end")
    assert len(entries(exp, "RUN_START")) == 3  # the user's run and the two continuations

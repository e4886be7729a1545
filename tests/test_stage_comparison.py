"""The stage progression table (base -> SFT -> DPO) and cost per stage, in `summarize` and `status --json`.

The experiment dir is constructed in the scaffold layout: real inspect-ai `.eval` logs (made once by
tests/test_gates.py's session fixture) placed in each cell's `logs/`, jobs.json with stages, job scripts
rendered from templates/job.sh.j2 (train scripts requesting 2 GPUs) and a state.json with known wall times.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest_eval import SANITY_TASK, design
from run_fixtures import Fake, build
from test_gates import eval_logs  # noqa: F401 - the session fixture

from cruijff_kit.run.state import StateStore, new_job

HOURLY = 3.0
ACC = {"base": 0.25, "sft_a": 0.5, "sft_b": 0.75, "dpo": 1.0}
STAGE = {"base": "base", "sft_a": "sft", "sft_b": "sft", "dpo": "dpo"}
WALL = {"sft_a.train": 1800.0, "sft_b.train": 3600.0, "dpo.train": 900.0, "base.eval.instruct": 600.0,
        "sft_a.eval.instruct_epoch0": 60.0, "sft_b.eval.instruct_epoch0": 60.0, "dpo.eval.instruct_epoch0": 60.0}


def comparison_experiment(tmp: Path, logs: dict, *, hourly: float | None) -> Path:
    exp = tmp / "exp"
    settings = tmp / "claude.local.md"
    settings.write_text("# test settings\n" + (f"- gpu hourly cost: {hourly}\n" if hourly else ""))
    runs = [{"name": "base", "type": "control", "model": "tiny-llama", "stage": "base"}]
    runs += [{"name": r, "type": "fine-tuned", "model": "tiny-llama", "stage": STAGE[r]} for r in ("sft_a", "sft_b", "dpo")]
    path = design(tmp, name="cmp", runs=runs,
                  matrix=[{"run": "base", "tasks": ["instruct"], "epochs": None}]
                  + [{"run": r, "tasks": ["instruct"], "epochs": [0]} for r in ("sft_a", "sft_b", "dpo")],
                  tasks=[{"name": "instruct", "script": str(SANITY_TASK), "function": "predictable_or_not"}],
                  scorers=[{"name": "match", "params": {"location": "exact"}}],
                  controls={"epochs": 1, "device": "cuda"})
    doc = yaml.safe_load(path.read_text())
    doc["experiment"]["dir"] = str(exp)
    doc["stages"] = [{"name": "base"}, {"name": "sft"}, {"name": "dpo"}]
    fakes = [Fake("base.eval.instruct")]
    for run in ("sft_a", "sft_b", "dpo"):
        fakes += [Fake(f"{run}.train"), Fake(f"{run}.eval.instruct_epoch0", after=[f"{run}.train"])]
    build(exp, fakes, name="cmp")
    (exp / "experiment_summary.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    data = json.loads((exp / "jobs.json").read_text())
    for job in data["jobs"]:
        job["stage"] = STAGE[job["run"]]
        if job["kind"] == "eval":
            job["task"] = "instruct"
            logs_dir = exp / Path(job["script"]).parent / "logs"
            logs_dir.mkdir(parents=True)
            (logs_dir / logs[ACC[job["run"]]].name).write_bytes(logs[ACC[job["run"]]].read_bytes())
        else:  # a GPU training job: the --gres line is what actual GPU-hours count
            script = exp / job["script"]
            lines = script.read_text().splitlines(keepends=True)
            script.write_text(lines[0] + "#SBATCH --gres=gpu:2\n" + "".join(lines[1:]))
    (exp / "jobs.json").write_text(json.dumps(data))
    store = StateStore(exp)
    st = {"version": 1, "jobs": {}, "runner": None, "local_seq": 7}
    for i, job in enumerate(data["jobs"], 1):
        st["jobs"][job["id"]] = {**new_job(), "state": "completed", "native_id": f"local-{i}", "executor": "local",
                                 "attempts": 1, "started": "2026-01-01T10:00:00", "ended": "2026-01-01T11:00:00",
                                 "exit_code": 0, "wall_s": WALL[job["id"]]}
    store.write(st)
    return exp


def expected_actual_hours() -> dict:
    """Train jobs request 2 GPUs; eval scripts have no --gres line (0 GPUs)."""
    out = {"base": 0.0, "sft": 0.0, "dpo": 0.0}
    for job_id, wall in WALL.items():
        if job_id.endswith(".train"):
            out[STAGE[job_id.split(".")[0]]] += wall / 3600 * 2
    return out


@pytest.fixture
def cmp_exp(tmp_path, scratch, monkeypatch, eval_logs):  # noqa: F811
    exp = comparison_experiment(tmp_path, eval_logs, hourly=HOURLY)
    monkeypatch.setenv("CK_SETTINGS", str(tmp_path / "claude.local.md"))
    return exp


def test_summarize_shows_stage_progression_with_deltas_and_cost(cmp_exp, cli, tmp_path):
    proc = cli("summarize", str(cmp_exp), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((cmp_exp / "analysis" / "summary.json").read_text())
    (table,) = data["stages"]
    assert table["task"] == "instruct" and table["metric"] == "match.accuracy"
    rows = {r["stage"]: r for r in table["rows"]}
    assert [r["stage"] for r in table["rows"]] == ["base", "sft", "dpo"]
    assert rows["base"]["best"] == 0.25 and rows["base"]["delta_prev"] is None and rows["base"]["delta_first"] is None
    assert rows["sft"]["runs"] == ["sft_a", "sft_b"] and rows["sft"]["cells"] == 2
    assert rows["sft"]["best"] == 0.75 and rows["sft"]["best_cell"] == "sft_b.eval.instruct_epoch0"
    assert rows["sft"]["mean"] == pytest.approx(0.625)
    assert rows["sft"]["delta_prev"] == pytest.approx(0.5) and rows["sft"]["delta_first"] == pytest.approx(0.5)
    assert rows["sft"]["delta_prev_mean"] == pytest.approx(0.375)
    assert rows["dpo"]["best"] == 1.0 and rows["dpo"]["delta_prev"] == pytest.approx(0.25)
    assert rows["dpo"]["delta_first"] == pytest.approx(0.75) and rows["dpo"]["delta_prev_mean"] == pytest.approx(0.375)

    # cost: actual = wall x GPUs from --gres x hourly; estimated from cruijff_kit.compute.estimates per run
    cost = data["cost"]
    actual = expected_actual_hours()
    assert cost["hourly_cost"] == HOURLY
    by_stage = {r["stage"]: r for r in cost["stages"]}
    for stage, hours in actual.items():
        assert by_stage[stage]["actual_gpu_hours"] == pytest.approx(hours, abs=1e-6)
        assert by_stage[stage]["actual_cost"] == pytest.approx(hours * HOURLY, abs=1e-4)
    assert cost["total"]["actual_gpu_hours"] == pytest.approx(sum(actual.values()), abs=1e-6)  # 3.5 GPU-hours
    assert cost["total"]["actual_cost"] == pytest.approx(3.5 * HOURLY, abs=1e-4)
    from cruijff_kit.compute.estimates import estimate_experiment
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import load_settings

    settings = load_settings()
    est = {e.run: e.gpu_hours for e in estimate_experiment(
        load_experiment(cmp_exp / "experiment_summary.yaml", settings=settings), settings)}
    assert est["sft_a"] > 0
    assert by_stage["sft"]["estimated_gpu_hours"] == pytest.approx(est["sft_a"] + est["sft_b"], abs=1e-5)
    assert by_stage["sft"]["estimated_cost"] == pytest.approx((est["sft_a"] + est["sft_b"]) * HOURLY, abs=1e-3)

    # the markdown reports: analysis/summary.md and the results block of experiment_summary.md
    for text in ((cmp_exp / "analysis" / "summary.md").read_text(),
                 (cmp_exp / "experiment_summary.md").read_text().split("<!-- ck:results:start -->")[1]):
        assert "Stage progression" in text
        assert "| sft | sft_a, sft_b | 2 | 0.750 | 0.625 | +0.500 | +0.500 | +0.375 | +0.375 |" in text
        assert "| dpo | dpo | 1 | 1.000 | 1.000 | +0.250 | +0.750 | +0.375 | +0.750 |" in text
        assert "| total |" in text and "| 3.500 | " in text and "$10.50" in text


def test_status_json_has_cost_per_stage(cmp_exp, cli):
    proc = cli("status", str(cmp_exp), "--json", "--no-refresh", timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    actual = expected_actual_hours()
    by_stage = {r["stage"]: r for r in data["cost"]["stages"]}
    assert list(by_stage) == ["base", "sft", "dpo"]
    for stage, hours in actual.items():
        assert by_stage[stage]["actual_gpu_hours"] == pytest.approx(hours, abs=1e-6)
        assert by_stage[stage]["estimated_gpu_hours"] > 0
    assert data["cost"]["total"]["actual_cost"] == pytest.approx(10.5, abs=1e-4)
    assert {j["id"]: j["stage"] for j in data["jobs"]}["sft_b.train"] == "sft"
    text = cli("status", str(cmp_exp), "--no-refresh", timeout=120).stdout
    assert "GPU-hours (estimated vs actual) per stage:" in text and "$10.50" in text


def test_without_hourly_cost_only_gpu_hours(tmp_path, scratch, monkeypatch, cli, eval_logs):  # noqa: F811
    exp = comparison_experiment(tmp_path, eval_logs, hourly=None)
    monkeypatch.setenv("CK_SETTINGS", str(tmp_path / "claude.local.md"))
    data = json.loads(cli("status", str(exp), "--json", "--no-refresh", timeout=120).stdout)
    assert data["cost"]["hourly_cost"] is None and data["cost"]["total"]["actual_cost"] is None
    assert data["cost"]["total"]["actual_gpu_hours"] == pytest.approx(3.5, abs=1e-6)
    text = cli("status", str(exp), "--no-refresh", timeout=120).stdout
    assert "GPU-hours only" in text and "$" not in text.split("per stage:")[1]


def test_gate_over_several_cells_uses_their_mean(cmp_exp):
    from cruijff_kit.experiment.jobs import read_jobs
    from cruijff_kit.run.gates import evaluate, read_stages
    from cruijff_kit.experiment.model import Gate, Stage

    jobs = [j for j in read_jobs(cmp_exp) if j.kind == "eval" and j.stage == "sft"]
    result = evaluate(cmp_exp, Stage("sft", gate=Gate("instruct.match.accuracy", ">", 0.6)), jobs)
    assert result.value == pytest.approx(0.625) and result.passed and result.reason == "mean of 2 cells"
    assert result.values == {"sft_a.eval.instruct_epoch0": 0.5, "sft_b.eval.instruct_epoch0": 0.75}
    assert result.numbers().startswith("instruct.match.accuracy=0.625 > 0.6: yes")
    assert [s.name for s in read_stages(cmp_exp)] == ["base", "sft", "dpo"]

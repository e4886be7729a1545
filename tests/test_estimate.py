"""estimate: defaults without priors (preliminary), prior runs from real compute records, logged steps,
--check with stored history and calibration. The fixture records come from a real tiny training run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from cruijff_kit import logbook
from cruijff_kit.cli import main as cli_main

from conftest import SANITY

PRIORS = Path(__file__).parent / "fixtures" / "estimate" / "prior_scratch"
RECORD = json.loads((PRIORS / "ck-sanity-checks/predictable_or_not/pp_output_only/compute.json").read_text())


def test_without_priors_is_preliminary(scratch, capsys):
    assert cli_main(["estimate", str(SANITY), "--profile", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["priors"] == 0 and report["totals"]["preliminary"] is True
    assert all(r["basis"] == "defaults by model size" for r in report["runs"])
    assert all(r["recommended_time"] == "00:15:00" for r in report["runs"])  # 15-minute floor


def test_prior_runs_give_time_from_measured_throughput(scratch, capsys):
    assert cli_main(["estimate", str(SANITY), "--profile", "tiny", "--priors", str(PRIORS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["priors"] == 2 and report["totals"]["preliminary"] is False
    by_run = {r["run"]: r for r in report["runs"]}
    same = by_run["pp_output_only"]
    assert same["basis"].startswith("prior run ") and same["tokens_per_s"] == round(RECORD["tokens_per_s"], 1)
    # the same configuration is predicted from its own record: tokens and wall time reproduce exactly
    assert same["tokens"] == RECORD["tokens"]
    assert abs(same["train_s"] - RECORD["wall_s"]) / RECORD["wall_s"] < 0.02
    # eval time from the prior run's own eval cells (median 10.25 s of 10.4 and 10.1) x its 2 cells
    assert same["eval_s"] == 20.5
    exp_dir = scratch / "ck-sanity-checks" / "predictable_or_not"
    actions = [e.action for e in logbook.read(exp_dir / "design-experiment.log")]
    assert actions[0] == "SEARCH_PRIOR_RUNS" and "EXTRACT_SPEED" in actions
    assert actions.count("CALCULATE_TIME") == 8 and actions[-1] == "CHECK_DISK"
    assert json.loads((exp_dir / ".ck" / "estimate.json").read_text())["runs"]["pp_output_only"]["tokens"] == 8800


def test_check_compares_predicted_with_actual_and_calibrates(scratch, capsys):
    assert cli_main(["estimate", str(SANITY), "--profile", "tiny", "--priors", str(PRIORS)]) == 0
    capsys.readouterr()
    exp_dir = scratch / "ck-sanity-checks" / "predictable_or_not"
    # the runs "happen": their compute records appear in the experiment dir, 10% slower than predicted
    design = (PRIORS / "ck-sanity-checks/predictable_or_not/experiment_summary.yaml").read_text()
    (exp_dir / "experiment_summary.yaml").write_text(design)
    predicted = json.loads((exp_dir / ".ck" / "estimate.json").read_text())["runs"]
    for run in ("pp_output_only", "up_output_only"):
        record = dict(RECORD, run=run, wall_s=predicted[run]["train_s"] * 1.1)
        (exp_dir / run).mkdir(exist_ok=True)
        (exp_dir / run / "compute.json").write_text(json.dumps(record))
    for epoch in (0, 1):  # pp_output_only's two eval cells also run 10% slower than predicted (2 x 10.25 s)
        cell = exp_dir / "pp_output_only" / "eval" / f"next_value_epoch{epoch}"
        cell.mkdir(parents=True)
        (cell / "compute.json").write_text(json.dumps({"kind": "eval", "exit_code": 0, "wall_s": 10.25 * 1.1}))
    assert cli_main(["estimate", str(exp_dir), "--check", "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert set(rows) == {"pp_output_only", "up_output_only"}
    assert all(abs(r["error_pct"] + 9.1) < 0.2 for r in rows.values())  # predicted 1/1.1 of actual
    assert rows["pp_output_only"]["eval_cells"] == 2 and abs(rows["pp_output_only"]["eval_error_pct"] + 9.1) < 0.2
    assert "eval_error_pct" not in rows["up_output_only"]  # no eval records: nothing to compare
    history = scratch / "ck-estimates" / "history.jsonl"
    assert len(history.read_text().splitlines()) == 2
    # the next estimate is calibrated by that history (x1.1)
    shutil.rmtree(exp_dir / "pp_output_only")
    shutil.rmtree(exp_dir / "up_output_only")
    assert cli_main(["estimate", str(exp_dir), "--priors", str(PRIORS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert abs(report["calibration"] - 1.1) < 1e-6


def test_check_without_estimate_is_a_user_error(scratch, capsys):
    assert cli_main(["estimate", str(SANITY), "--profile", "tiny", "--check"]) == 2
    err = capsys.readouterr().err
    assert "no stored estimate to check" in err and "Traceback" not in err


def test_every_consumer_shows_the_same_prior_based_estimate(scratch, capsys, monkeypatch):
    """$CK_PRIORS reaches estimate, design summary (Compute Estimates) and scaffold (--time) alike."""
    monkeypatch.setenv("CK_PRIORS", str(PRIORS))
    assert cli_main(["estimate", str(SANITY), "--profile", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["priors"] == 2
    est = {r["run"]: r for r in report["runs"]}["pp_output_only"]
    assert est["basis"] == "prior run pp_output_only"
    assert cli_main(["design", "summary", str(SANITY), "--profile", "tiny"]) == 0
    assert cli_main(["scaffold", str(SANITY), "--profile", "tiny"]) == 0
    capsys.readouterr()
    exp_dir = scratch / "ck-sanity-checks" / "predictable_or_not"
    plan = (exp_dir / "experiment_summary.md").read_text()
    section = plan.split("## Compute Estimates", 1)[1].split("\n## ", 1)[0]
    assert "Preliminary" not in section
    row = next(line for line in section.splitlines() if line.startswith("| pp_output_only |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == f"{est['train_s'] / 60:.1f}" and cells[-1] == "prior run pp_output_only"
    slurm = (exp_dir / "pp_output_only" / "finetune.slurm").read_text()
    assert f"#SBATCH --time={est['recommended_time']}" in slurm


def test_recommended_batch_size_fits_the_gpu_memory_measured_by_a_prior_run():
    """Weights + per-example memory (from the prior's GPU peak) x batch must fit 90% of the GPU."""
    from dataclasses import replace

    from cruijff_kit.compute.estimates import PriorRun, estimate_run
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import Settings

    exp = load_experiment(SANITY / "experiment_summary.yaml", settings=Settings())
    run = exp.runs[0]  # Llama-3.2-1B-Instruct: 2.5 GB of weights, max_seq_len 128, on cuda
    assert exp.model(run.model).size_gb == 2.5 and run.controls.device == "cuda"
    big = replace(run, controls=replace(run.controls, batch_size=16, gradient_accumulation_steps=1))
    # measured: 22.5 GB peak at batch 4 -> 5 GB per example at this sequence length
    prior = PriorRun("x/ck-experiments/e/r/compute.json", run.model, 4, run.controls.max_seq_len, 1, 1000, 100.0,
                     60.0, peak_memory_gb=22.5)

    def recommend(r, gpu_type, p=prior):
        e = estimate_run(exp, r, Settings(gpu_type=gpu_type, slurm_gpus=1), p)
        return e.recommended_batch_size, e.recommended_grad_accum

    assert recommend(big, "A100-40GB") == (4, 4)  # (36 - 2.5) / 5 = 6.7 -> 4, accumulate 4 for 16
    assert recommend(big, "H100") == (8, 2)  # (72 - 2.5) / 5 = 13.9 -> 8
    assert recommend(replace(big, controls=replace(big.controls, batch_size=4)), "A100-40GB") == (4, 1)  # fits
    cpu = replace(big, controls=replace(big.controls, device="cpu"))
    assert recommend(cpu, "A100-40GB") == (16, 1)  # no GPU: the design's batch size
    assert recommend(big, "H100", None) == (16, 1)  # no prior: 0.03 GB/example by default, 16 fits
    e = estimate_run(exp, big, Settings(gpu_type="H100"), prior)
    assert e.disk_per_epoch_merged_gb == 2.5 and e.disk_per_epoch_adapter_gb == 0.025


def test_default_throughput_depends_on_model_size_and_gpu_type():
    from cruijff_kit.compute.estimates import default_throughput, gpu_spec

    a100 = default_throughput(2.5, "cuda", "A100-80GB")
    assert a100 == default_throughput(2.5, "cuda", "") == 6000.0  # unset GPU type: the A100 baseline
    assert default_throughput(2.5, "cuda", "H100") == 2 * a100
    assert default_throughput(2.5, "cuda", "T4") < a100
    assert default_throughput(16.0, "cuda", "A100") < a100  # a bigger model is slower
    assert default_throughput(2.5, "cpu", "H100") == default_throughput(2.5, "cpu")  # the GPU type is moot
    assert gpu_spec("a100-40gb")[0] == 40.0 and gpu_spec("NVIDIA H200")[0] == 141.0

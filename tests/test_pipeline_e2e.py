"""The sft_then_dpo example for real on CPU (tiny model, local executor):
base eval (gate verify) -> SFT -> eval -> prefs from the SFT checkpoint -> DPO from the SFT checkpoint -> eval.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sft_then_dpo"
LORA_TOUCHED = ("model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.v_proj.weight",
                "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.gate_proj.weight")


def _ck(*args, env):
    return subprocess.run([sys.executable, "-m", "cruijff_kit", *args], env=env, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.slow
def test_sft_then_dpo_pipeline_runs_end_to_end(scratch, tmp_path):
    from safetensors.torch import load_file

    from cruijff_kit.models.tiny import write_tiny_if_missing

    src = tmp_path / "src" / "sft_then_dpo"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("answer42_prefs*", "__pycache__"))
    write_tiny_if_missing(scratch / "models" / "tiny-llama")
    # job scripts call `tune` and `cruijff-kit`: the venv's bin first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = _ck("scaffold", str(src / "experiment_summary.yaml"), "--profile", "tiny", env=env)
    assert res.returncode == 0, res.stderr
    exp_dir = scratch / "ck-experiments" / "sft_then_dpo"
    start = time.perf_counter()
    res = _ck("run", str(exp_dir), "--executor", "local", "--wait", env=env)
    wall = time.perf_counter() - start
    print(f"sft_then_dpo pipeline wall time: {wall:.1f}s\n{res.stdout}")
    assert res.returncode == 0, res.stdout + res.stderr
    # every job completed (each job script wrote exit status 0 itself)
    jobs = json.loads((exp_dir / "jobs.json").read_text())["jobs"]
    assert len(jobs) == 6
    for job in jobs:
        assert (exp_dir / (job["script"] + ".exitcode")).read_text().strip() == "0", job["id"]
    from cruijff_kit import logbook

    gates = [e for e in logbook.read(exp_dir / "run-experiment.log") if e.action.startswith("GATE_")]
    assert [e.action for e in gates] == ["GATE_PASSED"], gates  # the base model failed the task: SFT may start
    # the preference file has pairs, chosen != rejected
    prefs = json.loads((src / "data" / "answer42_prefs.json").read_text())
    assert len(prefs["train"]) >= 1
    assert all(p["chosen"] != p["rejected"] and p["prompt"] for p in prefs["train"])
    # DPO started from the SFT checkpoint: DPO's merged weights minus its LoRA delta == SFT's merged weights
    out = scratch / "ck-outputs" / "sft_then_dpo"
    sft = load_file(str(out / "ck-out-sft" / "epoch_0" / "model.safetensors"))
    dpo = load_file(str(out / "ck-out-dpo" / "epoch_0" / "model.safetensors"))
    adapter = load_file(str(out / "ck-out-dpo" / "epoch_0" / "adapter_model.safetensors"))
    config = json.loads((out / "ck-out-dpo" / "epoch_0" / "adapter_config.json").read_text())
    base = load_file(str(scratch / "models" / "tiny-llama" / "model.safetensors"))
    scale = config["lora_alpha"] / config["r"]
    for key in LORA_TOUCHED:
        prefix = "base_model.model." + key[: -len(".weight")]
        delta = scale * (adapter[prefix + ".lora_B.weight"] @ adapter[prefix + ".lora_A.weight"])
        assert (dpo[key] - delta - sft[key]).abs().max().item() < 1e-5, key
        assert (dpo[key] - sft[key]).abs().max().item() > 1e-6, key  # DPO did train
        assert (sft[key] - base[key]).abs().max().item() > 1e-4, key  # and SFT is not the base model
    assert (dpo["model.embed_tokens.weight"] == sft["model.embed_tokens.weight"]).all()
    # each stage's evaluation: the base model fails the task, SFT learns it, DPO keeps it
    from inspect_ai.log import read_eval_log

    accuracy = {}
    for cell in ("base/eval/answer42", "sft/eval/answer42_epoch0", "dpo/eval/answer42_epoch0"):
        logs = sorted((exp_dir / cell / "logs").glob("*.eval"))
        assert logs, cell
        log = read_eval_log(str(logs[-1]))
        accuracy[cell.split("/")[0]] = log.results.scores[0].metrics["accuracy"].value
    print(f"accuracy: {accuracy}")
    assert accuracy["base"] <= 0.3 < accuracy["sft"]
    assert accuracy["dpo"] > 0.3
    # the comparison table: the stage progression base -> SFT -> DPO with deltas, and the cost figures
    res = _ck("summarize", str(exp_dir), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((exp_dir / "analysis" / "summary.json").read_text())
    table = next(t for t in summary["stages"] if t["metric"] == "match.accuracy")
    rows = {r["stage"]: r for r in table["rows"]}
    assert rows["verify"]["best"] == accuracy["base"] and rows["sft"]["best"] == accuracy["sft"]
    assert rows["sft"]["delta_first"] == pytest.approx(accuracy["sft"] - accuracy["base"])
    assert rows["dpo"]["delta_prev"] == pytest.approx(accuracy["dpo"] - accuracy["sft"])
    assert {r["stage"] for r in summary["cost"]["stages"]} >= {"verify", "sft", "dpo"}
    assert "Cost per stage" in (exp_dir / "analysis" / "summary.md").read_text()

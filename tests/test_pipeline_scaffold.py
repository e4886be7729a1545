"""Multi-stage designs through the scaffolder: base eval -> SFT -> eval -> prefs -> DPO (from SFT) -> eval.

Scaffolds examples/sft_then_dpo (copied to a temp dir, so the generated preference file path is there)
and checks the job graph, the base_run checkpoint, the prefs job,
every job script with `bash -n`, base-model (text_completion) rendering and `base_epoch: best`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cruijff_kit.errors import UserError
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings
from cruijff_kit.tools.torchtune import pick_epoch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sft_then_dpo"


def _copy_example(tmp_path: Path) -> Path:
    dst = tmp_path / "src" / "sft_then_dpo"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("answer42_prefs*", "__pycache__"))
    return dst / "experiment_summary.yaml"


def _scaffold(design: Path, profile: str | None = "tiny"):
    return scaffold(design, profile=profile, settings=load_settings(), quiet=True, log=False)


def _jobs(exp_dir: Path) -> dict:
    return {j["id"]: j for j in json.loads((exp_dir / "jobs.json").read_text())["jobs"]}


def _variant(design: Path, edit) -> Path:
    data = yaml.safe_load(design.read_text())
    edit(data)
    design.write_text(yaml.safe_dump(data, sort_keys=False))
    return design


@pytest.fixture
def scaffolded(scratch, tmp_path):
    design = _copy_example(tmp_path)
    outcome = _scaffold(design)
    return outcome, design


def test_example_validates(scratch, tmp_path, cli):
    design = _copy_example(tmp_path)
    result = cli("validate", str(design), "--profile", "tiny")
    assert result.returncode == 0, result.stderr
    assert "valid (3 runs, 3 eval cells)" in result.stdout


def test_job_graph_kinds_stages_and_dependencies(scaffolded):
    outcome, _ = scaffolded
    jobs = _jobs(outcome.exp.dir)
    assert set(jobs) == {"base.eval.answer42", "sft.train", "sft.eval.answer42_epoch0", "prefs.sft",
                         "dpo.train", "dpo.eval.answer42_epoch0"}
    expect = {  # id: (kind, stage, after)
        "base.eval.answer42": ("eval", "verify", []),
        "sft.train": ("train", "sft", []),
        "sft.eval.answer42_epoch0": ("eval", "sft", ["sft.train"]),
        "prefs.sft": ("prefs", "prefs", ["sft.train"]),
        "dpo.train": ("train", "dpo", ["sft.train", "prefs.sft"]),
        "dpo.eval.answer42_epoch0": ("eval", "dpo", ["dpo.train"]),
    }
    for jid, (kind, stage, after) in expect.items():
        assert (jobs[jid]["kind"], jobs[jid]["stage"], sorted(jobs[jid]["after"])) == (kind, stage, sorted(after)), jid
        assert (outcome.exp.dir / jobs[jid]["script"]).is_file()
    assert jobs["dpo.train"]["meta"]["objective"] == "dpo"
    assert jobs["sft.train"]["meta"]["objective"] == "sft"
    # stage order of the design survives into the resolved copy (the engine orders stages from it)
    copy = yaml.safe_load((outcome.exp.dir / "experiment_summary.yaml").read_text())
    assert [s["name"] for s in copy["stages"]] == ["verify", "sft", "prefs", "dpo"]
    assert copy["stages"][0]["gate"] == {"metric": "answer42.match.accuracy", "op": "<=", "value": 0.3,
                                         "on_fail": "stop"}


def test_dpo_config_starts_from_sft_checkpoint(scaffolded, scratch):
    outcome, design = scaffolded
    settings = load_settings()
    cfg = yaml.safe_load((outcome.exp.dir / "dpo" / "finetune.yaml").read_text())
    sft_out = settings.output_dir("sft_then_dpo", "sft")
    assert cfg["checkpointer"]["checkpoint_dir"] == str(sft_out / "epoch_0")  # sft trains 1 epoch: last = 0
    assert cfg["checkpointer"]["checkpoint_files"] == ["model.safetensors"]
    assert cfg["checkpointer"]["model_type"] == "LLAMA3_2"
    assert cfg["output_dir"] == str(settings.output_dir("sft_then_dpo", "dpo"))
    assert cfg["loss"] == {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": 0.1}
    assert cfg["dataset"]["_component_"] == "cruijff_kit.tools.torchtune.preference.preference_dataset"
    assert cfg["dataset"]["source"] == str(design.parent / "data" / "answer42_prefs.json")
    assert "dataset_val" not in cfg  # the dpo run sets validation_during_training: false
    assert cfg["max_steps_per_epoch"] == 8 and cfg["device"] == "cpu" and cfg["dtype"] == "fp32"
    slurm = (outcome.exp.dir / "dpo" / "finetune.slurm").read_text()
    assert "cruijff_kit/tools/torchtune/custom_recipes/lora_dpo_single_device_val.py" in slurm
    setup = yaml.safe_load((outcome.exp.dir / "dpo" / "setup_finetune.yaml").read_text())
    assert setup["base_checkpoint_dir"] == str(sft_out / "epoch_0")
    # the SFT run reads the instruction data, from the base model
    sft = yaml.safe_load((outcome.exp.dir / "sft" / "finetune.yaml").read_text())
    assert sft["checkpointer"]["checkpoint_dir"] == str(scratch / "models" / "tiny-llama")
    assert sft["dataset"]["source"] == str(design.parent / "data" / "answer42.json")


# the DPO and SFT configs pass `tune validate` in the walk of every bundled design (test_tune_validate_walk.py)


def test_prefs_job_script(scaffolded):
    outcome, design = scaffolded
    settings = load_settings()
    text = (outcome.exp.dir / "prefs" / "prefs.slurm").read_text()
    ckpt = settings.output_dir("sft_then_dpo", "sft") / "epoch_0"
    assert f"ck_checkpoint={ckpt}" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("cruijff-kit prefs generate"))
    args = line.split()
    assert args[args.index("--out") + 1] == str(design.parent / "data" / "answer42_prefs.json")
    assert args[args.index("--dataset") + 1] == str(design.parent / "data" / "answer42.json")
    assert args[args.index("--split") + 1] == "train"
    for flag, value in (("--k", "4"), ("--scorer", "match"), ("--temperature", "2.0"), ("--limit", "16"),
                        ("--dataset-type", "chat_completion"), ("--device", "cpu"), ("--scorer-param", "location=begin")):
        assert args[args.index(flag) + 1] == value, flag
    assert "--use-reference" in args
    assert "prefs.slurm.exitcode" in text
    job = _jobs(outcome.exp.dir)["prefs.sft"]
    assert job["meta"]["out"] == str(design.parent / "data" / "answer42_prefs.json")
    assert job["epoch"] == 0


def test_every_script_passes_bash_n(scaffolded):
    outcome, _ = scaffolded
    scripts = [outcome.exp.dir / j["script"] for j in _jobs(outcome.exp.dir).values()]
    assert len(scripts) == 6
    for script in scripts:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"


def test_base_model_runs_render_text_completion(scratch, tmp_path):
    """A base (non-instruct) registry model, with no dataset_type in the design: raw text everywhere."""
    design = _copy_example(tmp_path)

    def edit(data):
        data.pop("profiles")
        data["controls"].pop("dataset_type")
        data["controls"].update(device="cpu", dtype="fp32")
        data["models"]["base"] = [{"name": "Llama-3.2-1B", "path": "{models_dir}/Llama-3.2-1B", "size_gb": 2.5}]
        for run in data["runs"]:
            run["model"] = "Llama-3.2-1B"

    outcome = _scaffold(_variant(design, edit), profile=None)
    exp_dir = outcome.exp.dir
    jobs = _jobs(exp_dir)
    for run in ("sft", "dpo"):
        cfg = yaml.safe_load((exp_dir / run / "finetune.yaml").read_text())
        assert cfg["dataset"]["dataset_type"] == "text_completion", run
        setup = yaml.safe_load((exp_dir / run / "setup_finetune.yaml").read_text())
        assert setup["dataset_type"] == "text_completion"
        assert jobs[f"{run}.train"]["meta"]["dataset_type"] == "text_completion"
        assert jobs[f"{run}.train"]["meta"]["chat_template"] is False
    for cell in ("base/eval/answer42", "sft/eval/answer42_epoch0", "dpo/eval/answer42_epoch0"):
        assert yaml.safe_load((exp_dir / cell / "eval_config.yaml").read_text())["dataset_type"] == "text_completion"
    assert "--dataset-type text_completion" in (exp_dir / "prefs" / "prefs.slurm").read_text()


def test_explicit_text_completion_on_instruct_model(scaffolded, tmp_path):
    outcome, _ = scaffolded
    jobs = _jobs(outcome.exp.dir)
    assert jobs["sft.train"]["meta"]["dataset_type"] == "chat_completion"
    assert jobs["sft.train"]["meta"]["chat_template"] is True
    design = _copy_example(tmp_path / "v2")

    def edit(data):
        data["controls"]["dataset_type"] = "text_completion"

    exp_dir = _scaffold(_variant(design, edit)).exp.dir
    cfg = yaml.safe_load((exp_dir / "sft" / "finetune.yaml").read_text())
    assert cfg["dataset"]["dataset_type"] == "text_completion"
    assert yaml.safe_load((exp_dir / "sft" / "setup_finetune.yaml").read_text())["dataset_type"] == "text_completion"


def test_base_epoch_best_is_picked_in_the_job(scratch, tmp_path):
    design = _copy_example(tmp_path)

    def edit(data):
        data["controls"]["epochs"] = 3
        data["runs"][2]["base_epoch"] = "best"
        data["data"]["preference"]["generate"]["epoch"] = "best"
        data["evaluation"]["matrix"][1]["epochs"] = [2]
        data["evaluation"]["matrix"][2]["epochs"] = [2]

    outcome = _scaffold(_variant(design, edit))
    settings = load_settings()
    sft_out = settings.output_dir("sft_then_dpo", "sft")
    slurm = (outcome.exp.dir / "dpo" / "finetune.slurm").read_text()
    assert f"python -m cruijff_kit.tools.torchtune.pick_epoch {sft_out} best --dir" in slurm
    assert 'ck_overrides+=("checkpointer.checkpoint_dir=${ck_base_ckpt}")' in slurm
    assert "pick_epoch" not in (outcome.exp.dir / "sft" / "finetune.slurm").read_text()
    prefs = (outcome.exp.dir / "prefs" / "prefs.slurm").read_text()
    assert f"pick_epoch {sft_out} best --dir" in prefs
    jobs = _jobs(outcome.exp.dir)
    assert jobs["dpo.train"]["meta"]["base_epoch"] == "best" and jobs["prefs.sft"]["meta"]["epoch"] == "best"
    for script in ("dpo/finetune.slurm", "prefs/prefs.slurm"):
        assert subprocess.run(["bash", "-n", str(outcome.exp.dir / script)]).returncode == 0
    # what the job runs: the epoch with the lowest epoch-end val_loss, among the saved ones
    for n in range(3):
        (sft_out / f"epoch_{n}").mkdir(parents=True)
    (sft_out / "training_summary.json").write_text(json.dumps({"epochs": [
        {"epoch": 0, "val_loss": 2.0}, {"epoch": 1, "val_loss": 0.7}, {"epoch": 2, "val_loss": 0.9}]}))
    res = subprocess.run([sys.executable, "-m", "cruijff_kit.tools.torchtune.pick_epoch", str(sft_out), "best",
                          "--dir"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == str(sft_out / "epoch_1")


def test_pick_epoch_rules(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no epoch_N"):
        pick_epoch.pick(out, "best")
    for n in (0, 1):
        (out / f"epoch_{n}").mkdir(parents=True)
    assert pick_epoch.pick(out, "best") == 1  # no val losses: the last saved epoch
    assert pick_epoch.pick(out, "last") == 1 and pick_epoch.pick(out, 0) == 0
    (out / "training_summary.json").write_text(json.dumps({"epochs": [
        {"epoch": 0, "val_loss": 0.5}, {"epoch": 1, "val_loss": None}, {"epoch": 2, "val_loss": 0.1}]}))
    assert pick_epoch.pick(out, "best") == 0  # epoch 2 has no checkpoint
    with pytest.raises(ValueError, match="does not exist"):
        pick_epoch.pick(out, 5)
    assert pick_epoch.main([str(out), "sometimes"]) == 1


def test_prefs_from_a_control_run_is_an_error(scratch, tmp_path):
    design = _copy_example(tmp_path)

    def edit(data):
        data["data"]["preference"]["generate"]["from_run"] = "base"

    with pytest.raises(UserError) as info:
        _scaffold(_variant(design, edit))
    assert "data.preference.generate.from_run" in str(info.value)
    assert "saves no checkpoint" in str(info.value)

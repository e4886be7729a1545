"""The manual path: a run directory with only setup_finetune.yaml -> finetune.yaml + finetune.slurm,
through the same typed experiment and torchtune worker as `cruijff-kit scaffold`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest_scaffold import (
    ck,
    BIN, check_script, load_omegaconf, snapshot, tiny_design, tune_validate, write_data, write_design,
)

from cruijff_kit.errors import ValidationFailed
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings
from cruijff_kit.scaffold.setup_finetune import setup_finetune

LEGACY = """\
my_wandb_project: 'predictable_or_not_2025-10-27'
my_wandb_run_name: 'pp_output_only'
dataset_label: 'pp'
dataset_ext: '.json'
train_on_input: 'false'
batch_size: 1
epochs: 10
log_every_n_steps: 1
run_val_every_n_steps: 4
save_adapter_weights_only: 'true'
input_formatting: ''
system_prompt: ''
custom_recipe: 'cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val'
"""


def _run_dir(tmp_path: Path, text: str = LEGACY, name: str = "pp_output_only") -> Path:
    run_dir = tmp_path / "predictable_or_not" / name
    run_dir.mkdir(parents=True)
    (run_dir / "setup_finetune.yaml").write_text(text)
    return run_dir


def _errors(exc) -> dict:
    return {p.path: p for p in exc.value.problems if p.level == "error"}


def test_legacy_file_renders_verbatim(tmp_path, scratch):
    """The setup_finetune.yaml of the brief, as is, with `python -m cruijff_kit.setup_finetune` in its dir."""
    run_dir = _run_dir(tmp_path)
    write_data(scratch / "data" / "pp.json")  # default dataset dir: {scratch}/data
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.setup_finetune"], cwd=run_dir, capture_output=True,
                          text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert "wrote finetune.yaml" in proc.stdout and "wrote finetune.slurm" in proc.stdout
    cfg = load_omegaconf(run_dir / "finetune.yaml")
    out = str(scratch / "ck-outputs" / "predictable_or_not" / "ck-out-pp_output_only")
    assert cfg["output_dir"] == out
    assert cfg["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2_1b"  # default model
    assert cfg["checkpointer"]["checkpoint_dir"] == str(scratch / "models" / "Llama-3.2-1B-Instruct")
    assert cfg["dataset"]["source"] == str(scratch / "data" / "pp.json")
    assert cfg["dataset"]["train_on_input"] is False and cfg["dataset"]["system_prompt"] == ""
    assert cfg["batch_size"] == 1 and cfg["epochs"] == 10 and cfg["log_every_n_steps"] == 1
    assert cfg["run_val_every_n_steps"] == 4 and cfg["dataset_val"]["split"] == "validation"
    assert cfg["save_adapter_weights_only"] is True
    assert cfg["extra_metric_loggers"][0]["project"] == "predictable_or_not_2025-10-27"
    assert cfg["extra_metric_loggers"][0]["name"] == "pp_output_only"
    script = run_dir / "finetune.slurm"
    assert "tune run cruijff_kit/tools/torchtune/custom_recipes/lora_finetune_single_device_val.py" in script.read_text()
    assert f"--config {run_dir}/finetune.yaml" in script.read_text()
    check_script(script)
    assert (run_dir / "setup_finetune.yaml").read_text() == LEGACY  # the input is never rewritten


def test_cli_verb_and_optional_keys(tmp_path, scratch, cli):
    data = write_data(tmp_path / "inputs" / "fmt_a" / "pp.json")
    models = tmp_path / "models"
    text = LEGACY + (f"input_dir_base: '{tmp_path / 'inputs'}'\ninput_formatting: 'fmt_a'\nmodel_name: 'Qwen2.5-3B'\n"
                     f"models_dir: '{models}'\noutput_dir_base: '{tmp_path / 'outs'}'\napply_lora_to_mlp: 'False'\n"
                     "lr_scheduler: 'get_constant_schedule_with_warmup'\ndataset_type: 'text_completion_dataset'\n"
                     "gpus: 2\ntime: '03:00:00'\naccount: 'lab'\nconda_env: 'ck'\nmodules: 'anaconda3, cuda/12'\n")
    run_dir = _run_dir(tmp_path, text.replace("input_formatting: ''\n", "").replace(
        "custom_recipe: 'cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val'\n",
        "custom_recipe: 'lora_finetune_distributed'\nvalidation_during_training: false\n"))
    proc = cli("setup_finetune", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    cfg = load_omegaconf(run_dir / "finetune.yaml")
    assert cfg["dataset"]["source"] == str(data) and cfg["dataset"]["dataset_type"] == "text_completion"
    assert cfg["tokenizer"]["merges_file"] == str(models / "Qwen2.5-3B" / "merges.txt")
    assert cfg["output_dir"] == str(tmp_path / "outs" / "ck-out-pp_output_only")
    assert cfg["model"]["apply_lora_to_mlp"] is False and cfg["lr_scheduler"]["num_cycles"] == 0.0
    assert "dataset_val" not in cfg
    script = (run_dir / "finetune.slurm").read_text()
    assert "tune run --nproc_per_node 2 lora_finetune_distributed" in script
    assert "#SBATCH --time=03:00:00" in script and "#SBATCH --account=lab" in script
    assert "conda activate ck" in script and "module load cuda/12" in script
    check_script(run_dir / "finetune.slurm")


def test_input_formatting_as_prompt_template(tmp_path, scratch):
    run_dir = _run_dir(tmp_path, LEGACY.replace("input_formatting: ''", 'input_formatting: "Q: {input}\\nA:"'))
    setup_finetune(run_dir, settings=load_settings())
    assert load_omegaconf(run_dir / "finetune.yaml")["dataset"]["prompt"] == "Q: {input}\nA:"


@pytest.mark.parametrize("extra, key, text", [
    ("batch_szie: 4\n", "batch_szie", "did you mean batch_size?"),
    ("save_last_epoch_only: 'true'\n", "save_last_epoch_only", "is not supported"),
    ("dataset_ext: '.parquet'\n", "dataset_ext", "is not supported"),
    ("lr: 'fast'\n", "lr", "wrong type"),
    ("my_wandb_run_name: 'a;rm -rf ~'\n", "my_wandb_run_name", "is not a safe name"),
    ("model_name: 'Llama-9B'\n", "model_name", "is not a known model; did you mean Llama-3.2-1B?"),
])
def test_bad_keys_are_one_line_errors(tmp_path, scratch, capsys, extra, key, text):
    lines = [ln for ln in LEGACY.splitlines(keepends=True) if not ln.startswith(extra.split(":")[0] + ":")]
    run_dir = _run_dir(tmp_path, "".join(lines) + extra)
    proc = ck(capsys, "setup_finetune", str(run_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = next((ln for ln in proc.stderr.splitlines() if f"setup_finetune.yaml: {key}: " in ln), "")
    assert text in line, proc.stderr
    assert not (run_dir / "finetune.yaml").exists()


def test_recipe_aliases(tmp_path, scratch):
    old = LEGACY.replace("cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val",
                         "tools.torchtune.custom_recipes.lora_finetune_single_device_val.__main__")
    run_dir = _run_dir(tmp_path, old)
    files, report, _ = setup_finetune(run_dir, settings=load_settings())
    assert report.written == ["finetune.slurm", "finetune.yaml"]
    bad = _run_dir(tmp_path, LEGACY.replace("lora_finetune_single_device_val'", "lora_finetune_single_device'"),
                   name="other")
    with pytest.raises(ValidationFailed) as exc:
        setup_finetune(bad, settings=load_settings())
    assert "is not a recipe cruijff_kit knows" in _errors(exc)["custom_recipe"].message


def test_injection_is_inert(tmp_path, scratch):
    pwned = tmp_path / "pwned"
    system = f"$(touch {pwned}) `touch {pwned}` ${{oc.env:HOME}}"
    run_dir = _run_dir(tmp_path, LEGACY.replace("system_prompt: ''", f"system_prompt: {json.dumps(system)}"))
    setup_finetune(run_dir, settings=load_settings())
    assert load_omegaconf(run_dir / "finetune.yaml")["dataset"]["system_prompt"] == system
    assert "touch" not in (run_dir / "finetune.slurm").read_text()
    check_script(run_dir / "finetune.slurm")
    assert not pwned.exists()


def test_edited_output_kept_unless_forced(tmp_path, scratch, capsys):
    run_dir = _run_dir(tmp_path)
    assert ck(capsys, "setup_finetune", str(run_dir)).returncode == 0
    cfg = run_dir / "finetune.yaml"
    cfg.write_text(cfg.read_text().replace("epochs: 10", "epochs: 11"))
    (run_dir / "setup_finetune.yaml").write_text(LEGACY.replace("batch_size: 1", "batch_size: 2"))
    proc = ck(capsys, "setup_finetune", str(run_dir))
    assert proc.returncode == 0 and "kept finetune.yaml (edited by you; --force overwrites)" in proc.stdout
    assert "epochs: 11" in cfg.read_text()
    proc = ck(capsys, "setup_finetune", str(run_dir), "--force")
    assert proc.returncode == 0 and "epochs: 10" in cfg.read_text() and "batch_size: 2" in cfg.read_text()


def test_dry_run(tmp_path, scratch, capsys):
    run_dir = _run_dir(tmp_path)
    proc = ck(capsys, "setup_finetune", str(run_dir), "--dry-run")
    assert proc.returncode == 0 and f"--- {run_dir}/finetune.yaml" in proc.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == ["setup_finetune.yaml"]


def test_scaffolded_setup_file_round_trips(tmp_path, scratch):
    """setup_finetune in a scaffolded run dir re-renders byte-identical files; an edit there is honoured,
    and a later re-scaffold keeps the hand-rendered file (it differs from the design's)."""
    runs = [{"name": "tiny_a", "type": "fine-tuned", "model": "tiny-llama"},
            {"name": "tiny_b", "type": "fine-tuned", "model": "tiny-llama", "base_run": "tiny_a",
             "parameters": {"dataset_type": "text_completion", "lora_rank": 2}}]
    design = tiny_design(tmp_path, runs, epochs=2, lr_scheduler="constant", system_prompt="")
    design["models"]["base"][0]["name"] = "small"  # a label: the registry key differs
    design["models"]["base"][0]["registry"] = "tiny-llama"
    for run in design["runs"]:
        run["model"] = "small"
    path = write_design(tmp_path, design)
    o = scaffold(path, settings=load_settings(), quiet=True)
    before = snapshot(o.exp.dir)
    for run in ("tiny_a", "tiny_b"):
        _, report, _ = setup_finetune(o.exp.dir / run, settings=load_settings())
        assert report.written == [] and sorted(report.unchanged) == ["finetune.slurm", "finetune.yaml"]
    after = {k: v for k, v in snapshot(o.exp.dir).items() if not k.endswith(".ck/manifest.json")}
    assert after == before  # same bytes, same mtimes (each run dir got its own manifest)
    setup = o.exp.dir / "tiny_b" / "setup_finetune.yaml"
    assert "base_checkpoint_dir:" in setup.read_text() and "model_registry: \"tiny-llama\"" in setup.read_text()
    setup.write_text(setup.read_text().replace("lora_rank: 2", "lora_rank: 6"))
    _, report, _ = setup_finetune(o.exp.dir / "tiny_b", settings=load_settings())
    assert report.written == ["finetune.yaml"]  # scaffold's file was ours, not a user edit
    assert load_omegaconf(o.exp.dir / "tiny_b" / "finetune.yaml")["model"]["lora_rank"] == 6
    again = scaffold(path, settings=load_settings(), quiet=True)
    assert sorted(again.report.preserved) == ["tiny_b/finetune.yaml", "tiny_b/setup_finetune.yaml"]


@pytest.mark.slow
def test_manual_path_trains_the_tiny_model(tmp_path, scratch, capsys):
    """End to end with real torchtune: the rendered finetune.slurm trains the tiny model for 2 steps."""
    made = ck(capsys, "models", "make-tiny")  # default: {models_dir}/tiny-llama
    assert made.returncode == 0 and made.stdout.strip() == str(scratch / "models" / "tiny-llama")
    data = write_data(tmp_path / "data" / "numbers.json", n_train=8, n_val=4)
    text = (f"my_wandb_run_name: 'tiny_manual'\nmodel_name: 'tiny-llama'\ndataset_path: '{data}'\n"
            "device: cpu\ndtype: fp32\nbatch_size: 4\nepochs: 1\nmax_steps_per_epoch: 2\nmax_seq_len: 64\n"
            "run_val_every_n_steps: 1\nlr: 0.01\nsave_adapter_weights_only: 'false'\n")
    run_dir = _run_dir(tmp_path, text, name="tiny_manual")
    setup_finetune(run_dir, settings=load_settings())
    tune_validate(run_dir / "finetune.yaml")
    env = {**os.environ, "CK_JOB_ID": "t1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(run_dir / "finetune.slurm")], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (run_dir / "finetune.slurm.exitcode").read_text().strip() == "0"
    out = scratch / "ck-outputs" / "predictable_or_not" / "ck-out-tiny_manual"
    assert (out / "epoch_0" / "model.safetensors").exists() and (out / "epoch_0" / "adapter_config.json").exists()
    logs = "".join(p.read_text() for p in (out / "logs").glob("*.txt"))
    assert "Step 1 | loss:" in logs and "val_loss:" in logs
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 2 and summary["complete"] is True
    assert yaml.safe_load((run_dir / "finetune.yaml").read_text())["max_steps_per_epoch"] == 2
    assert BIN.exists()

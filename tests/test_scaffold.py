"""`cruijff-kit scaffold`: the torchtune worker, the model registry, the no-clobber writer, goldens.

Real files, real parsers (PyYAML, OmegaConf), real bash -n / shellcheck; real `tune validate` in the
slow tests. Goldens: tests/golden/scaffold/ (regenerate with CK_UPDATE_GOLDEN=1).
"""
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
    BIN, GOLDEN, REPO, SANITY, check_script, load_omegaconf, small_design, snapshot, tiny_design, write_design,
)

from cruijff_kit import logbook
from cruijff_kit.errors import UserError, ValidationFailed
from cruijff_kit.experiment.jobs import read_jobs
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings

TT_FILES = ("setup_finetune.yaml", "finetune.yaml", "finetune.slurm")


def _scaffold(design_path, **kw):
    return scaffold(design_path, settings=load_settings(), quiet=True, **kw)


def _lines(exc) -> str:
    return "\n".join(exc.value.lines())


# -- goldens ---------------------------------------------------------------------------------------
def _normalise(text: str, tmp: Path) -> str:
    return (text.replace(str(tmp), "<tmp>").replace(sys.prefix, "<venv>").replace(str(REPO), "<repo>"))


def test_golden_small_design(tmp_path, monkeypatch):
    """2 fine-tuned runs (instruct + base model) + 1 control, rendered with a fixed fake scratch path."""
    monkeypatch.setenv("CK_SCRATCH", "/ck-scratch")
    monkeypatch.setenv("CK_SETTINGS", str(tmp_path / "claude.local.md"))
    (tmp_path / "claude.local.md").write_text("# golden settings\n- Venv: /opt/ck-venv\n")
    path = write_design(tmp_path, small_design(tmp_path))
    o = _scaffold(path, dry_run=True)  # writes nothing: /ck-scratch does not exist
    assert not (tmp_path / "exp").exists()
    rendered = {rel: text for rel, (text, _) in o.files.files.items()
                if rel.split("/")[-1] in TT_FILES or rel == "experiment_summary.yaml"}
    train_jobs = [j for j in json.loads(o.files.files["jobs.json"][0])["jobs"] if j["kind"] == "train"]
    rendered["jobs.train.json"] = json.dumps(train_jobs, indent=2, sort_keys=True) + "\n"
    assert sorted(rendered) == sorted(
        ["experiment_summary.yaml", "jobs.train.json"] + [f"{r}/{f}" for r in ("llama_r4", "qwen_base_r8")
                                                          for f in TT_FILES])
    if os.environ.get("CK_UPDATE_GOLDEN"):
        for rel, text in rendered.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(_normalise(text, tmp_path))
    for rel, text in rendered.items():
        golden = GOLDEN / rel
        assert golden.exists(), f"missing golden {golden} (CK_UPDATE_GOLDEN=1 writes it)"
        assert _normalise(text, tmp_path) == golden.read_text(), f"{rel} differs from its golden"
    # the control run gets no torchtune files; the base model trains on text_completion
    assert not any(rel.startswith("llama_base/") and rel.endswith(TT_FILES) for rel in o.files.files)
    qwen = yaml.safe_load(o.files.files["qwen_base_r8/finetune.yaml"][0])
    assert qwen["dataset"]["dataset_type"] == "text_completion"
    assert qwen["tokenizer"]["merges_file"] == "/ck-scratch/models/Qwen2.5-3B/merges.txt"


# -- everything reaches finetune.yaml --------------------------------------------------------------
def test_controls_reach_finetune_yaml(tmp_path, scratch):
    design = small_design(tmp_path)
    design["controls"].update({"gradient_accumulation_steps": 3, "weight_decay": 0.05, "lora_dropout": 0.1,
                               "lora_attn_modules": ["q_proj", "k_proj"], "apply_lora_to_mlp": False,
                               "packed": True, "batch_size_val": 5, "max_steps_per_epoch": 7,
                               "save_adapter_weights_only": "true", "log_every_n_steps": 3, "lr": 1e-05,
                               "dtype": "fp32", "train_on_input": "True"})
    o = _scaffold(write_design(tmp_path, design))
    run_dir = o.exp.dir / "llama_r4"
    cfg = load_omegaconf(run_dir / "finetune.yaml")
    out = str(scratch / "ck-outputs" / "golden_small" / "ck-out-llama_r4")
    assert cfg["output_dir"] == out and cfg["checkpointer"]["output_dir"] == out
    assert cfg["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2_1b"
    assert cfg["model"]["lora_rank"] == 4 and cfg["model"]["lora_alpha"] == 8  # 2 x rank
    assert cfg["model"]["lora_dropout"] == 0.1 and cfg["model"]["lora_attn_modules"] == ["q_proj", "k_proj"]
    assert cfg["model"]["apply_lora_to_mlp"] is False
    assert cfg["tokenizer"]["path"] == str(scratch / "models/Llama-3.2-1B-Instruct/original/tokenizer.model")
    assert cfg["tokenizer"]["max_seq_len"] == 128
    assert cfg["checkpointer"]["checkpoint_files"] == ["model.safetensors"]
    assert cfg["checkpointer"]["model_type"] == "LLAMA3_2"
    ds = cfg["dataset"]
    assert ds["_component_"] == "cruijff_kit.tools.torchtune.datasets.input_output_dataset"
    assert ds["source"] == str(tmp_path / "data" / "numbers.json") and ds["split"] == "train"
    assert ds["prompt"] == "Numbers: {input}\nNext:" and ds["system_prompt"] == "Continue the sequence."
    assert ds["dataset_type"] == "chat_completion" and ds["train_on_input"] is True and ds["packed"] is True
    assert cfg["dataset_val"]["split"] == "validation" and cfg["dataset_val"]["packed"] is False
    assert cfg["run_val_every_n_steps"] == 2 and cfg["run_val_at_epoch_end"] is True
    assert cfg["batch_size"] == 2 and cfg["batch_size_val"] == 5
    assert cfg["epochs"] == 2 and cfg["max_steps_per_epoch"] == 7 and cfg["gradient_accumulation_steps"] == 3
    assert cfg["optimizer"] == {"_component_": "torch.optim.AdamW", "fused": True, "weight_decay": 0.05,
                                "lr": 1e-05}
    assert cfg["lr_scheduler"] == {"_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                                   "num_warmup_steps": 1, "num_cycles": 0.0}  # constant after warmup
    assert cfg["seed"] == 7 and cfg["log_every_n_steps"] == 3 and cfg["save_adapter_weights_only"] is True
    assert cfg["device"] == "cuda" and cfg["dtype"] == "fp32"
    assert cfg["metric_logger"] == {"_component_": "torchtune.training.metric_logging.DiskLogger",
                                    "log_dir": out + "/logs"}
    assert cfg["extra_metric_loggers"] == [{"_component_": "torchtune.training.metric_logging.WandBLogger",
                                            "log_dir": out + "/logs", "project": "golden", "entity": None,
                                            "group": "golden_small", "name": "llama_r4"}]
    # the legacy flat file holds the same resolved values, parsed back as real types
    setup = yaml.safe_load((run_dir / "setup_finetune.yaml").read_text())
    assert setup["lr"] == 1e-05 and isinstance(setup["lr"], float)
    assert setup["my_wandb_run_name"] == "llama_r4" and setup["output_dir_base"] == str(Path(out).parent)
    assert setup["lora_alpha"] == 8 and setup["gradient_accumulation_steps"] == 3 and setup["packed"] is True
    assert setup["custom_recipe"] == "cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val"
    # the job script runs our recipe on that config, in the run dir, and logs to the output dir
    script = (run_dir / "finetune.slurm").read_text()
    assert ("tune run cruijff_kit/tools/torchtune/custom_recipes/lora_finetune_single_device_val.py "
            f"--config {run_dir}/finetune.yaml") in script and script.endswith("\nexit $?\n")
    assert f"#SBATCH --output={out}/slurm-%j.out" in script and "#SBATCH --gres=gpu:1" in script
    assert f"cd {run_dir} || exit 1" in script
    assert f"ck_exit_file={run_dir}/finetune.slurm.exitcode" in script
    assert os.access(run_dir / "finetune.slurm", os.X_OK)
    assert Path(out).is_dir()  # SLURM opens --output before the job starts


def test_validation_off_and_cosine(tmp_path, scratch):
    design = small_design(tmp_path)
    design["controls"].update({"validation_during_training": False, "lr_scheduler": "cosine",
                               "lora_alpha": 3, "device": "cpu"})
    o = _scaffold(write_design(tmp_path, design))
    cfg = load_omegaconf(o.exp.dir / "llama_r4" / "finetune.yaml")
    assert "dataset_val" not in cfg and cfg["run_val_every_n_steps"] == 0 and cfg["run_val_at_epoch_end"] is False
    assert "num_cycles" not in cfg["lr_scheduler"] and cfg["model"]["lora_alpha"] == 3
    assert cfg["optimizer"]["fused"] is False and cfg["log_peak_memory_stats"] is False
    assert "--gres" not in (o.exp.dir / "llama_r4" / "finetune.slurm").read_text()  # cpu: no GPU requested


def test_tiny_model_and_base_run(tmp_path, scratch):
    runs = [{"name": "tiny_a", "type": "fine-tuned", "model": "tiny-llama"},
            {"name": "tiny_b", "type": "fine-tuned", "model": "tiny-llama", "base_run": "tiny_a", "base_epoch": 0,
             "parameters": {"lr": 0.001}},
            {"name": "tiny_c", "type": "fine-tuned", "model": "tiny-llama", "base_run": "tiny_a"}]
    design = tiny_design(tmp_path, runs, epochs=2)
    o = _scaffold(write_design(tmp_path, design))
    cfg = load_omegaconf(o.exp.dir / "tiny_a" / "finetune.yaml")
    assert cfg["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2"
    assert cfg["model"]["embed_dim"] == 64 and cfg["model"]["vocab_size"] == 128256
    assert cfg["model"]["norm_eps"] == 1e-05 and isinstance(cfg["model"]["norm_eps"], float)
    out_a = scratch / "ck-outputs" / "golden_small" / "ck-out-tiny_a"
    b = load_omegaconf(o.exp.dir / "tiny_b" / "finetune.yaml")
    assert b["checkpointer"]["checkpoint_dir"] == str(out_a / "epoch_0")
    assert b["tokenizer"]["path"] == str(scratch / "models/tiny-llama/original/tokenizer.model")
    c = load_omegaconf(o.exp.dir / "tiny_c" / "finetune.yaml")
    assert c["checkpointer"]["checkpoint_dir"] == str(out_a / "epoch_1")  # last of 2 epochs
    jobs = {j.id: j for j in read_jobs(o.exp.dir)}
    assert jobs["tiny_b.train"].after == ["tiny_a.train"] and jobs["tiny_a.train"].after == []
    assert jobs["tiny_a.eval.next_value_epoch0"].after == ["tiny_a.train"]
    assert jobs["tiny_a.train"].script == "tiny_a/finetune.slurm"
    assert jobs["tiny_a.train"].log == str(out_a / "slurm-%j.out")
    assert jobs["tiny_a.train"].output_dir == str(out_a) and jobs["tiny_a.train"].kind == "train"


@pytest.mark.parametrize("change, where, message", [
    ({"controls": {"device": "cuda"}}, "controls.device", "device: cuda but the job requests no GPU"),
    ({"controls": {"dataset_type": "text_completion", "system_prompt": "Be terse."}}, "controls.system_prompt",
     "text_completion has no system turn"),
])
def test_controls_that_cannot_be_honoured_are_errors(tmp_path, scratch, change, where, message):
    runs = change.get("runs")
    design = tiny_design(tmp_path, runs, **change.get("controls", {}))
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(write_design(tmp_path, design))
    assert any(p.path == where and message in p.message for p in exc.value.problems), _lines(exc)
    assert not (tmp_path / "exp").exists()  # nothing written when a check fails


def test_all_problems_reported_at_once(tmp_path, scratch):
    design = tiny_design(tmp_path, [{"name": "x", "type": "fine-tuned", "model": "tiny-llama",
                                     "parameters": {"device": "cuda"}},
                                    {"name": "y", "type": "fine-tuned", "model": "tiny-llama",
                                     "parameters": {"dataset_type": "text_completion", "system_prompt": "s"}}])
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(write_design(tmp_path, design))
    paths = {p.path for p in exc.value.problems if p.level == "error"}
    assert {"runs[0].parameters.device", "runs[1].parameters.system_prompt"} <= paths


def test_multi_gpu_model_uses_distributed_recipe(tmp_path, scratch):
    design = small_design(tmp_path)
    design["models"]["base"].append({"name": "Llama-3.3-70B-Instruct", "path": "{models_dir}/Llama-3.3-70B-Instruct"})
    design["runs"].append({"name": "big", "type": "fine-tuned", "model": "Llama-3.3-70B-Instruct"})
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(write_design(tmp_path, design))
    assert any(p.path == "controls.validation_during_training" and "lora_finetune_distributed" in p.message
               for p in exc.value.problems)
    design["runs"][-1]["parameters"] = {"validation_during_training": False}
    o = _scaffold(write_design(tmp_path, design))
    script = (o.exp.dir / "big" / "finetune.slurm").read_text()
    assert "tune run --nproc_per_node 4 lora_finetune_distributed --config" in script
    assert "#SBATCH --gres=gpu:4" in script
    cfg = yaml.safe_load((o.exp.dir / "big" / "finetune.yaml").read_text())
    assert cfg["checkpointer"]["checkpoint_files"] == {"filename_format": "model-{}-of-{}.safetensors",
                                                       "max_filename": "00030"}
    assert cfg["enable_activation_checkpointing"] is True and "extra_metric_loggers" not in cfg
    check_script(o.exp.dir / "big" / "finetune.slurm")


def test_dpo_run(tmp_path, scratch):
    design = tiny_design(tmp_path, [{"name": "sft", "type": "fine-tuned", "model": "tiny-llama"},
                                    {"name": "pref", "type": "dpo", "model": "tiny-llama", "base_run": "sft",
                                     "parameters": {"dpo_beta": 0.2}}])
    prefs = tmp_path / "data" / "prefs.json"
    prefs.write_text(json.dumps({"train": [{"prompt": "1,2", "chosen": "3", "rejected": "9"}] * 4,
                                 "validation": [{"prompt": "2,3", "chosen": "4", "rejected": "7"}] * 2}))
    design["data"]["preference"] = {"path": "data/prefs.json"}
    o = _scaffold(write_design(tmp_path, design))
    cfg = load_omegaconf(o.exp.dir / "pref" / "finetune.yaml")
    assert cfg["dataset"]["_component_"] == "cruijff_kit.tools.torchtune.preference.preference_dataset"
    assert cfg["dataset"]["source"] == str(prefs) and "train_on_input" not in cfg["dataset"]
    assert cfg["loss"] == {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": 0.2}
    assert "lora_dpo_single_device_val.py" in (o.exp.dir / "pref" / "finetune.slurm").read_text()
    assert yaml.safe_load((o.exp.dir / "pref" / "setup_finetune.yaml").read_text())["objective"] == "dpo"


# -- the model registry ----------------------------------------------------------------------------
def test_registry_lookup_and_component_block(tmp_path, scratch):
    from cruijff_kit.models import registry

    for key in ("Llama-3.2-1B", "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct", "Llama-3.1-8B-Instruct",
                "Llama-3.3-70B-Instruct", "Qwen2.5-3B", "Qwen2.5-3B-Instruct", "tiny-llama"):
        assert registry.get(key) is not None
    assert registry.get("Qwen2.5-3B").tokenizer_files == {"path": "vocab.json", "merges_file": "merges.txt"}
    assert registry.get("Qwen2.5-3B").instruct is False and registry.get("Llama-3.3-70B-Instruct").gpus == 4
    with pytest.raises(UserError) as exc:
        registry.lookup(name="Llama-3.2-1B-Instrct")
    assert "did you mean Llama-3.2-1B-Instruct?" in exc.value.lines()[0] and "known:" in exc.value.lines()[0]
    # an unknown model with an explicit component block renders
    design = small_design(tmp_path)
    design["models"]["base"].append({"name": "my-qwen", "path": "/models/q7", "component": {
        "model": {"_component_": "torchtune.models.qwen2_5.lora_qwen2_5_7b_instruct"},
        "tokenizer": {"_component_": "torchtune.models.qwen2_5.qwen2_5_tokenizer", "path": "vocab.json",
                      "merges_file": "merges.txt"},
        "checkpoint_files": ["model-00001-of-00004.safetensors"], "model_type": "QWEN2"}})
    design["runs"].append({"name": "custom", "type": "fine-tuned", "model": "my-qwen"})
    o = _scaffold(write_design(tmp_path, design))
    cfg = yaml.safe_load((o.exp.dir / "custom" / "finetune.yaml").read_text())
    assert cfg["model"]["_component_"] == "torchtune.models.qwen2_5.lora_qwen2_5_7b_instruct"
    assert cfg["tokenizer"]["merges_file"] == "/models/q7/merges.txt" and cfg["checkpointer"]["model_type"] == "QWEN2"
    # an unknown model without one is a one-line error naming the fix
    design["models"]["base"][-1].pop("component")
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(write_design(tmp_path, design))
    assert any("'my-qwen' is not a known model" in p.message and "models.base[].component" in p.hint
               for p in exc.value.problems)


def test_models_cli(capsys, scratch):
    proc = ck(capsys, "models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["Llama-3.1-8B-Instruct"]["component"] == "torchtune.models.llama3_1.lora_llama3_1_8b"
    assert data["Llama-3.3-70B-Instruct"]["recipe"] == "distributed"
    proc = ck(capsys, "models", "list")
    assert proc.returncode == 0 and "tiny-llama" in proc.stdout and "Qwen2.5-3B-Instruct" in proc.stdout


# -- safety ----------------------------------------------------------------------------------------
def test_injection_in_names_is_rejected(tmp_path, scratch, cli):
    design = small_design(tmp_path)
    design["runs"][0]["name"] = "a;rm -rf ~"
    design["evaluation"]["matrix"][0]["run"] = "a;rm -rf ~"
    proc = cli("scaffold", str(write_design(tmp_path, design)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "runs[0].name: 'a;rm -rf ~' is not a safe name" in proc.stderr
    assert not (tmp_path / "exp").exists()


def test_unsafe_paths_are_rejected(tmp_path, scratch):
    design = small_design(tmp_path)
    design["models"]["base"][0]["path"] = "/models/$(touch pwned)"
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(write_design(tmp_path, design))
    assert any(p.path == "models.base[0].path" and "cannot take safely" in p.message for p in exc.value.problems)


def test_injection_in_prompts_is_inert(tmp_path, scratch):
    pwned = tmp_path / "pwned"
    prompt = f"$(touch {pwned}) `touch {pwned}` ${{{{oc.env:HOME}}}} '\"\\ {{input}}"  # {{ }}: literal braces
    design = tiny_design(tmp_path, system_prompt=f"; touch {pwned} #\n$(id)", prompt=prompt)
    o = _scaffold(write_design(tmp_path, design))
    run_dir = o.exp.dir / "tiny_a"
    cfg = load_omegaconf(run_dir / "finetune.yaml")  # as torchtune reads it: literal, nothing resolved
    assert cfg["dataset"]["prompt"] == prompt and cfg["dataset_val"]["prompt"] == prompt
    assert cfg["dataset"]["system_prompt"] == f"; touch {pwned} #\n$(id)"
    setup = yaml.safe_load((run_dir / "setup_finetune.yaml").read_text())
    assert setup["prompt"] == prompt
    script = run_dir / "finetune.slurm"
    assert "touch" not in script.read_text()  # the prompt never enters the shell script
    check_script(script)
    assert not pwned.exists()


def test_slurm_scripts_pass_bash_n_and_shellcheck(tmp_path, scratch, monkeypatch):
    settings = tmp_path / "claude.local.md"
    settings.write_text("- SLURM account: my-acct\n- SLURM partition: gpu\n- Constraint: gpu80\n"
                        "- Conda env: ck env\n- Module loads: anaconda3/2024.6, cudatoolkit/12.4\n")
    monkeypatch.setenv("CK_SETTINGS", str(settings))
    o = _scaffold(write_design(tmp_path, small_design(tmp_path)))
    scripts = sorted(o.exp.dir.glob("*/finetune.slurm"))
    assert len(scripts) == 2
    for script in scripts:
        check_script(script)
        text = script.read_text()
        assert "#SBATCH --account=my-acct" in text and "#SBATCH --constraint=gpu80" in text
        assert "conda activate 'ck env'" in text and "module load anaconda3/2024.6" in text
        # a failed activation stops the job (the job never runs on whatever python the node has)
        assert "exit 1" in text.split("conda activate 'ck env'", 1)[1].split("\nset -u", 1)[0]


# -- the no-clobber writer -------------------------------------------------------------------------
def test_rescaffold_is_byte_identical(tmp_path, scratch):
    path = write_design(tmp_path, small_design(tmp_path))
    o = _scaffold(path)
    assert o.report.written and not o.report.preserved
    before = snapshot(o.exp.dir)
    again = _scaffold(path)
    assert again.report.written == [] and again.report.preserved == []
    assert snapshot(o.exp.dir) == before  # same bytes, same mtimes
    # from the resolved copy in the experiment dir: also a no-op
    copy = _scaffold(o.exp.dir)
    assert copy.report.written == [] and copy.exp.source == o.exp.dir / "experiment_summary.yaml"
    assert snapshot(o.exp.dir) == before
    # the copy is self-contained: no profiles, absolute paths, the dir fixed
    data = yaml.safe_load((o.exp.dir / "experiment_summary.yaml").read_text())
    assert "profiles" not in data and data["experiment"]["dir"] == str(o.exp.dir)
    assert data["data"]["training"]["path"] == str(tmp_path / "data" / "numbers.json")
    assert data["models"]["base"][0]["path"] == str(scratch / "models" / "Llama-3.2-1B-Instruct")
    assert data["evaluation"]["tasks"][0]["script"] == str(tmp_path / "numbers_task.py")


def test_edited_files_preserved_unless_forced(tmp_path, scratch, capsys):
    path = write_design(tmp_path, small_design(tmp_path))
    o = _scaffold(path)
    edited = o.exp.dir / "llama_r4" / "finetune.yaml"
    edited.write_text(edited.read_text().replace("batch_size: 2", "batch_size: 3"))
    design = small_design(tmp_path)
    design["controls"]["epochs"] = 3  # a design change touches every run
    write_design(tmp_path, design)
    proc = ck(capsys, "scaffold", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "preserved, edited by you (--force overwrites) (1):" in proc.stdout
    assert "llama_r4/finetune.yaml" in proc.stdout
    assert "batch_size: 3" in edited.read_text() and "epochs: 2" in edited.read_text()
    assert "epochs: 3" in (o.exp.dir / "qwen_base_r8" / "finetune.yaml").read_text()
    proc = ck(capsys, "scaffold", str(path), "--force")
    assert proc.returncode == 0 and "0 preserved" in proc.stdout
    assert "batch_size: 2" in edited.read_text() and "epochs: 3" in edited.read_text()


def test_dry_run_writes_nothing(tmp_path, scratch, capsys):
    path = write_design(tmp_path, small_design(tmp_path))
    proc = ck(capsys, "scaffold", str(path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "exp").exists() and not (scratch / "ck-outputs").exists()
    assert "\n  llama_r4/\n" in proc.stdout and "\n    finetune.yaml\n" in proc.stdout and "nothing written" in proc.stdout


def test_only(tmp_path, scratch):
    path = write_design(tmp_path, small_design(tmp_path))
    o = _scaffold(path, only=["qwen_base_r8"])
    assert (o.exp.dir / "qwen_base_r8" / "finetune.yaml").exists()
    assert not (o.exp.dir / "llama_r4").exists() and not (o.exp.dir / "llama_base").exists()
    assert {j.run for j in read_jobs(o.exp.dir)} == {"qwen_base_r8"}
    o = _scaffold(path, only=["llama_r4", "llama_base"])
    assert {j.run for j in read_jobs(o.exp.dir)} == {"qwen_base_r8", "llama_r4", "llama_base"}
    with pytest.raises(UserError) as exc:
        _scaffold(path, only=["lama_r4"])
    assert exc.value.lines()[0].startswith("--only: 'lama_r4' is not a run of golden_small; did you mean llama_r4?")


def test_only_warns_about_unscaffolded_dependencies(tmp_path, scratch):
    runs = [{"name": "tiny_a", "type": "fine-tuned", "model": "tiny-llama"},
            {"name": "tiny_b", "type": "fine-tuned", "model": "tiny-llama", "base_run": "tiny_a"}]
    path = write_design(tmp_path, tiny_design(tmp_path, runs))
    o = _scaffold(path, only=["tiny_b"])
    assert [w.line() for w in o.warnings if w.where == "--only"] == [
        "warning: --only: tiny_b: job tiny_b.train waits for tiny_a.train, which is not scaffolded; "
        "add tiny_a to --only"]
    _scaffold(path)
    design = tiny_design(tmp_path, runs[:1])  # tiny_b leaves the design
    o = _scaffold(write_design(tmp_path, design), only=["tiny_a"])
    assert {j.run for j in read_jobs(o.exp.dir)} == {"tiny_a"} and o.stale == ["tiny_b"]


def test_log_and_summary(tmp_path, scratch, capsys):
    path = write_design(tmp_path, small_design(tmp_path))
    proc = ck(capsys, "scaffold", str(path))
    assert proc.returncode == 0, proc.stderr
    exp_dir = tmp_path / "exp"
    assert f"experiment dir: {exp_dir}" in proc.stdout
    assert f"Next: cruijff-kit run {exp_dir} --executor local" in proc.stdout
    assert "3 runs (2 fine-tuned, 1 control/eval-only), 4 eval cells" in proc.stdout
    entries = logbook.read(exp_dir / "scaffold-experiment.log")
    actions = [e.action for e in entries]
    assert actions[0] == "SCAFFOLD" and "SCAFFOLD_TORCHTUNE" in actions
    tt = entries[actions.index("SCAFFOLD_TORCHTUNE")]
    assert tt.description == "torchtune rendered 2 jobs" and tt.result.startswith("6 written")


def test_missing_evaluation_worker_is_skipped(tmp_path, scratch, monkeypatch):
    from cruijff_kit import workers

    monkeypatch.setitem(workers.EVALUATION, "inspect-ai", "cruijff_kit.workers.not_installed_yet")
    o = _scaffold(write_design(tmp_path, small_design(tmp_path)))
    assert o.skipped == [("evaluation", "inspect-ai", "worker cruijff_kit.workers.not_installed_yet is not installed")]
    assert [j.kind for j in read_jobs(o.exp.dir)] == ["train", "train"]


def test_sanity_check_tiny_scaffolds_8_runs(tmp_path, scratch, cli):
    proc = cli("scaffold", str(SANITY), "--profile", "tiny")
    assert proc.returncode == 0, proc.stderr
    exp_dir = scratch / "ck-sanity-checks" / "predictable_or_not"
    runs = sorted(p.name for p in exp_dir.iterdir() if p.is_dir() and (p / "finetune.yaml").exists())
    assert len(runs) == 8 and "pp_output_only" in runs and "uu_input_and_output" in runs
    cfg = load_omegaconf(exp_dir / "pp_output_only" / "finetune.yaml")
    assert cfg["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2"
    assert cfg["device"] == "cpu" and cfg["max_steps_per_epoch"] == 25 and cfg["run_val_every_n_steps"] == 10
    assert cfg["extra_metric_loggers"][0]["project"] == "predictable_or_not_2025-10-27"
    jobs = read_jobs(exp_dir)
    assert len([j for j in jobs if j.kind == "train"]) == 8


# -- real torchtune --------------------------------------------------------------------------------
# every bundled design's configs through `tune validate`: test_tune_validate_walk.py
@pytest.mark.slow
def test_every_registry_model_config_validates(tmp_path, scratch):
    """One run per registry model; every finetune.yaml passes torchtune's config validation (the check
    `tune validate` runs: components import, kwargs bind), in one process to keep it quick."""
    from cruijff_kit.models import registry

    design = small_design(tmp_path)
    design["models"]["base"] = [{"name": k, "path": f"{{models_dir}}/{k}"} for k in registry.known()]
    design["controls"].update({"device": "cpu", "validation_during_training": False})
    design["runs"] = [{"name": k.replace(".", "_"), "type": "fine-tuned", "model": k,
                       "parameters": {"system_prompt": ""}} for k in registry.known()]
    design["evaluation"]["matrix"] = [{"run": r["name"], "tasks": ["next_value"], "epochs": [0]}
                                      for r in design["runs"]]
    o = _scaffold(write_design(tmp_path, design))
    configs = sorted(str(p) for p in o.exp.dir.glob("*/finetune.yaml"))
    assert len(configs) == len(registry.known())
    code = ("import sys\nfrom omegaconf import OmegaConf\nfrom torchtune import config\n"
            "for f in sys.argv[1:]:\n    config.validate(OmegaConf.load(f))\n    print('ok', f)\n")
    proc = subprocess.run([str(BIN / "python"), "-c", code, *configs], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok ") == len(configs)

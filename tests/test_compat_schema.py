"""Item 4 of [compat]: upstream's schema keys do something or are refused with a migration hint.
runs[].compute and evaluation.compute size the jobs; evaluation.system_prompt, runs[].parameters.checkpoint_path
and evaluation.max_connections are honoured (assistant_prefix: tests/test_assistant_prefix.py); "did you mean"
hints no longer send project_dir to objective."""
from __future__ import annotations

import pytest
import yaml
from conftest_scaffold import ck, small_design, write_design

from cruijff_kit.errors import ValidationFailed, closest
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings


def _scaffold(tmp_path, design):
    path = write_design(tmp_path, design)
    scaffold(path, settings=load_settings(), quiet=True)
    return tmp_path / "exp"


def _sbatch(script) -> dict:
    return dict(line[len("#SBATCH --"):].split("=", 1) for line in script.read_text().splitlines()
                if line.startswith("#SBATCH --") and "=" in line)


def test_run_compute_sizes_the_training_job(tmp_path, scratch):
    design = small_design(tmp_path)
    design["runs"][0]["compute"] = {"time": "0:45:00", "gpus": 2, "mem": "40GB", "cpus": 6}
    design["controls"]["validation_during_training"] = False  # 2 GPUs: the distributed recipe
    exp = _scaffold(tmp_path, design)
    sb = _sbatch(exp / "llama_r4" / "finetune.slurm")
    assert sb["time"] == "0:45:00" and sb["gres"] == "gpu:2" and sb["mem"] == "40G" and sb["cpus-per-task"] == "6"
    other = _sbatch(exp / "qwen_base_r8" / "finetune.slurm")
    assert other["time"] != "0:45:00" and other.get("gres") == "gpu:1"
    # the training run's compute does not size its eval jobs
    cell = _sbatch(next((exp / "llama_r4" / "eval").rglob("inspect.slurm")))
    assert cell["time"] != "0:45:00" and cell.get("gres") == "gpu:1"


def test_evaluation_compute_and_control_run_compute_size_eval_jobs(tmp_path, scratch):
    design = small_design(tmp_path)
    design["evaluation"]["compute"] = {"time": "0:20:00", "mem": "16G"}
    design["runs"][2]["compute"] = {"time": "0:10:00"}  # the control run: it only evaluates
    exp = _scaffold(tmp_path, design)
    trained = _sbatch(next((exp / "llama_r4" / "eval").rglob("inspect.slurm")))
    control = _sbatch(next((exp / "llama_base" / "eval").rglob("inspect.slurm")))
    assert trained["time"] == "0:20:00" and trained["mem"] == "16G"
    assert control["time"] == "0:10:00" and control["mem"] == "16G"
    assert _sbatch(exp / "llama_r4" / "finetune.slurm")["time"] != "0:20:00"


def test_slurm_overrides_win_and_disagreement_is_an_error(tmp_path, scratch):
    design = small_design(tmp_path)
    design["runs"][0]["compute"] = {"time": "0:45:00", "mem": "40G"}
    design["runs"][0]["slurm_overrides"] = {"mem": "64G"}
    with pytest.raises(ValidationFailed) as err:
        _scaffold(tmp_path, design)
    lines = "\n".join(err.value.lines())
    assert "runs[0].compute.mem: '40G' disagrees with slurm_overrides.mem ('64G'); keep one of them" in lines


def test_compute_unknown_key_is_refused(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    design["runs"][0]["compute"] = {"gpu_hours": 3}
    result = ck(capsys, "validate", str(write_design(tmp_path, design)))
    assert result.returncode == 2 and "runs[0].compute.gpu_hours: unknown key" in result.stderr
    assert "known keys: cpus, gpus, mem, time" in result.stderr


def _llama_only(design: dict) -> dict:
    design["runs"] = [r for r in design["runs"] if not r["name"].startswith("qwen")]
    design["evaluation"]["matrix"] = [r for r in design["evaluation"]["matrix"] if not r["run"].startswith("qwen")]
    return design


def test_evaluation_system_prompt_reaches_eval_config(tmp_path, scratch):
    design = _llama_only(small_design(tmp_path))
    design["evaluation"]["system_prompt"] = design["controls"]["system_prompt"]
    exp = _scaffold(tmp_path, design)
    config = yaml.safe_load(next((exp / "llama_r4" / "eval").rglob("eval_config.yaml")).read_text())
    assert config["task_args"]["system_prompt"] == "Continue the sequence."


def test_evaluation_system_prompt_that_differs_from_training_is_refused(tmp_path, scratch):
    design = _llama_only(small_design(tmp_path))
    design["evaluation"]["system_prompt"] = "Something else."
    with pytest.raises(ValidationFailed) as err:
        _scaffold(tmp_path, design)
    assert "differs from the training system prompt of run llama_r4" in "\n".join(err.value.lines())


def test_max_connections_reaches_eval_config(tmp_path, scratch):
    from cruijff_kit.tools.inspect.run_cell import generate_args

    design = small_design(tmp_path)
    design["evaluation"]["max_connections"] = 8
    exp = _scaffold(tmp_path, design)
    config = yaml.safe_load(next((exp / "llama_r4" / "eval").rglob("eval_config.yaml")).read_text())
    assert config["generation"]["max_connections"] == 8
    assert generate_args(config)["max_connections"] == 8


def test_parameters_checkpoint_path_is_an_eval_only_checkpoint(tmp_path, scratch):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    design = small_design(tmp_path)
    design["runs"].append({"name": "outside", "type": "eval-only", "model": "Llama-3.2-1B-Instruct",
                           "parameters": {"checkpoint_path": str(ckpt)}})
    design["evaluation"]["matrix"].append({"run": "outside", "tasks": ["next_value"], "epochs": None})
    exp = _scaffold(tmp_path, design)
    config = yaml.safe_load(next((exp / "outside" / "eval").rglob("eval_config.yaml")).read_text())
    assert config["model_path"] == str(ckpt)


def test_experiment_type_is_optional(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    del design["experiment"]["type"]
    assert ck(capsys, "validate", str(write_design(tmp_path, design))).returncode == 0


@pytest.mark.parametrize("word, candidates, hint", [
    ("project_dir", ["objective", "experiment_name", "dataset_dir"], ""),
    ("model_checkpoint", ["model_component", "model_dir", "model_name"], ""),
    ("batch_szie", ["batch_size", "epochs"], "did you mean batch_size?"),
    ("learning_rate", ["lr", "epochs"], "did you mean lr?"),
    ("cpus_per_task", ["cpus", "gpus"], "did you mean cpus?"),
    ("Llama-9B", ["Llama-3.2-1B", "Qwen2.5-3B"], "did you mean Llama-3.2-1B?"),
    ("learning_rate", ["epochs"], ""),
])
def test_closest(word, candidates, hint):
    assert closest(word, candidates) == hint


def test_project_dir_in_setup_finetune_gets_no_wrong_hint(tmp_path, scratch):
    from cruijff_kit.scaffold.setup_finetune import setup_finetune

    run_dir = tmp_path / "p" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "setup_finetune.yaml").write_text("dataset_label: x\nproject_dir: /a\nmodel_checkpoint: /b\n")
    with pytest.raises(ValidationFailed) as err:
        setup_finetune(run_dir, settings=load_settings())
    text = "\n".join(err.value.lines())
    assert "objective" not in text and "model_component?" not in text
    assert "project_dir: unknown key" in text and "model_checkpoint: unknown key" in text

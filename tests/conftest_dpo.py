"""Shared pieces of tests/test_dpo.py and tests/test_prefs.py: the tiny model, data files, configs.

Not a conftest (pytest does not load it by itself): the test modules import the fixtures they use.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff_kit.models import tiny

DPO_RECIPE = "cruijff_kit.tools.torchtune.custom_recipes.lora_dpo_single_device_val"
SFT_RECIPE = "cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val"
LORA = {k: v for k, v in tiny.LORA_DEFAULTS.items() if k != "apply_lora_to_output"}  # the template adds it


def job_env() -> dict:
    """What a training job sees: offline, tiktoken cache off (the tiny tokenizer is read by path)."""
    return {**os.environ, "TIKTOKEN_CACHE_DIR": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"}


@pytest.fixture(scope="session")
def tt_tokenizer(tiny_model):  # tiny_model: tests/conftest.py
    from torchtune.models.llama3 import llama3_tokenizer

    return llama3_tokenizer(path=str(tiny_model / tiny.TINY_TOKENIZER_PATH), max_seq_len=64)


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def sequence_input(rng: random.Random) -> str:
    start = rng.randint(1, 900)
    return ",".join(str(n) for n in range(start, start + 5))


def preference_pairs(n: int, seed: int, chosen: str = "43") -> list[dict]:
    """A learnable preference: always `chosen` over a random other number."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        wrong = str(rng.randint(100, 999))
        out.append({"prompt": sequence_input(rng), "chosen": chosen, "rejected": wrong})
    return out


def io_records(n: int, seed: int, output: str = "42") -> list[dict]:
    rng = random.Random(seed)
    return [{"input": sequence_input(rng), "output": output} for _ in range(n)]


def model_section(model_dir: Path) -> dict:
    return {"component": tiny.TINY_COMPONENT["_component_"],
            "arch": {k: v for k, v in tiny.TINY_COMPONENT.items() if k != "_component_"}, **LORA}


def dpo_context(*, model_dir: Path, checkpoint_dir: Path, output_dir: Path, source: Path, **over) -> dict:
    """A complete context for tests/fixtures/dpo/dpo.yaml.j2 (tiny model on the CPU)."""
    ctx = {
        "run": "dpo_run", "experiment": "unit", "output_dir": str(output_dir), "model_label": "tiny-llama",
        "reference_label": str(checkpoint_dir),
        "model": model_section(model_dir),
        "tokenizer": {"component": tiny.TINY_TOKENIZER_COMPONENT,
                      "files": {"path": str(model_dir / tiny.TINY_TOKENIZER_PATH)}, "args": {}, "max_seq_len": 64},
        "checkpointer": {"checkpoint_dir": str(checkpoint_dir), "checkpoint_files": tiny.TINY_CHECKPOINT_FILES,
                         "model_type": tiny.TINY_MODEL_TYPE},
        "dataset": {"source": str(source), "dataset_type": "chat_completion", "prompt": "{input}",
                    "system_prompt": ""},
        "validation": True, "seed": 0, "batch_size": 8, "batch_size_val": 16, "run_val_every_n_steps": 0,
        "dpo": {"beta": 0.1},
        "optimizer": {"lr": 0.01, "weight_decay": 0.0, "fused": False},
        "lr_scheduler": {"num_warmup_steps": 0},
        "epochs": 2, "gradient_accumulation_steps": 1, "save_adapter_weights_only": False,
        "log_every_n_steps": 1, "log_peak_memory_stats": False, "device": "cpu", "dtype": "fp32",
        "activation_checkpointing": False, "wandb": None,
    }
    ctx.update(over)
    return ctx


def sft_config(*, model_dir: Path, output_dir: Path, source: Path, steps: int = 3) -> dict:
    """A config for our SFT recipe (one short epoch on the tiny model)."""
    return tiny.lora_config(model_dir, source, output_dir, max_steps_per_epoch=steps, run_val_at_epoch_end=False,
                            optimizer={"lr": 0.02})


def run_recipe(module: str, config: Path, log: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a recipe the way a job does (`python -m <recipe> --config FILE`); output into `log`."""
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", module, "--config", str(config)], env=job_env(),
                              stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, cwd=config.parent)
    return proc


def disk_log_lines(output_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, {metric: value}) for every DiskLogger line under output_dir/logs."""
    rows = []
    for path in sorted((output_dir / "logs").glob("log_*.txt")):
        for line in path.read_text().splitlines():
            if not line.startswith("Step "):
                continue
            head, _, body = line.partition(" | ")
            values = {}
            for item in body.split():
                key, _, value = item.rpartition(":")
                values[key] = float(value)
            rows.append((int(head.split()[1]), values))
    return rows

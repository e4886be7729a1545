"""Helpers shared by the eval tests (test_eval_worker, test_eval_e2e, test_task_new): small designs
written into tmp dirs, constant-target datasets, and eval cell configs read back."""
from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SANITY_TASK = REPO / "sanity_checks" / "predictable_or_not" / "predictable_or_not_task.py"


def write_dataset(path: Path, *, n_train: int = 40, n_val: int = 10, target: str = "42", seed: int = 0,
                  splits: tuple = ("train", "validation")) -> Path:
    """Our JSON format: random 5-integer inputs, constant output `target`."""
    rng = random.Random(seed)

    def record():
        return {"input": ",".join(str(rng.randint(1, 1000)) for _ in range(5)), "output": target}

    sizes = {"train": n_train, "validation": n_val, "test": n_val}
    data = {split: [record() for _ in range(sizes[split])] for split in splits}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def design(tmp: Path, *, runs: list[dict], matrix: list[dict], controls: dict | None = None,
           tasks: list[dict] | None = None, scorers: list[dict] | None = None, evaluation: dict | None = None,
           models: list[dict] | None = None, data: Path | None = None, name: str = "evx") -> Path:
    """Write a small experiment_summary.yaml under tmp and return its path."""
    data = data or write_dataset(tmp / "data" / "const.json")
    doc = {
        "experiment": {"name": name, "question": "Does the eval worker render cells?", "date": "2025-01-01",
                       "type": "experiment", "dir": str(tmp / "exp")},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "controls": {"epochs": 2, "batch_size": 4, "device": "cpu", "dtype": "fp32", "prompt": "{input}",
                     "system_prompt": "", **(controls or {})},
        "models": {"base": models or [{"name": "tiny-llama", "path": str(tmp / "models" / "tiny-llama")}]},
        "data": {"training": {"path": str(data)}},
        "runs": runs,
        "evaluation": {
            "scorers": scorers if scorers is not None else [{"name": "match", "params": {"location": "exact"}},
                                                            {"name": "numeric", "params": {"tolerance": 0}}],
            "tasks": tasks or [{"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not"}],
            "matrix": matrix, "max_tokens": 8, **(evaluation or {})},
    }
    path = tmp / "design" / "experiment_summary.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_cell(exp_dir: Path, run: str, cell: str) -> dict:
    return yaml.safe_load((exp_dir / run / "eval" / cell / "eval_config.yaml").read_text())

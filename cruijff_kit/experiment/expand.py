"""variables x models -> runs (and a default evaluation matrix).

Run names are `{model}_{param}{value}[_{param}{value}...]`, e.g. `Llama-3.2-1B-Instruct_rank4`;
base-model controls are `{model}_base`. The default matrix evaluates every fine-tuned run on every
task at its last epoch (0-indexed) and every control once (epochs: null).
"""
from __future__ import annotations

import itertools
import re

from cruijff_kit.experiment.runtypes import RUN_TYPES, SFT, baseline, for_objective

SHORT = {"lora_rank": "rank", "lora_alpha": "alpha", "lr": "lr", "batch_size": "bs", "epochs": "ep",
         "lora_dropout": "dropout", "weight_decay": "wd", "num_warmup_steps": "warmup", "max_seq_len": "seq",
         "gradient_accumulation_steps": "ga", "train_on_input": "toi", "dataset_label": "",
         "seed": "seed", "packed": "packed"}
WARN_ABOVE, REFUSE_ABOVE = 100, 1000


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = f"{value:g}"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(value)).strip("-") or "x"


def run_name(model: str, combo: dict) -> str:
    parts = [model] + [f"{SHORT.get(k, k)}{_value_text(v)}" for k, v in combo.items()]
    return "_".join(parts)


def planned_runs(data: dict, *, controls: bool) -> list[dict]:
    variables = dict(data.get("variables") or {})
    models = variables.pop("model", None) or [m["name"] for m in data["models"]["base"]]
    keys = list(variables)
    runs = []
    for model in models:
        for values in itertools.product(*(variables[k] for k in keys)) if keys else [()]:
            combo = dict(zip(keys, values))
            runs.append({"name": run_name(model, combo), "type": for_objective(SFT).name, "model": model,
                         "parameters": combo})
        if controls:
            runs.append({"name": f"{model}_base", "type": baseline().name, "model": model})
    return runs


def default_matrix(data: dict, runs: list[dict]) -> list[dict]:
    tasks = [t["name"] for t in (data.get("evaluation") or {}).get("tasks", [])]
    if not tasks:
        return []
    epochs = (data.get("controls") or {}).get("epochs", 1)
    matrix = []
    for run in runs:
        if not RUN_TYPES[run["type"]].per_epoch:
            matrix.append({"run": run["name"], "tasks": tasks, "epochs": None})
        else:
            last = run.get("parameters", {}).get("epochs", epochs) - 1
            matrix.append({"run": run["name"], "tasks": tasks, "epochs": [last]})
    return matrix


def expand(data: dict, *, controls: bool = False) -> dict:
    """A copy of the design with `runs` (and, if absent, `evaluation.matrix`) filled in."""
    out = dict(data)
    runs = planned_runs(data, controls=controls)
    out["runs"] = runs
    evaluation = dict(out.get("evaluation") or {})
    if evaluation.get("tasks") and not evaluation.get("matrix"):
        evaluation["matrix"] = default_matrix(data, runs)
        out["evaluation"] = evaluation
    return out

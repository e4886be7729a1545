"""variables x models -> runs (and a default evaluation matrix).

Run names are `{model}_{param}{value}[_{param}{value}...]`, e.g. `Llama-3.2-1B-Instruct_rank4`;
base-model controls are `{model}_base`. With `replicates: N` (N > 1) in controls every configuration
becomes N runs `{name}_s0` ... `{name}_s{N-1}` whose `seed` parameter is controls.seed (default 42) + i;
summarize groups them back (a configuration = runs differing only in seed). The default matrix evaluates every fine-tuned run on every
task at its last epoch (0-indexed) and every control once (epochs: null).

Re-expanding a design that already has runs (`design expand --force`) follows the new variables: a run
that is still planned keeps the researcher's entry (stage, slurm_overrides, ...) and its matrix rows; a
new run gets the default matrix rows; a run no longer planned is dropped with its rows. Runs the
expansion never makes (dpo, eval-only) are kept as they are.
"""
from __future__ import annotations

import itertools
import re

from cruijff_kit.experiment.runtypes import RUN_TYPES, SFT, baseline, for_objective, training_names

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


DEFAULT_SEED = 42


def replicas(name: str, combo: dict, data: dict) -> list[tuple[str, dict]]:
    """(run name, parameters) of each replicate of one configuration (itself when replicates <= 1)."""
    controls = data.get("controls") or {}
    n = controls.get("replicates") or 1
    if n <= 1 or "seed" in combo:
        return [(name, combo)]
    base = controls.get("seed", DEFAULT_SEED)
    return [(f"{name}_s{i}", {**combo, "seed": base + i}) for i in range(n)]


def planned_runs(data: dict, *, controls: bool) -> list[dict]:
    variables = dict(data.get("variables") or {})
    models = variables.pop("model", None) or [m["name"] for m in data["models"]["base"]]
    keys = list(variables)
    runs = []
    for model in models:
        for values in itertools.product(*(variables[k] for k in keys)) if keys else [()]:
            combo = dict(zip(keys, values))
            for name, params in replicas(run_name(model, combo), combo, data):
                runs.append({"name": name, "type": for_objective(SFT).name, "model": model, "parameters": params})
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


EXPANDED_TYPES = (for_objective(SFT).name, baseline().name)  # the run types planned_runs writes


def expand(data: dict, *, controls: bool = False) -> dict:
    """A copy of the design with `runs` and `evaluation.matrix` following variables x models."""
    out = dict(data)
    existing = {r.get("name"): r for r in data.get("runs") or []}
    planned = planned_runs(data, controls=controls)
    runs = [existing.get(r["name"], r) for r in planned]
    names = {r["name"] for r in runs}
    runs += [r for r in data.get("runs") or [] if r.get("type") not in EXPANDED_TYPES and r.get("name") not in names]
    out["runs"] = runs
    evaluation = dict(out.get("evaluation") or {})
    if evaluation.get("tasks"):
        keep = {r["name"] for r in runs}
        rows = [row for row in evaluation.get("matrix") or [] if row.get("run") in keep]
        covered = {row.get("run") for row in rows}
        rows += default_matrix(data, [r for r in runs if r["name"] not in covered and r.get("type") in EXPANDED_TYPES])
        evaluation["matrix"] = rows
        out["evaluation"] = evaluation
    return out


def changes(before: dict, after: dict) -> dict[str, list[str]]:
    """Run names added, kept and removed by an expansion (for the verb's report)."""
    old = [r.get("name") for r in before.get("runs") or []]
    new = [r.get("name") for r in after.get("runs") or []]
    return {"added": [n for n in new if n not in old], "kept": [n for n in new if n in old],
            "removed": [n for n in old if n not in new]}


def unevaluated(data: dict) -> list[str]:
    """Runs that train (fine-tuned, dpo) but have no evaluation cell in the matrix."""
    evaluated = {row.get("run") for row in (data.get("evaluation") or {}).get("matrix") or []
                 if row.get("tasks") and row.get("epochs")}
    return [r.get("name") for r in data.get("runs") or []
            if r.get("type") in training_names() and r.get("name") not in evaluated]

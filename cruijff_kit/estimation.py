"""Compute estimates before spending (ground floor: design summary, scaffold and `estimate` all use it):

Without prior runs the throughput comes from conservative defaults by model size (marked
preliminary). With prior runs (compute records written by `run`), see `prior_throughput`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from cruijff_kit.experiment.model import Experiment, Run
from cruijff_kit.settings import Settings

# conservative LoRA training throughput (tokens/s per GPU) by model size in GB of bf16 weights
DEFAULT_TOKENS_PER_S = ((0.1, 1500.0), (3.0, 6000.0), (7.0, 2500.0), (17.0, 1000.0), (1e9, 150.0))
CPU_TOKENS_PER_S = 1500.0
STARTUP_S = 60.0  # job start, model load, tokenizer, checkpoint save per epoch
EVAL_S_PER_SAMPLE = 0.5
SAFETY = 1.5  # recommended --time = estimate x SAFETY, rounded up to 15 minutes
TOKENS_PER_CHAR = 0.35


@dataclass
class RunEstimate:
    run: str
    examples: int
    tokens: int
    tokens_per_s: float
    train_s: float
    eval_s: float
    disk_gb: float
    gpus: int
    gpu_hours: float
    cost: float
    recommended_time: str
    basis: str
    preliminary: bool


def dataset_stats(path: Path | None, declared: dict) -> tuple[int, float]:
    """(train examples, mean characters per example) from the file, else the declared split size."""
    if path is not None and path.is_file():
        try:
            rows = json.loads(path.read_text()).get("train", [])
            if rows:
                chars = sum(len(str(r.get("input", ""))) + len(str(r.get("output", ""))) for r in rows)
                return len(rows), chars / len(rows)
        except (json.JSONDecodeError, AttributeError):
            pass
    return int(declared.get("train", 1000)), 200.0


def slurm_time(seconds: float) -> str:
    minutes = max(15, int(math.ceil(seconds * SAFETY / 60 / 15)) * 15)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def default_throughput(size_gb: float, device: str) -> float:
    if device == "cpu":
        return CPU_TOKENS_PER_S
    return next(tps for limit, tps in DEFAULT_TOKENS_PER_S if size_gb <= limit)


def estimate_run(exp: Experiment, run: Run, settings: Settings, prior: float | None = None) -> RunEstimate:
    c = run.controls
    try:
        size = exp.model(run.model).size_gb
    except KeyError:
        size = 0.0
    data = exp.preference_data if run.type == "dpo" else exp.training_data
    n, chars = dataset_stats(exp.dataset_file(run), (data.splits if data else {}) or {})
    prompt_chars = len(c.prompt) + len(c.system_prompt)
    per_example = int((chars + prompt_chars) * TOKENS_PER_CHAR) + 12  # chat headers
    steps = math.ceil(n / c.batch_size)
    if c.max_steps_per_epoch:
        steps = min(steps, c.max_steps_per_epoch)
        n = min(n, steps * c.batch_size)
    tokens = per_example * n * c.epochs if run.trains else 0
    tps = prior or default_throughput(size, c.device)
    train_s = (tokens / tps + STARTUP_S * (1 + c.epochs)) if run.trains else 0.0
    cells = [cell for cell in exp.cells() if cell.run == run.name]
    samples = exp.evaluation.limit or 100
    eval_s = len(cells) * (STARTUP_S + samples * EVAL_S_PER_SAMPLE)
    gpus = int(run.slurm_overrides.get("gpus", settings.slurm_gpus)) if c.device != "cpu" else 0
    gpu_hours = (train_s + eval_s) / 3600 * gpus
    disk = size * (0.01 if c.save_adapter_weights_only else 1.0) * c.epochs if run.trains else 0.0
    return RunEstimate(run.name, n, tokens, tps, round(train_s, 1), round(eval_s, 1), round(disk, 3), gpus,
                       round(gpu_hours, 4), round(gpu_hours * settings.gpu_hourly_cost, 2),
                       slurm_time(train_s) if run.trains else slurm_time(eval_s),
                       "prior runs" if prior else "defaults by model size", prior is None)


def estimate_experiment(exp: Experiment, settings: Settings, priors: dict[str, float] | None = None) -> list[RunEstimate]:
    priors = priors or {}
    return [estimate_run(exp, run, settings, priors.get(run.name)) for run in exp.runs]


def totals(estimates: list[RunEstimate]) -> dict:
    keys = ("train_s", "eval_s", "disk_gb", "gpu_hours", "cost")
    out = {k: round(sum(getattr(e, k) for e in estimates), 3) for k in keys}
    out["preliminary"] = any(e.preliminary for e in estimates)
    return out


def as_rows(estimates: list[RunEstimate]) -> list[dict]:
    return [asdict(e) for e in estimates]

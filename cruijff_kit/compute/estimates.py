"""Compute estimates before spending (ground floor: design summary, scaffold and `estimate` all use it):

Without prior runs the throughput comes from conservative defaults by model size (marked
preliminary). With prior runs (compute records written by `run`), the most similar one (same model, then
nearest sequence length and batch size) gives throughput and per-epoch overhead:
    train time = tokens / measured tokens/s + overhead per epoch x (epochs + 1), x calibration
where calibration is the median actual/predicted ratio of earlier `estimate --check` results.

`plan_estimates` is the one way in: every consumer (estimate, design summary, scaffold's --time and --mem,
status and summarize costs) searches the same prior dirs (the scratch dir, $CK_PRIORS, --priors) and
applies the same calibration, so the numbers agree wherever they are shown.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from cruijff_kit.experiment.model import Experiment, Run
from cruijff_kit.settings import Settings
from cruijff_kit.experiment import layout

# conservative LoRA training throughput (tokens/s per GPU) by model size in GB of bf16 weights
DEFAULT_TOKENS_PER_S = ((0.1, 1500.0), (3.0, 6000.0), (7.0, 2500.0), (17.0, 1000.0), (1e9, 150.0))
CPU_TOKENS_PER_S = 1500.0
STARTUP_S = 60.0  # job start, model load, tokenizer, checkpoint save per epoch
IO_GB_PER_S = 0.25  # reading the weights at start and writing a checkpoint (shared filesystems are slow)


def model_size_gb(exp: Experiment, run: Run) -> float:
    """The design's size_gb for the run's model, else the registry's (0 when neither knows)."""
    try:
        model = exp.model(run.model)
    except KeyError:
        return 0.0
    if model.size_gb:
        return float(model.size_gb)
    from cruijff_kit.models.registry import get

    spec = get(getattr(model, "registry", "") or model.name)
    return float(spec.size_gb) if spec else 0.0


def time_floor_s(size_gb: float, epochs: int, adapter_only: bool) -> float:
    """Training never gets less than: start-up, loading the weights, and one checkpoint save per epoch."""
    save_gb = size_gb * (ADAPTER_FRACTION if adapter_only else 1.0)
    return STARTUP_S + size_gb / IO_GB_PER_S + epochs * save_gb / IO_GB_PER_S
EVAL_S_PER_SAMPLE = 0.5
SAFETY = 1.5  # recommended --time = estimate x SAFETY, rounded up to 15 minutes
TOKENS_PER_CHAR = 0.35
ADAPTER_FRACTION = 0.01  # a LoRA adapter checkpoint is about 1% of the merged model
GPU_MEMORY_HEADROOM = 0.9  # plan to use 90% of a GPU's memory
# `GPU type` in claude.local.md -> (memory GB, training speed relative to an A100, which the default
# throughputs above assume); first match wins, so longer names come first. Unset or unknown: an A100-80GB.
GPUS = (("H200", 141.0, 2.2), ("H100", 80.0, 2.0), ("A100-40", 40.0, 1.0), ("A100", 80.0, 1.0),
        ("L40", 48.0, 0.9), ("A6000", 48.0, 0.6), ("V100-16", 16.0, 0.4), ("V100", 32.0, 0.4),
        ("A10", 24.0, 0.35), ("L4", 24.0, 0.3), ("T4", 16.0, 0.15))
UNKNOWN_GPU = (80.0, 1.0)
# without a prior run: activation memory per example and 1k tokens, per GB of model weights
ACTIVATION_GB_PER_SAMPLE_KTOK_PER_WEIGHT_GB = 0.1
HISTORY = "ck-estimates/history.jsonl"  # under the scratch dir: one line per run checked by `estimate --check`


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
    disk_per_epoch_merged_gb: float = 0.0
    disk_per_epoch_adapter_gb: float = 0.0
    recommended_batch_size: int = 0  # the design's batch size, or the largest power of two that fits the GPU
    recommended_grad_accum: int = 1  # keeps the effective batch size when recommended_batch_size is smaller


def dataset_stats(path: Path | None, declared: dict) -> tuple[int, float]:
    """(train examples, mean characters per example) from the file, else the declared split size."""
    if path is not None and path.is_file():
        found = _file_stats(str(path), path.stat().st_mtime_ns)
        if found:
            return found
    return int(declared.get("train", 1000)), 200.0


@lru_cache(maxsize=256)
def _file_stats(path: str, mtime_ns: int) -> tuple[int, float] | None:
    """Read each data file once per scaffold/estimate, however many runs share it."""
    import stat

    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):  # a FIFO would block the read forever
            return None
        rows = json.loads(Path(path).read_text()).get("train", [])
    except (OSError, ValueError, AttributeError, RecursionError):  # ValueError: bad JSON or not UTF-8
        return None
    if not isinstance(rows, list) or not rows:
        return None
    rows = [r for r in rows if isinstance(r, dict)] or [{}]
    chars = sum(len(str(r.get("input", ""))) + len(str(r.get("output", ""))) for r in rows)
    return len(rows), chars / len(rows)


def recommended_mem(prior: PriorRun | None) -> str:
    """A --mem with 50% headroom over the most similar prior run's peak memory; '' without one."""
    if prior is None or prior.peak_memory_gb <= 0:
        return ""
    return f"{max(2, math.ceil(prior.peak_memory_gb * 1.5 + 1))}G"


def slurm_time(seconds: float) -> str:
    minutes = max(15, int(math.ceil(seconds * SAFETY / 60 / 15)) * 15)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def default_throughput(size_gb: float, device: str, gpu_type: str = "") -> float:
    """Conservative tokens/s without a prior run: by model size, scaled by the GPU type's speed."""
    if device == "cpu":
        return CPU_TOKENS_PER_S
    return next(tps for limit, tps in DEFAULT_TOKENS_PER_S if size_gb <= limit) * gpu_spec(gpu_type)[1]


@dataclass
class PriorRun:
    """What a finished run measured (its compute record), reduced to what estimates need."""

    path: str
    model: str
    batch_size: int
    max_seq_len: int
    epochs: int
    tokens: int
    tokens_per_s: float
    train_s: float
    eval_s_per_cell: float = 0.0
    peak_memory_gb: float = 0.0
    samples: int = 0  # examples seen (all epochs): tokens / samples is the measured tokens per example
    gpu_peak_memory_gb: float = 0.0  # nvidia-smi's peak memory used on one GPU (compute.json `gpu.summary`)

    @property
    def measured_gpu_peak_gb(self) -> float:
        """What the GPU held at most: nvidia-smi's figure (CUDA context and allocator cache included, what an
        out-of-memory error is about) when sampled, else the recipe's own peak."""
        return self.gpu_peak_memory_gb or self.peak_memory_gb

    @property
    def overhead_per_epoch(self) -> float:
        """Seconds not explained by token throughput (start-up, validation, checkpoint saves)."""
        return max(0.0, self.train_s - self.tokens / self.tokens_per_s) / (self.epochs + 1)


def _num(record: dict, *keys, default=0.0) -> float:
    for key in keys:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def read_prior(record_path: Path, facts: dict | None = None) -> PriorRun | None:
    """A compute record (run dir compute.json, merged with the recipe's training_summary.json)."""
    from cruijff_kit.compute.records import gpu_summary

    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("kind", "train") != "train" or record.get("exit_code", 0) not in (0, None):
        return None
    summary = record.get("training_summary") if isinstance(record.get("training_summary"), dict) else {}
    merged = {**summary, **{k: v for k, v in record.items() if not isinstance(v, dict)}, **(facts or {})}
    tps = _num(merged, "tokens_per_s", "tokens_per_second", "tokens_per_sec")
    tokens = _num(merged, "tokens", "total_tokens", "tokens_seen", "num_tokens")
    train_s = _num(merged, "wall_s", "wall_time_s", "elapsed_s", "train_s")
    if tps <= 0 or tokens <= 0 or train_s <= 0:
        return None
    return PriorRun(str(record_path), str(merged.get("model") or merged.get("model_name") or ""),
                    int(_num(merged, "batch_size", default=1)), int(_num(merged, "max_seq_len", default=0)),
                    int(_num(merged, "epochs", "total_epochs", default=1)), int(tokens), tps, train_s,
                    _num(merged, "eval_s_per_cell"), _num(merged, "peak_memory_gb", "gpu_peak_memory_gb"),
                    int(_num(merged, "samples", "examples_seen")),
                    (gpu_summary(record).get("peak_memory_mib") or 0.0) / 1024)


def _run_facts(record_path: Path, cache: dict) -> dict:
    """model / batch_size / max_seq_len / epochs of the run a record belongs to, from its experiment's design."""
    from cruijff_kit.experiment.load import load_experiment  # ground floor; imported lazily for speed

    exp_dir = record_path.parent.parent
    if exp_dir not in cache:
        try:
            cache[exp_dir] = load_experiment(layout.design_file(exp_dir))
        except Exception:  # an unreadable old experiment is simply not a usable prior
            cache[exp_dir] = None
    exp = cache[exp_dir]
    try:
        run = exp.run(record_path.parent.name) if exp else None
    except KeyError:
        run = None
    if run is None:
        return {}
    return {"model": run.model, "batch_size": run.controls.batch_size, "max_seq_len": run.controls.max_seq_len,
            "epochs": run.controls.epochs}


def eval_walls(run_dir: Path) -> list[float]:
    """Wall seconds of a run's finished eval cells, from their compute.json records."""
    walls = []
    for cell in layout.cell_compute_files(run_dir):
        try:
            record = json.loads(cell.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("kind") == "eval" and record.get("exit_code", 0) in (0, None) and _num(record, "wall_s") > 0:
            walls.append(_num(record, "wall_s"))
    return walls


def _eval_facts(record_path: Path) -> dict:
    """eval_s_per_cell: the median wall time of the run's finished eval cells."""
    walls = eval_walls(record_path.parent)
    return {"eval_s_per_cell": statistics.median(walls)} if walls else {}


PRIOR_PATTERNS = tuple(f"{root}{layout.RUN_COMPUTE_GLOB}" for root in ("ck-experiments/*/", "ck-sanity-checks/*/", "*/"))


def _read_priors(paths) -> list[PriorRun]:
    priors, seen, cache = [], set(), {}
    for path in paths:
        if path in seen:
            continue
        seen.add(path)
        prior = read_prior(path, {**_eval_facts(path), **_run_facts(path, cache)})
        if prior:
            priors.append(prior)
    return priors


def find_priors(*roots: Path) -> list[PriorRun]:
    """Every usable compute record under the given scratch dirs (experiments and sanity checks)."""
    return _read_priors(path for root in roots for pattern in PRIOR_PATTERNS
                        for path in sorted(Path(root).glob(pattern)))


def experiment_priors(exp_dir: Path) -> list[PriorRun]:
    """The compute records of one experiment's finished training runs."""
    return _read_priors(sorted(Path(exp_dir).glob(layout.RUN_COMPUTE_GLOB)))


def most_similar(priors: list[PriorRun], model: str, batch_size: int, max_seq_len: int,
                 run_name: str = "") -> PriorRun | None:
    """Same model first, then the nearest sequence length and batch size; ties go to a run of the same name."""
    same = [p for p in priors if p.model == model]
    if not same:
        return None
    return min(same, key=lambda p: (abs(math.log2(max(p.max_seq_len, 1) / max(max_seq_len, 1))),
                                    abs(math.log2(max(p.batch_size, 1) / max(batch_size, 1))),
                                    Path(p.path).parent.name != run_name))


def gpu_spec(gpu_type: str) -> tuple[float, float]:
    """(memory GB, speed relative to an A100) of a `GPU type` such as "H100" or "A100-40GB"."""
    name = (gpu_type or "").upper().replace(" ", "")
    return next(((gb, speed) for key, gb, speed in GPUS if key in name), UNKNOWN_GPU)


def fitting_batch_size(run: Run, size_gb: float, gpus: int, gpu_type: str, prior: PriorRun | None) -> int:
    """The design's batch size if it fits one GPU's memory, else the largest power of two that does.

    Memory = weights (per GPU) + per-example activations x batch. The per-example part comes from the prior
    run's measured GPU peak (scaled by sequence length), else from a rough default per GB of weights."""
    c = run.controls
    if c.device != "cuda" or size_gb <= 0:
        return c.batch_size
    weights = size_gb / max(gpus, 1)
    if prior and prior.measured_gpu_peak_gb > 0 and prior.batch_size > 0:
        per_example = max(prior.measured_gpu_peak_gb - weights, 0.01) / prior.batch_size
        per_example *= c.max_seq_len / max(prior.max_seq_len, 1)
    else:
        per_example = ACTIVATION_GB_PER_SAMPLE_KTOK_PER_WEIGHT_GB * weights * c.max_seq_len / 1024
    fits = int((gpu_spec(gpu_type)[0] * GPU_MEMORY_HEADROOM - weights) / per_example)
    if fits >= c.batch_size:
        return c.batch_size
    return 2 ** int(math.log2(fits)) if fits >= 1 else 1


def estimate_run(exp: Experiment, run: Run, settings: Settings, prior: PriorRun | None = None,
                 calibration: float = 1.0) -> RunEstimate:
    c = run.controls
    size = model_size_gb(exp, run)
    data = exp.data_section(run)
    n, chars = dataset_stats(exp.dataset_file(run), (data.splits if data else {}) or {})
    prompt_chars = len(c.prompt) + len(c.system_prompt)
    per_example = int((chars + prompt_chars) * TOKENS_PER_CHAR) + 12  # chat headers
    steps = math.ceil(n / c.batch_size)
    if c.max_steps_per_epoch:
        steps = min(steps, c.max_steps_per_epoch)
        n = min(n, steps * c.batch_size)
    if prior and prior.samples:  # measured tokens per example (padding included) beat the heuristic
        per_example = prior.tokens / prior.samples
    tokens = int(per_example * n * c.epochs) if run.trains else 0
    if prior:
        tps = prior.tokens_per_s
        train_s = (tokens / tps + prior.overhead_per_epoch * (1 + c.epochs)) * calibration if run.trains else 0.0
    else:
        tps = default_throughput(size, c.device, settings.gpu_type)
        train_s = (tokens / tps + STARTUP_S * (1 + c.epochs)) if run.trains else 0.0
    if run.trains:
        train_s = max(train_s, time_floor_s(size, c.epochs, bool(c.save_adapter_weights_only)))
    n_cells = exp.cell_counts.get(run.name, 0)
    samples = exp.evaluation.limit or 100
    per_cell = prior.eval_s_per_cell if prior and prior.eval_s_per_cell else STARTUP_S + samples * EVAL_S_PER_SAMPLE
    eval_s = n_cells * per_cell
    gpus = int(run.slurm_overrides.get("gpus", settings.slurm_gpus)) if c.device != "cpu" else 0
    gpu_hours = (train_s + eval_s) / 3600 * gpus
    per_epoch = {"merged": size if run.trains else 0.0, "adapter": size * ADAPTER_FRACTION if run.trains else 0.0}
    disk = per_epoch["adapter" if c.save_adapter_weights_only else "merged"] * c.epochs
    batch = fitting_batch_size(run, size, gpus, settings.gpu_type, prior) if run.trains else c.batch_size
    return RunEstimate(run.name, n, tokens, round(tps, 1), round(train_s, 1), round(eval_s, 1), round(disk, 3),
                       gpus, round(gpu_hours, 4), round(gpu_hours * settings.gpu_hourly_cost, 2),
                       slurm_time(train_s) if run.trains else slurm_time(eval_s),
                       (f"prior run {Path(prior.path).parent.name}"
                        + (f" (GPU peak {prior.gpu_peak_memory_gb:.1f} GB)" if prior.gpu_peak_memory_gb else ""))
                       if prior else "defaults by model size",
                       prior is None, round(per_epoch["merged"], 3), round(per_epoch["adapter"], 4), batch,
                       c.gradient_accumulation_steps * math.ceil(c.batch_size / batch))


def estimate_experiment(exp: Experiment, settings: Settings, priors: list[PriorRun] | None = None,
                        calibration: float = 1.0) -> list[RunEstimate]:
    out = []
    for run in exp.runs:
        prior = most_similar(priors or [], run.model, run.controls.batch_size, run.controls.max_seq_len, run.name)
        out.append(estimate_run(exp, run, settings, prior, calibration))
    return out


def totals(estimates: list[RunEstimate]) -> dict:
    keys = ("train_s", "eval_s", "disk_gb", "gpu_hours", "cost")
    out = {k: round(sum(getattr(e, k) for e in estimates), 3) for k in keys}
    out["preliminary"] = any(e.preliminary for e in estimates)
    return out


def as_rows(estimates: list[RunEstimate]) -> list[dict]:
    return [asdict(e) for e in estimates]


@dataclass
class Plan:
    """An experiment's estimates with what they rest on."""

    estimates: list[RunEstimate]
    priors: list[PriorRun]
    roots: list[Path]
    calibration: float


def prior_roots(settings: Settings, extra=()) -> list[Path]:
    """Where prior runs are searched: the scratch dir, then $CK_PRIORS (os.pathsep-separated), then `extra`."""
    env = [p for p in os.environ.get("CK_PRIORS", "").split(os.pathsep) if p.strip()]
    roots: list[Path] = []
    for root in (settings.scratch, *env, *extra):
        path = Path(root).expanduser().resolve()
        if path not in roots:
            roots.append(path)
    return roots


def calibration(history: Path) -> float:
    """Median actual/predicted of earlier checks (bounded to 0.5..2), 1.0 without history."""
    try:
        ratios = [json.loads(line)["ratio"] for line in history.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0
    return min(2.0, max(0.5, statistics.median(ratios))) if ratios else 1.0


@lru_cache(maxsize=8)
def _sweep_basis(roots: tuple[str, ...], history: str) -> tuple[list[PriorRun], float]:
    """Priors and calibration, read once per process: scaffold asks for every run of a sweep."""
    return find_priors(*map(Path, roots)), calibration(Path(history))


def plan_estimates(exp: Experiment, settings: Settings, extra_roots=()) -> Plan:
    roots = prior_roots(settings, extra_roots)
    priors = find_priors(*roots)
    factor = calibration(settings.scratch / HISTORY)
    return Plan(estimate_experiment(exp, settings, priors, factor), priors, roots, factor)


@lru_cache(maxsize=8)
def _scaffold_roots(scratch: str, env: str) -> tuple[str, ...]:
    """prior_roots, resolved once per (scratch dir, $CK_PRIORS) instead of once per run of a sweep."""
    from types import SimpleNamespace

    return tuple(str(r) for r in prior_roots(SimpleNamespace(scratch=scratch)))


def scaffold_estimate(exp: Experiment, run: Run, settings: Settings) -> tuple[RunEstimate, PriorRun | None]:
    """One run's estimate as plan_estimates gives it (the basis cached for a whole sweep)."""
    roots = _scaffold_roots(str(settings.scratch), os.environ.get("CK_PRIORS", ""))
    priors, factor = _sweep_basis(roots, str(settings.scratch / HISTORY))
    prior = most_similar(priors, run.model, run.controls.batch_size, run.controls.max_seq_len, run.name)
    return estimate_run(exp, run, settings, prior, factor), prior

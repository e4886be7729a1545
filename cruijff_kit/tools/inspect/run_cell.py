"""Run one evaluation cell inside its job: `python -m cruijff_kit.tools.inspect.run_cell eval_config.yaml`.

Reads the cell's eval_config.yaml (rendered by scaffold), makes sure there is a loadable model
(an adapter-only checkpoint is merged into its base model in memory, with a base epoch `best` picked as
training picks it), loads the @task from its script with the cell's task args, swaps in the design's
scorers, and evaluates with our provider (provider.py: inspect-ai's Hugging Face provider plus stop tokens
and the in-memory adapter). Greedy by default (the provider samples unless told otherwise). The prompt is
rendered in torchtune's training format for the tokenizer's family (prompt_format.py), never the model's
own chat template: no default system turn, no date block, the same BOS handling as training; every end
token training puts in the loss stops generation. `cruijff-kit prompts` checks the token ids.

Exit status: 0 when the eval log says success, 1 when the eval failed, 2 for a bad config/model.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.tools.inspect import adapter, placement, prompt_format
from cruijff_kit.tools.inspect.adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from cruijff_kit.tools.inspect.prompt_format import RAW_TEMPLATE  # noqa: F401  (tools/prefs imports it from here)

PREFIX = "[cruijff_kit]"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
DTYPES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16", "auto": "auto"}


class CellError(Exception):
    """A problem with the cell's config or model files: one line, exit 2."""


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


# -- config ----------------------------------------------------------------------------------------
REQUIRED = ("task", "task_script", "task_function", "model_path", "log_dir")


def read_mapping(path: str | Path, what: str) -> dict:
    """A YAML mapping a runner reads (eval_config.yaml, eval_group.yaml); any problem is a one-line CellError."""
    from cruijff_kit.files import YAMLInputError, read_yaml

    path = Path(path)
    if not path.is_file():
        raise CellError(f"{path}: {what} not found")
    try:
        data = read_yaml(path)
    except YAMLInputError as exc:
        raise CellError(str(exc)) from None
    if not isinstance(data, dict):
        raise CellError(f"{path}: expected a mapping")
    return data


def load_config(path: str | Path) -> dict:
    path = Path(path)
    config = read_mapping(path, "eval config")
    missing = [k for k in REQUIRED if not config.get(k)]
    if missing:
        raise CellError(f"{path}: missing {', '.join(missing)}; re-run `cruijff-kit scaffold`")
    config["_path"] = str(path.resolve())
    return config


# -- model files -----------------------------------------------------------------------------------
def weight_files(model_dir: Path) -> list[Path]:
    """Full-model weight files of a HF directory (adapter files excluded)."""
    found = [p for pattern in ("*.safetensors", "*.bin") for p in sorted(model_dir.glob(pattern))]
    return [p for p in found if not p.name.startswith("adapter_")]


def is_full_model(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and bool(weight_files(model_dir))


def is_adapter(model_dir: Path) -> bool:
    return (model_dir / ADAPTER_CONFIG).is_file() and (model_dir / ADAPTER_WEIGHTS).is_file()


def has_tokenizer(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in TOKENIZER_FILES)


def lora_scale(adapter_config: dict) -> float:
    try:
        return adapter.lora_scale(adapter_config)
    except adapter.AdapterError as exc:
        raise CellError(str(exc)) from None


def adapter_deltas(adapter_dir: Path, base_dir: Path | None = None) -> tuple[dict, float]:
    """{base weight name: (lora_A, lora_B)} in the base's layout, and the LoRA scale (see adapter.py)."""
    try:
        return adapter.adapter_deltas(adapter_dir, base_dir)
    except adapter.AdapterError as exc:
        raise CellError(str(exc)) from None


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Write base + adapter (W + scale * B @ A) as a HF model directory in out_dir.

    Weight shards are rewritten with the same names; every other top-level file of the base
    (config, tokenizer, generation config, shard index) is linked, so the result loads like the base.
    """
    from safetensors.torch import load_file, save_file

    if not is_full_model(base_dir):
        raise CellError(f"base model {base_dir} has no config.json and safetensors weights to merge into")
    shards = [p for p in weight_files(base_dir) if p.suffix == ".safetensors"]
    if not shards:
        raise CellError(f"base model {base_dir} has only .bin weights; merging needs safetensors")
    deltas, scale = adapter_deltas(adapter_dir, base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    applied = set()
    for shard in shards:
        tensors = load_file(str(shard))
        for name, (lora_a, lora_b) in deltas.items():
            if name in tensors:
                tensors[name] = adapter.merged_tensor(tensors[name], lora_a, lora_b, scale)
                applied.add(name)
        save_file(tensors, str(out_dir / shard.name), metadata={"format": "pt"})
    missing = sorted(set(deltas) - applied)
    if missing:
        raise CellError(f"adapter {adapter_dir} targets weights the base model lacks: {', '.join(missing[:3])}")
    for item in base_dir.iterdir():
        if item.is_file() and item not in shards and not (out_dir / item.name).exists():
            os.symlink(item.resolve(), out_dir / item.name)
    return out_dir


def _base_dir(config: dict) -> Path | None:
    """base_model_path, with a base epoch `best` resolved exactly as training resolves it (pick_epoch)."""
    base = Path(config["base_model_path"]) if config.get("base_model_path") else None
    if base is None:
        return None
    from cruijff_kit.tools.torchtune.pick_epoch import resolve_dir

    if str(config.get("base_epoch")) == "best":  # configs that named the base's epoch_N and base_epoch: best
        base = layout.epoch_best_dir(base.parent)
    try:
        return resolve_dir(base)[0]
    except ValueError as exc:
        raise CellError(str(exc)) from None


def resolve_model(config: dict) -> tuple[Path, Path, Path | None]:
    """(model_dir, tokenizer_dir, adapter_dir): an adapter-only checkpoint gives the base as model_dir
    and the adapter to merge in memory; a full model gives adapter_dir None."""
    model_dir = Path(config["model_path"])
    base = _base_dir(config)
    if not model_dir.is_dir():
        raise CellError(f"checkpoint not found: {model_dir}; did the training job finish?")
    if is_full_model(model_dir):
        return model_dir, model_dir if has_tokenizer(model_dir) else (base or model_dir), None
    if not is_adapter(model_dir):
        raise CellError(f"{model_dir} holds neither a model (config.json + weights) nor an adapter "
                        f"({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})")
    if base is None:
        raise CellError(f"{model_dir} holds only an adapter and eval_config.yaml names no base_model_path")
    if not is_full_model(base):
        raise CellError(f"base model {base} has no config.json and weights to apply the adapter {model_dir} to")
    return base, base, model_dir


@contextlib.contextmanager
def prepared_model(config: dict):
    """Yield (model_dir, tokenizer_dir) on disk for tools that need one (preference generation); an adapter
    is merged into a temp dir ($TMPDIR or merge_dir) removed after. Eval cells merge in memory instead."""
    model_dir, tokenizer_dir, adapter_dir = resolve_model(config)
    if adapter_dir is None:
        yield model_dir, tokenizer_dir
        return
    tmp_root = config.get("merge_dir") or None
    if tmp_root:
        Path(tmp_root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ck-merged-", dir=tmp_root))
    try:
        started = time.monotonic()
        say(f"merging adapter {adapter_dir} into base {model_dir}")
        merged = merge_adapter(model_dir, adapter_dir, tmp / "model")
        say(f"merged in {time.monotonic() - started:.1f}s -> {merged}")
        yield merged, (merged if has_tokenizer(merged) else model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def has_chat_template(tokenizer_dir: Path) -> bool:
    if (tokenizer_dir / "chat_template.jinja").is_file() or (tokenizer_dir / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((tokenizer_dir / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def model_args(config: dict, model_dir: Path, tokenizer_dir: Path, adapter_dir: Path | None = None) -> dict:
    """model_args for our provider (provider.py: inspect's hf provider + stop tokens + in-memory adapter).

    The prompt is rendered with torchtune's format for the tokenizer's family (prompt_format.py), never the
    model's own chat template, and every end token training puts in the loss stops generation.
    """
    dataset_type = config.get("dataset_type", "chat_completion")
    fam = prompt_format.family(tokenizer_dir)
    args = {
        "model_path": str(model_dir),
        "tokenizer_path": str(tokenizer_dir),
        "device": config.get("device") or "cpu",
        "do_sample": bool(config.get("generation", {}).get("do_sample", False)),
        # chat templates carry their own BOS; the tokenizer must not add a second one
        "tokenizer_call_args": {"add_special_tokens": False},
        "dtype": DTYPES.get(str(config.get("dtype") or "auto"), "auto"),
    }
    try:
        template = prompt_format.eval_template(fam, dataset_type, config.get("assistant_prefix") or "")
    except ValueError as exc:
        raise CellError(f"tokenizer in {tokenizer_dir}: {exc}") from None
    if template is not None:
        args["chat_template"] = template
    elif not has_chat_template(tokenizer_dir):
        raise CellError(f"tokenizer in {tokenizer_dir} has no chat template but dataset_type is "
                        "chat_completion; use a model with a chat template or dataset_type: text_completion")
    else:
        say(f"warning: no torchtune prompt format known for the tokenizer in {tokenizer_dir}; using its own "
            "chat template (check `cruijff-kit prompts` before trusting the scores)")
    stops = prompt_format.stop_token_ids(tokenizer_dir, fam)
    if stops:
        args["stop_token_ids"] = stops
    if adapter_dir is not None:
        args["adapter_path"] = str(adapter_dir)
    return args


def generate_args(config: dict) -> dict:
    """GenerateConfig fields: max_tokens, seed, temperature only when sampling, max_connections if set."""
    gen = config.get("generation") or {}
    out = {}
    if gen.get("max_tokens") is not None:
        out["max_tokens"] = int(gen["max_tokens"])
    if gen.get("seed") is not None:
        out["seed"] = int(gen["seed"])
    if gen.get("do_sample") and gen.get("temperature") is not None:
        out["temperature"] = float(gen["temperature"])
    if gen.get("max_connections"):
        out["max_connections"] = int(gen["max_connections"])
    return out


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CellError(f"device {device} requested but no GPU is visible to this job; "
                        "request a GPU (slurm_overrides.gpus) or set device: cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise CellError("device mps requested but MPS is not available; set device: cpu")


# -- task ------------------------------------------------------------------------------------------
def load_task_function(script: str | Path, function: str):
    script = Path(script)
    if not script.is_file():
        raise CellError(f"task script not found: {script}")
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location(f"ck_task_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, function, None)
    if fn is None:
        raise CellError(f"{script}: no function '{function}'")
    return fn


def build_task(config: dict):
    """The cell's Task: the script's @task called with the args it accepts, design scorers, name."""
    import inspect as pyinspect

    from inspect_ai import task_with

    from cruijff_kit.tools.inspect.scorers import build_scorers

    fn = load_task_function(config["task_script"], config["task_function"])
    wanted = dict(config.get("task_args") or {})
    params = pyinspect.signature(fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in wanted.items() if takes_any or k in params}
    if "config_path" in params and "config_path" not in given and config.get("_path"):
        # upstream cruijff_kit's convention: the task reads prompt / system_prompt from this file itself
        given["config_path"] = config["_path"]
    skipped = sorted(set(wanted) - set(given) - ({"prompt", "system_prompt"} if "config_path" in given else set()))
    if skipped:
        say(f"warning: {config['task_function']}() takes no {', '.join(skipped)}; not passed "
            "(the task must then present prompts exactly as in training itself)")
    task = fn(**given)
    if config.get("scorers"):
        task = task_with(task, scorer=build_scorers(config["scorers"]))
    label = config.get("vis_label")
    name = f"{config['task']}_{label}" if label else config["task"]
    return task_with(task, name=name), given


def sample_count(task, limit, epochs: int = 1) -> int:
    try:
        n = len(task.dataset)
    except TypeError:
        return 0
    if limit:
        n = min(n, int(limit))
    return n * max(1, epochs)


# -- progress --------------------------------------------------------------------------------------
PROGRESS = {"active": False, "done": 0, "total": 0, "label": "", "every": 1, "started": 0.0}


def _register_progress_hook() -> None:
    if PROGRESS.get("registered"):
        return
    PROGRESS["registered"] = True
    from inspect_ai.hooks import Hooks, SampleEnd, hooks

    @hooks(name="cruijff_kit_progress", description="cruijff_kit: samples done / total in the job log")
    class Progress(Hooks):
        def enabled(self) -> bool:
            return PROGRESS["active"]

        async def on_sample_end(self, data: SampleEnd) -> None:
            PROGRESS["done"] += 1
            done, total = PROGRESS["done"], PROGRESS["total"]
            if done == total or done % PROGRESS["every"] == 0:
                elapsed = time.monotonic() - PROGRESS["started"]
                say(f"eval {PROGRESS['label']}: {done}/{total or '?'} samples ({elapsed:.1f}s)")


# -- main ------------------------------------------------------------------------------------------
def quiet_environment() -> None:
    """Offline, no tokenizer threads, no progress bars in job logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no \r progress bars in job logs


def cell_model(config: dict) -> tuple[dict, Path, dict, Path | None]:
    """(config, model_dir, model_args, adapter_dir) of one cell: `epochs: best / last` resolved to the run's
    epoch_N (recorded in resolved_epoch.json), where its checkpoint lies (cheap file checks, no model loaded)
    and, with a device_map, how the model spreads over the job's GPUs. The one per-cell resolution both
    runners use: run() here and run_group per cell."""
    from cruijff_kit.tools.inspect.cell_epoch import resolve_cell

    label = config.get("cell") or config["task"]
    config = resolve_cell(config)
    if config.get("resolved_epoch") is not None:
        say(f"eval {label}: {config['epoch']} epoch of run {config.get('run')} is epoch {config['resolved_epoch']}")
    model_dir, tokenizer_dir, adapter_dir = resolve_model(config)
    margs = model_args(config, model_dir, tokenizer_dir, adapter_dir)
    device = str(config.get("device") or "cpu")
    if config.get("device_map"):
        margs.update(placement.load_args(device, config["device_map"], placement.visible_gpu_memory()))
        if margs["device"] != device:
            say(f"model spread over {len(margs['max_memory'])} GPUs (device_map {margs['device']})")
        else:
            say(f"warning: device_map {config['device_map']} asked for, but this job sees fewer than 2 GPUs; "
                f"loading onto {device}")
    return config, model_dir, margs, adapter_dir


def evaluate(config: dict, model, margs: dict, model_dir: Path) -> int:
    """Evaluate one cell with `model`: a provider name that inspect loads with `margs`, or a loaded Model
    (a grouped job's; `margs` are then only recorded in the log). 0 on success, 1 when the eval failed."""
    from inspect_ai import eval as inspect_eval

    from cruijff_kit.tools.inspect.scorers import generate_config

    started = time.monotonic()
    label = config.get("cell") or config["task"]
    task, given = build_task(config)
    log_dir = Path(config["log_dir"])
    log_dir.mkdir(parents=True, exist_ok=True)
    limit = config.get("limit")
    total = sample_count(task, limit)
    say(f"eval {label}: {total} samples, model {model_dir}, device {config.get('device') or 'cpu'}, "
        f"{config.get('dataset_type', 'chat_completion')}, "
        f"{'sampling' if margs['do_sample'] else 'greedy'}, log_dir {log_dir}")
    metadata = {k: config.get(k) for k in ("experiment", "run", "run_type", "task", "epoch", "resolved_epoch",
                                            "cell", "vis_label", "dataset_type")}
    metadata.update(model_path=str(config["model_path"]), task_args=given)
    PROGRESS.update(active=True, done=0, total=total, label=label, every=max(1, total // 10),
                    started=time.monotonic())
    _register_progress_hook()
    try:
        logs = inspect_eval(task, model=model, model_args=margs, log_dir=str(log_dir), limit=limit,
                            display="none", log_level="warning", metadata=metadata,
                            **generate_args(config), **generate_config(config.get("scorers")))
    finally:
        PROGRESS["active"] = False
    log = logs[0]
    elapsed = time.monotonic() - started
    if log.status != "success":
        message = log.error.message if log.error else log.status
        say(f"eval {label} FAILED ({log.status}): {message}")
        return 1
    for score in (log.results.scores if log.results else []):
        metrics = ", ".join(f"{k}={m.value:.4g}" for k, m in score.metrics.items())
        say(f"eval {label}: {score.name}: {metrics}")
    say(f"eval {label}: done in {elapsed:.1f}s; log {log.location}")
    return 0


def run(config: dict) -> int:
    quiet_environment()
    config, model_dir, margs, adapter_dir = cell_model(config)  # cheap file checks first, then imports
    if adapter_dir is not None:
        say(f"adapter {adapter_dir} merged into base {model_dir} in memory")
    check_device(str(config.get("device") or "cpu"))
    from cruijff_kit.tools.inspect.provider import register

    return evaluate(config, register(), margs, model_dir)


def entry(argv: list[str] | None, module: str, file: str, load, runner) -> int:
    """`python -m MODULE FILE`: runner(load(FILE)); a CellError is one line on stderr and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(f"usage: python -m {module} {file}", file=sys.stderr)
        return 2
    try:
        return runner(load(argv[0]))
    except CellError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr, flush=True)
        return 2


def main(argv: list[str] | None = None) -> int:
    return entry(argv, "cruijff_kit.tools.inspect.run_cell", layout.EVAL_CONFIG, load_config, run)


if __name__ == "__main__":
    raise SystemExit(main())

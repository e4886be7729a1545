"""The manual path: in a run directory holding a setup_finetune.yaml, write finetune.yaml and finetune.slurm.

  cd my_run && python -m cruijff_kit.scaffold.setup_finetune      # or: cruijff-kit setup_finetune [DIR]

setup_finetune.yaml is a flat file of `key: value` lines; string booleans ('true'/'false') are accepted.
It is translated into the same typed experiment (one training run) as a design and rendered by the same
torchtune worker as `cruijff-kit scaffold`, so both paths write identical files. `scaffold` writes a fully
resolved setup_finetune.yaml into every run directory; edit it and run this to re-render.

Keys (everything optional; defaults in brackets):
  objective  sft (default; recipe lora_finetune_single_device_val) or dpo (preference data with
             prompt/chosen/rejected, recipe lora_dpo_single_device_val, dpo_beta)
  identity   my_wandb_run_name [the directory name] (the run name: letters, digits, . _ -),
             experiment_name [the parent directory's name], my_wandb_project [experiment_name],
             my_wandb_entity [W&B entity in claude.local.md]
  model      model_name [Llama-3.2-1B-Instruct] (a registry model, see `cruijff-kit models list`),
             model_registry [model_name] (registry key when model_name is only a label),
             model_dir [{models_dir}/{model_name}], models_dir [Models directory of claude.local.md,
             else {scratch}/models], model_component (explicit torchtune component block, see registry.py)
  data       dataset_path (the JSON file), or dataset_dir (alias input_dir_base) [{scratch}/data] +
             input_formatting (a sub-folder, legacy) + dataset_label + dataset_ext ['.json'];
             input_formatting containing {input} is taken as the prompt template instead
  outputs    output_dir_base [{scratch}/ck-outputs/{experiment_name}]: checkpoints go to
             {output_dir_base}/ck-out-{run}; base_checkpoint_dir: start from this checkpoint instead of
             the model directory (continued training)
  training   every design control: prompt, system_prompt, dataset_type (chat_completion | text_completion;
             legacy chat_dataset / instruct_dataset / text_completion_dataset), train_on_input, epochs,
             batch_size, batch_size_val, gradient_accumulation_steps, lr, lr_scheduler (cosine | constant;
             legacy get_cosine_schedule_with_warmup / get_constant_schedule_with_warmup), num_warmup_steps,
             weight_decay, lora_rank, lora_alpha [2 x rank], lora_dropout, lora_attn_modules,
             apply_lora_to_mlp, max_seq_len, packed, seed, validation_during_training,
             run_val_every_n_steps (0 = no validation), max_steps_per_epoch, save_adapter_weights_only,
             log_every_n_steps, device, dtype, dpo_beta
  recipe     custom_recipe [cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val]
             (older dotted names of that recipe are accepted; lora_finetune_distributed for >1 GPU)
  SLURM      time, gpus, cpus, mem, account, partition, constraint [model registry, then claude.local.md];
             conda_env, venv, modules (comma separated) [claude.local.md]
  legacy     save_last_epoch_only: false, stash_adapter_weights: false, epochs_to_save: all are accepted
             (every epoch is saved); other values of these are errors.
  upstream   cruijff_kit 0.3.x keys are read with a warning: torchtune_model_name (model_name), cpus_per_task
             (cpus), base_recipe (custom_recipe), recipe names ending _nightly / _stable / _distributed_stable,
             input_key: input and output_key: output (the default); training_samples and other key names
             have no equivalent (an error that says what to do). `cruijff-kit migrate FILE` rewrites the file.
"""
from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

from cruijff_kit.errors import Problem, ProblemList, UserError, ValidationFailed, closest
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.runtypes import OBJECTIVES, SFT, for_objective

SETUP_FILE = layout.SETUP_FINETUNE
DEFAULT_MODEL = "Llama-3.2-1B-Instruct"
IDENTITY = ("objective", "experiment_name", "my_wandb_project", "my_wandb_entity", "my_wandb_run_name", "model_name",
            "model_registry", "model_dir", "models_dir", "model_component", "dataset_label", "dataset_ext",
            "dataset_path", "dataset_dir", "input_dir_base", "input_formatting", "output_dir_base",
            "base_checkpoint_dir", "custom_recipe")
SLURM = ("time", "gpus", "cpus", "mem", "account", "partition", "constraint")
ENVIRONMENT = ("conda_env", "venv", "modules")
LEGACY_FIXED = {"save_last_epoch_only": ("false",), "stash_adapter_weights": ("false",), "epochs_to_save": ("all",)}
BOOLS = ("train_on_input", "save_adapter_weights_only", "packed", "validation_during_training", "apply_lora_to_mlp")
LR_SCHEDULERS = {"cosine": "cosine", "constant": "constant", "get_cosine_schedule_with_warmup": "cosine",
                 "get_constant_schedule_with_warmup": "constant"}
DATASET_TYPES = {"chat_completion": "chat_completion", "text_completion": "text_completion",
                 "chat_dataset": "chat_completion", "instruct_dataset": "chat_completion",
                 "text_completion_dataset": "text_completion"}


def configure(parser) -> None:
    parser.add_argument("dir", nargs="?", default=".", help="the run directory (default: the current one)")
    parser.add_argument("--config", default=SETUP_FILE, help=f"file inside DIR (default {SETUP_FILE})")
    parser.add_argument("--dry-run", action="store_true", help="print finetune.yaml and finetune.slurm; write nothing")
    parser.add_argument("--force", action="store_true", help="overwrite finetune.yaml/.slurm even if you edited them")


def _control_names() -> list[str]:
    from cruijff_kit.experiment.model import Controls

    return Controls.names()


def _bool(value):
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


# design key path -> setup_finetune.yaml key, for reporting problems in the user's own terms
_PATHS = [
    (re.compile(r"^controls\.([a-z_]+)"), r"\1"),
    (re.compile(r"^runs\[0\]\.(?:parameters|slurm_overrides)\.([a-z_]+)"), r"\1"),
    (re.compile(r"^runs\[0\]\.name"), "my_wandb_run_name"),
    (re.compile(r"^runs\[0\]\.base_(run|epoch)"), "base_checkpoint_dir"),
    (re.compile(r"^runs\[0\].*"), "my_wandb_run_name"),
    (re.compile(r"^experiment\.dir"), "(the run directory's parent)"),
    (re.compile(r"^experiment\..*"), "experiment_name"),
    (re.compile(r"^output\.wandb_(project|entity)"), r"my_wandb_\1"),
    (re.compile(r"^models\.base\[0\]\.name"), "model_name"),
    (re.compile(r"^models\.base\[0\]\.registry"), "model_registry"),
    (re.compile(r"^models\.base\[0\]\.path"), "model_dir"),
    (re.compile(r"^models\.base\[0\]\.component(.*)"), r"model_component\1"),
    (re.compile(r"^data\..*"), "dataset_path"),
]


def _key(path: str) -> str:
    for pattern, repl in _PATHS:
        if pattern.match(path):
            return pattern.sub(repl, path, count=1)
    return path


def _translated(problems: list[Problem], where: str) -> list[Problem]:
    return [Problem(where, _key(p.path), p.message, p.hint, p.level) for p in problems]


def translate(raw: dict, run_dir: Path, settings, where: str) -> tuple[dict, dict]:
    """setup_finetune.yaml -> (a one-run design dict, extras: output dir, base checkpoint, env, recipe)."""
    from cruijff_kit.experiment.migrate import setup_renamed

    problems = ProblemList(where)
    raw, notes = setup_renamed(raw)  # upstream 0.3.x keys: read under our names, or say what to do
    for key, message, hint in notes:
        (problems.error if "no equivalent" in message else problems.warn)(key, message, hint)
    controls_known = _control_names()
    known = set(IDENTITY) | set(SLURM) | set(ENVIRONMENT) | set(LEGACY_FIXED) | set(controls_known)
    for key in raw:
        if key not in known:
            problems.error(key, "unknown key", closest(key, known) or "see `cruijff-kit setup_finetune --help`")
    for key, allowed in LEGACY_FIXED.items():
        if key in raw and str(raw[key]).strip().lower() not in allowed:
            problems.error(key, f"{raw[key]!r} is not supported", f"every epoch is saved; remove {key} "
                           f"or set it to {allowed[0]}")

    def text(key: str, default=""):
        value = raw.get(key, default)
        return default if value is None else str(value)

    def path(value: str) -> Path:
        p = Path(value.replace("{scratch_dir}", str(settings.scratch))
                 .replace("{models_dir}", str(settings.models))).expanduser()
        return p if p.is_absolute() else (run_dir / p).resolve()

    controls = {}
    for key in controls_known:
        if key in raw:
            value = _bool(raw[key]) if key in BOOLS else raw[key]
            if key == "lr_scheduler":
                value = LR_SCHEDULERS.get(str(value), value)
            elif key == "dataset_type":
                value = DATASET_TYPES.get(str(value), value)
            controls[key] = value
    formatting = text("input_formatting")
    if "{input}" in formatting:
        if "prompt" in raw:
            problems.error("input_formatting", "both input_formatting (as a prompt template) and prompt are set",
                           "keep one of them")
        controls["prompt"] = formatting
        formatting = ""
    run = text("my_wandb_run_name") or run_dir.name
    experiment = text("experiment_name") or run_dir.parent.name
    # model
    model_name = text("model_name", DEFAULT_MODEL)
    models_dir = path(text("models_dir")) if text("models_dir") else settings.models
    model = {"name": model_name, "path": str(path(text("model_dir")) if text("model_dir") else models_dir / model_name)}
    if text("model_registry"):
        model["registry"] = text("model_registry")
    if "model_component" in raw:
        model["component"] = raw["model_component"]
    # data
    if text("dataset_path"):
        dataset = path(text("dataset_path"))
    else:
        label = text("dataset_label")
        if not label:
            problems.error("dataset_label", "missing", "give dataset_label (+ dataset_dir) or dataset_path")
        ext = text("dataset_ext", ".json") or ".json"
        ext = ext if ext.startswith(".") else "." + ext
        if ext != ".json":
            problems.error("dataset_ext", f"{ext!r} is not supported", "use .json (one file with train/validation)")
        base = text("dataset_dir") or text("input_dir_base")
        folder = path(base) if base else settings.scratch / "data"
        dataset = folder / formatting / f"{label}{ext}" if formatting else folder / f"{label}{ext}"
    training = {"path": str(dataset)}
    if text("dataset_label"):
        training["dataset_label"] = text("dataset_label")
    objective = text("objective", SFT).lower()
    if objective not in OBJECTIVES:
        problems.error("objective", f"{objective!r} is not an objective", "use sft (default) or dpo")
    kind = for_objective(objective if objective in OBJECTIVES else SFT)
    slurm = {}
    for key in SLURM:
        if key in raw and raw[key] not in (None, ""):
            slurm[key] = raw[key]
            if key in ("gpus", "cpus") and isinstance(raw[key], str) and raw[key].isdigit():
                slurm[key] = int(raw[key])
    output = {}
    if "my_wandb_project" in raw:
        output["wandb_project"] = text("my_wandb_project")
    if text("my_wandb_entity"):
        output["wandb_entity"] = text("my_wandb_entity")
    design = {
        "experiment": {"name": experiment, "question": f"manual run from {SETUP_FILE}", "date": "2000-01-01",
                       "type": "experiment", "dir": str(run_dir.parent)},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "controls": controls,
        "models": {"base": [model]},
        "data": {kind.data_key: training},
        "output": output,
        "runs": [{"name": run, "type": kind.name, "model": model_name, **({"slurm_overrides": slurm} if slurm else {})}],
    }
    extras = {
        "output_dir": path(text("output_dir_base")) / f"ck-out-{run}" if text("output_dir_base") else None,
        "base_checkpoint": path(text("base_checkpoint_dir")) if text("base_checkpoint_dir") else None,
        "env": {k: raw[k] for k in ENVIRONMENT if raw.get(k) not in (None, "")},
        "recipe": text("custom_recipe"),
        "warnings": problems.warnings,
    }
    if problems.errors:
        raise ValidationFailed(problems.problems)
    return design, extras


def _settings_with_env(settings, env: dict):
    changes = {}
    if "conda_env" in env:
        changes["conda_env"] = str(env["conda_env"])
    if "venv" in env:
        changes["venv"] = str(env["venv"])
    if "modules" in env:
        mods = env["modules"]
        changes["module_loads"] = [m.strip() for m in (mods if isinstance(mods, list) else str(mods).split(",")) if m.strip()]
    return replace(settings, **changes) if changes else settings


def _adopt_experiment_manifest(run_dir: Path) -> None:
    """Files scaffold rendered into this run dir count as ours (not as user edits) for the run's own manifest."""
    from cruijff_kit.files import read_json, sha256, write_json

    parent = read_json(layout.manifest_file(run_dir.parent)) or {}
    mine_path = layout.manifest_file(run_dir)
    mine = read_json(mine_path) or {}
    changed = False
    for name in (layout.FINETUNE_CONFIG, layout.FINETUNE_SCRIPT):
        target, key = run_dir / name, f"{run_dir.name}/{name}"
        if name not in mine and key in parent and target.exists() and parent[key] == sha256(target.read_bytes()):
            mine[name] = parent[key]
            changed = True
    if changed:
        write_json(mine_path, mine)


def setup_finetune(run_dir: str | Path = ".", *, config: str = SETUP_FILE, settings=None, dry_run: bool = False,
                   force: bool = False):
    """Render DIR/finetune.yaml and DIR/finetune.slurm from DIR/setup_finetune.yaml.
    Returns (RenderSet, WriteReport or None for a dry run, warnings)."""
    from cruijff_kit.experiment.load import build, check, read_yaml
    from cruijff_kit.render import RenderSet
    from cruijff_kit.settings import load_settings
    from cruijff_kit.workers.torchtune import trainer as worker

    run_dir = Path(run_dir).resolve()
    source = run_dir / config
    where = str(source)
    if not source.is_file():
        raise UserError(f"no {config} here", where=str(run_dir),
                        hint="create it (see `cruijff-kit setup_finetune --help`) or pass the run directory")
    raw = read_yaml(source)
    settings = settings or load_settings()
    design, extras = translate(raw, run_dir, settings, where)
    problems = check(design, where)
    translated = _translated(problems.problems, where)
    if problems.errors:
        raise ValidationFailed(translated)
    exp = build(design, source, settings)
    run_settings = _settings_with_env(settings, extras["env"])
    plan_problems = ProblemList(where)
    plan = worker.plan_run(exp, exp.runs[0], run_settings, plan_problems, run_dir=run_dir,
                           output_dir=extras["output_dir"], base_checkpoint=extras["base_checkpoint"])
    found = _translated(plan_problems.problems, where)
    if extras["recipe"] and plan is not None:
        canonical = worker.resolve_recipe(extras["recipe"])
        if not canonical:
            found.append(Problem(where, "custom_recipe", f"{extras['recipe']!r} is not a recipe cruijff_kit knows",
                                 closest(extras["recipe"], worker.RECIPE_ALIASES)
                                 or f"use {worker.RECIPE_MODULE}"))
        elif canonical != plan.recipe:
            found.append(Problem(where, "custom_recipe", f"{extras['recipe']} does not fit this run: "
                                 f"{plan.res.get('gpus')} GPU(s) select {plan.recipe}",
                                 f"set custom_recipe: {plan.recipe} or change gpus"))
    if any(p.level == "error" for p in found) or plan is None:
        raise ValidationFailed(found or translated)
    warnings = extras["warnings"] + [p for p in translated + found if p.level == "warning"]
    texts = worker.render_run(plan, exp, run_settings)
    files = RenderSet(run_dir)
    for name in (layout.FINETUNE_CONFIG, layout.FINETUNE_SCRIPT):
        files.add(name, texts[name], executable=name.endswith(".slurm"))
    if dry_run:
        return files, None, warnings
    _adopt_experiment_manifest(run_dir)
    report = files.commit(force=force)
    if plan.output_dir.is_absolute():
        plan.output_dir.mkdir(parents=True, exist_ok=True)  # SLURM's --output directory
    return files, report, warnings


def main(args) -> int:
    files, report, warnings = setup_finetune(args.dir, config=args.config, dry_run=args.dry_run, force=args.force)
    for w in warnings:
        print(w.line(), file=sys.stderr)
    if report is None:
        for rel, (text, _mode) in sorted(files.files.items()):
            print(f"--- {files.root / rel}\n{text}")
        return 0
    print(f"{files.root}: {report.summary()}")
    for rel in report.written:
        print(f"  wrote {rel}")
    for rel in report.preserved:
        print(f"  kept {rel} (edited by you; --force overwrites)")
    print(f"Next: sbatch {files.root / layout.FINETUNE_SCRIPT}   (or: bash {files.root / layout.FINETUNE_SCRIPT})")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("setup_finetune")

"""torchtune preparation worker: every training run -> setup_finetune.yaml, finetune.yaml, finetune.slurm.

`check(exp, settings, problems)` collects every scaffold-time problem (unknown model, a control that
cannot be honoured, unsafe paths, ...); `render(exp, settings, files)` adds each training run's three
files to the RenderSet and returns its train JobSpec. `setup_finetune` (the manual path) builds a one-run
Experiment and calls `plan_run` + `render_run` below: there is one rendering path, and both paths write
byte-identical files.

What reaches finetune.yaml (a complete torchtune 0.6.1 config plus our recipe's `dataset_val`,
`batch_size_val`, `run_val_every_n_steps`, `run_val_at_epoch_end`, `extra_metric_loggers`):
  * model: the registry's LoRA builder (+ architecture kwargs for the tiny model), lora rank / alpha
    (default 2 x rank) / dropout / attention modules / MLP;
  * tokenizer (files from the model dir, max_seq_len), checkpointer (HF files, model_type);
  * dataset / dataset_val: `cruijff_kit.tools.torchtune.datasets.input_output_dataset` (fine-tuned runs) or
    `...preference.preference_dataset` (dpo runs, loss DPOLoss with dpo_beta) with the data file,
    dataset_type (base models default to text_completion), prompt, system prompt, train_on_input, packed;
  * optimizer AdamW (lr, weight decay; fused on CUDA), scheduler cosine with warmup, or `constant` =
    the same torchtune scheduler with num_cycles 0 (linear warmup, then flat);
  * epochs, batch sizes, gradient accumulation, max_steps_per_epoch, seed, log_every_n_steps,
    adapter-only saving, device, dtype;
  * validation (our recipe validates only when `dataset_val` is present): validation_during_training
    false -> no dataset_val and run_val_every_n_steps 0; true -> dataset_val, validation every
    run_val_every_n_steps optimizer steps (0 = only at epoch ends) and at every epoch end;
  * logging: DiskLogger under output_dir/logs always, plus W&B (project, entity, group = experiment, name =
    run; offline unless a key is set) in `extra_metric_loggers`.
Models that need several GPUs use torchtune's `lora_finetune_distributed` recipe under
`tune run --nproc_per_node N` (no validation loop, no W&B, no DPO: a design asking for those is an error).

A run with `base_run` starts from that run's checkpoint `{base output_dir}/epoch_{N}/` (the merged model
our recipe writes; N = the base run's last epoch for `last`, or the given number; the tokenizer still
comes from the model dir). `base_epoch: best` is only known once the base run has trained: finetune.yaml
names the last epoch and finetune.slurm overrides `checkpointer.checkpoint_dir` with what
`python -m cruijff_kit.tools.torchtune.pick_epoch BASE_OUTPUT_DIR best --dir` prints (lowest epoch-end
val_loss). The base run must save merged weights (save_adapter_weights_only: false).
Free text (prompts) goes only into YAML files, quoted, with OmegaConf's `${` escaped; every value in a
shell script is shell-quoted and every path that reaches a job script is checked for unsafe characters.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cruijff_kit.errors import ProblemList
from cruijff_kit.compute.estimates import recommended_mem, scaffold_estimate
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.model import Experiment, Run
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.experiment.resolve import CHAT_COMPLETION, TEXT_COMPLETION, resolve_run
from cruijff_kit.experiment.runtypes import DPO
from cruijff_kit.jobscript import (
    SBATCH_KEYS, job_environment, job_overrides, resources, sbatch_value_problem, unsafe_path, vram_problem,
)
from cruijff_kit.models import registry
from cruijff_kit.render import render as render_template
from cruijff_kit.render import yaml_scalar
from cruijff_kit.settings import Settings
from cruijff_kit.workers.torchtune.lookups import (  # noqa: F401 (re-exported)
    CHARS_PER_TOKEN,
    DATASET_COMPONENT,
    DISTRIBUTED_RECIPE,
    DPO_RECIPE_MODULE,
    PREFERENCE_COMPONENT,
    RECIPE_ALIASES,
    RECIPE_MODULE,
    longest_example,
    module_file,
    recipe_arg,
    resolve_recipe,
    split_sizes,
)

FILES = layout.RUN_FILES


# -- YAML scalars ----------------------------------------------------------------------------------
_OMEGA = re.compile(r"(\\*)\$\{")


def omegaconf_escape(text: str) -> str:
    r"""`${` made literal for OmegaConf (torchtune's config loader): `\${`, earlier backslashes doubled."""
    return _OMEGA.sub(lambda m: m.group(1) * 2 + "\\${", text)


def yv(value, *, omegaconf: bool = False) -> str:
    """YAML text for a value (render.yaml_scalar, the one scalar writer; lists and mappings in flow style).
    With omegaconf, `${` in strings is escaped so OmegaConf (torchtune's loader) keeps it literal."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yv(v, omegaconf=omegaconf) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yv(v, omegaconf=omegaconf)}" for k, v in value.items()) + "}"
    return _scalar(value, type(value), omegaconf)


@lru_cache(maxsize=65536)  # a sweep repeats the same values run after run
def _scalar(value, _type, omegaconf: bool) -> str:
    if omegaconf and isinstance(value, str) and "${" in value:
        value = omegaconf_escape(value)
    return yaml_scalar(value)


# -- the plan of one training run ------------------------------------------------------------------
@dataclass
class Plan:
    """Everything one training run's files need, resolved once."""

    exp_name: str
    run: Run
    run_index: int
    spec: registry.ModelSpec | None
    model_dir: Path
    run_dir: Path  # absolute
    rel_dir: str  # relative to the experiment dir
    output_dir: Path
    dataset: Path | None
    checkpoint_dir: Path
    base_checkpoint: Path | None
    dataset_type: str
    validation: bool
    val_every: int
    batch_size_val: int
    res: dict
    recipe: str  # canonical module name or torchtune recipe name
    recipe_file: str  # what `tune run` gets (recipe_arg)
    nproc: int
    wandb: dict = field(default_factory=dict)
    model_label: str = ""
    pick_best_from: str = ""  # base_epoch best: the base run's output_dir, resolved in the job (pick_epoch)

    @property
    def dpo(self) -> bool:
        return self.run.kind.objective == DPO


def plan_run(exp: Experiment, run: Run, settings: Settings, problems: ProblemList, *, index: int = 0,
             cache: dict | None = None, run_dir: Path | None = None, output_dir: Path | None = None,
             base_checkpoint: Path | None = None) -> Plan | None:
    """Resolve one training run; add every problem found to `problems` (None when it cannot be planned)."""
    cache = {} if cache is None else cache
    c = run.controls
    at = f"runs[{index}]"

    def param(key: str) -> str:
        return f"{at}.parameters.{key}" if key in (run.parameters or {}) else f"controls.{key}"

    dpo = run.kind.objective == DPO
    resolved = resolve_run(exp, run, settings)
    if dpo and c.packed:
        problems.error(param("packed"), "dpo runs cannot pack sequences", "set packed: false for this run")
    if dpo and c.assistant_prefix:
        problems.error(param("assistant_prefix"), "dpo runs take no assistant prefix (the preference data has "
                       "the whole response)", "remove assistant_prefix for this run")
    if dpo and c.train_on_input:
        problems.error(param("train_on_input"), "dpo trains on the responses only (the prompt is always masked)",
                       "set train_on_input: false for this run")
    model, spec, err = resolved.model, resolved.spec, resolved.spec_error  # model inherited along base_run
    if err is not None:
        for p in err.problems:
            problems.error(p.path or f"{at}.model", p.message, p.hint)
        return None
    # paths
    run_dir = run_dir or layout.run_dir(exp.dir, run.name)
    out = output_dir or resolved.output_dir
    for label, path, key in ((("experiment dir", exp.dir, "experiment.dir"), ("output dir", out, "scratch dir"),
                               ("model dir", model.path, f"models.base[{exp.models.index(model)}].path"))):
        if unsafe_path(path):
            problems.error(key, f"the {label} {str(path)!r} has characters job scripts cannot take safely",
                           "use letters, digits and . _ - / only (no spaces, quotes, $ or ..)")
    dataset = resolved.data_file
    if dataset is None:
        problems.error(at, "this run trains but the design has no training data",
                       "add data.preference" if dpo else "add data.training")
        return None
    if ("sizes", dataset) not in cache:
        cache["sizes", dataset] = split_sizes(str(dataset))
    sizes = cache["sizes", dataset]
    generated = dpo and exp.preference_data is not None and exp.preference_data.generate
    if sizes is None and not generated:  # a generated preference file is written by the prefs job
        problems.warn(f"data.{run.kind.data_key}.path", f"{dataset} not found (yet)",
                      "create it before the run starts (the job reads it then)")
    if sizes is not None and not dpo:
        chars = longest_example(str(dataset))
        prompt_chars = len(c.prompt) + len(c.system_prompt) + len(c.assistant_prefix)
        tokens = (chars + prompt_chars) // CHARS_PER_TOKEN + 16  # + chat markup
        if chars and tokens > c.max_seq_len:
            problems.warn(param("max_seq_len"), f"the longest training example of {dataset} is about {tokens} "
                          f"tokens but max_seq_len is {c.max_seq_len}: longer examples are truncated",
                          "raise max_seq_len (upstream cruijff_kit's default is 2048) or shorten the examples")
    # dataset type: base models get text_completion unless the design insists (experiment.resolve)
    dataset_type = resolved.dataset_type
    if not spec.instruct and resolved.dataset_type_explicit and dataset_type == CHAT_COMPLETION:
        problems.warn(param("dataset_type"), f"{spec.key} is a base model but the run uses chat_completion",
                      "base models have no trained chat template; text_completion is the usual choice")
    if dataset_type == TEXT_COMPLETION and c.system_prompt:
        problems.error(param("system_prompt"), "text_completion has no system turn, so the system prompt "
                       "would be dropped", "put it into the prompt template or use chat_completion")
    # validation: our recipes validate only when dataset_val is given (every N steps, 0 = epoch ends only)
    validation = bool(c.validation_during_training)
    if validation and sizes is not None and not sizes.get("validation"):
        problems.error(param("validation_during_training"), f"{dataset} has no validation split",
                       "add a \"validation\" list to the file or set validation_during_training: false")
    val_every = c.run_val_every_n_steps if validation else 0
    batch_size_val = c.batch_size_val or c.batch_size
    # resources and recipe
    defaults = dict(spec.resources)
    overrides = job_overrides(run, "train")
    if c.device != "cuda" and "gpus" not in overrides:
        overrides["gpus"] = 0
    res = resources(settings, overrides, defaults, vram_gb=spec.min_gpu_vram_gb)
    vram_problem(problems, settings, spec, res, overrides, at)
    if run.trains:  # the estimate's --time (and --mem, from a prior run) unless the design overrides them
        estimate, prior = scaffold_estimate(exp, run, settings)
        if "time" not in overrides:
            res["time"] = estimate.recommended_time
        if "mem" not in overrides and recommended_mem(prior):
            res["mem"] = recommended_mem(prior)
    for key in SBATCH_KEYS:
        why = sbatch_value_problem(key, res.get(key))
        if why:
            problems.error(f"{at}.slurm_overrides.{key}" if key in overrides else f"(claude.local.md) {key}",
                           f"{res[key]!r} {why}", "remove spaces and quotes")
    gpus = int(res.get("gpus") or 0)
    if c.device == "cuda" and gpus == 0:
        problems.error(param("device"), "device: cuda but the job requests no GPU",
                       "use device: cpu, or request GPUs (slurm_overrides.gpus / Default GPUs in claude.local.md)")
    if c.device == "cuda" and 0 < gpus < spec.gpus:
        problems.warn(f"{at}.slurm_overrides.gpus", f"{spec.key} normally trains on {spec.gpus} GPUs, "
                      f"this run asks for {gpus}", "expect out-of-memory errors")
    if c.device == "cuda" and gpus > 1:
        recipe, nproc = DISTRIBUTED_RECIPE, gpus
        recipe_file = DISTRIBUTED_RECIPE
        if dpo:
            problems.error(f"{at}.type", f"dpo needs one device, but this run trains on {gpus} GPUs",
                           "use a model that fits one GPU or slurm_overrides.gpus: 1")
        if validation:
            problems.error(param("validation_during_training"), f"{spec.key} trains on {gpus} GPUs with "
                           "torchtune's lora_finetune_distributed, which has no validation loop",
                           "set validation_during_training: false for this run")
            validation, val_every = False, 0
        if exp.wandb_project:
            problems.warn(at, "W&B logging is not available with the distributed recipe",
                          "metrics go to output_dir/logs (DiskLogger)")
    else:
        recipe, nproc = (DPO_RECIPE_MODULE if dpo else RECIPE_MODULE), 1
        recipe_file = recipe_arg(recipe)
        if not module_file(recipe):
            problems.error(at, f"recipe {recipe} not found in this installation",
                           "reinstall cruijff_kit (pip install -e .)")
    # base run
    ckpt_dir = model.path
    pick_best_from = ""
    if run.base_run and base_checkpoint is None:
        base = resolved.base_run
        if base.controls.save_adapter_weights_only:
            problems.error(f"{at}.base_run", f"'{base.name}' saves adapter weights only, so there is no "
                           "merged model to start from", f"set save_adapter_weights_only: false for {base.name}")
        # base_epoch best is known only once the base run has trained: picked in the job script, and
        # finetune.yaml names the last epoch until the job overrides it
        pick_best_from = str(resolved.pick_best_from or "")
        base_checkpoint = resolved.base_checkpoint
    if base_checkpoint is not None:
        ckpt_dir = base_checkpoint
    wandb = {}
    if nproc == 1 and exp.wandb_project:
        wandb = {"project": exp.wandb_project, "entity": exp.wandb_entity or None, "group": exp.name,
                 "name": run.name}
    try:
        rel = str(run_dir.relative_to(exp.dir))
    except ValueError:
        rel = str(run_dir)
    plan = Plan(exp.name, run, index, spec, model.path, run_dir, rel, out, dataset, ckpt_dir, base_checkpoint,
                dataset_type, validation, val_every, batch_size_val, res, recipe,
                recipe_file, nproc, wandb, model.name if model.name == spec.key else f"{model.name} ({spec.key})")
    plan.pick_best_from = pick_best_from
    return plan


# -- rendering -------------------------------------------------------------------------------------
def _lr_scheduler(c) -> dict:
    if c.lr_scheduler == "constant":
        return {"num_warmup_steps": yv(c.num_warmup_steps), "num_cycles": yv(0.0),
                "label": "constant after warmup"}
    return {"num_warmup_steps": yv(c.num_warmup_steps), "num_cycles": None, "label": ""}


def finetune_yaml(plan: Plan) -> str:
    c, spec = plan.run.controls, plan.spec

    def t(value):
        return yv(value, omegaconf=True)

    data = {"source": t(str(plan.dataset)), "split": "train", "dataset_type": plan.dataset_type,
            "prompt": t(c.prompt), "system_prompt": t(c.system_prompt)}
    if c.assistant_prefix:  # only when set: designs without one render as before
        data["assistant_prefix"] = t(c.assistant_prefix)
    if plan.dpo:
        component = PREFERENCE_COMPONENT
        loss = {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": t(float(c.dpo_beta))}
    else:
        component = DATASET_COMPONENT
        data.update({"train_on_input": t(c.train_on_input), "packed": t(c.packed)})
        loss = {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"}
    data_val = {**data, "split": "validation"}
    if "packed" in data_val:
        data_val["packed"] = "false"
    return render_template(
        "torchtune/finetune.yaml.j2", run=plan.run.name, experiment=plan.exp_name,
        recipe_label=plan.recipe.rsplit(".", 1)[-1], objective="DPO" if plan.dpo else "supervised",
        model_label=plan.model_label, output_dir=t(str(plan.output_dir)),
        model={"component": spec.component, "arch": {k: t(v) for k, v in spec.arch.items()},
               "lora_attn_modules": t(list(c.lora_attn_modules)), "apply_lora_to_mlp": t(c.apply_lora_to_mlp),
               "lora_rank": t(c.lora_rank), "lora_alpha": t(c.lora_alpha), "lora_dropout": t(c.lora_dropout)},
        tokenizer={"component": spec.tokenizer,
                   "files": {k: t(str(plan.model_dir / v)) for k, v in spec.tokenizer_files.items()},
                   "args": {k: t(v) for k, v in spec.tokenizer_args.items()}, "max_seq_len": t(c.max_seq_len)},
        checkpointer={"checkpoint_dir": t(str(plan.checkpoint_dir)), "checkpoint_files": t(spec.checkpoint_files),
                      "model_type": spec.model_type},
        save_adapter_weights_only=t(c.save_adapter_weights_only),
        dataset_component=component, dataset=data, dataset_val=data_val if plan.validation else None,
        seed=t(c.seed), batch_size=t(c.batch_size), run_val_every_n_steps=t(plan.val_every),
        run_val_at_epoch_end=t(plan.validation), batch_size_val=t(plan.batch_size_val),
        optimizer={"fused": t(c.device == "cuda"), "weight_decay": t(float(c.weight_decay)), "lr": t(float(c.lr))},
        lr_scheduler=_lr_scheduler(c), loss=loss, epochs=t(c.epochs), max_steps_per_epoch=t(c.max_steps_per_epoch),
        gradient_accumulation_steps=t(c.gradient_accumulation_steps),
        wandb={k: t(v) for k, v in plan.wandb.items()} if plan.wandb else {},
        log_every_n_steps=t(c.log_every_n_steps), log_peak_memory_stats=t(c.device == "cuda"),
        device=c.device, dtype=c.dtype, activation_checkpointing=t(spec.size_gb >= 5 and c.device == "cuda"))  # torchtune 0.6.1 configs: on from 3B


def setup_yaml(plan: Plan, exp: Experiment) -> str:
    """The run's resolved parameters in the legacy flat setup_finetune.yaml format."""
    c, spec = plan.run.controls, plan.spec
    controls = {
        "prompt": c.prompt, "system_prompt": c.system_prompt, "dataset_type": plan.dataset_type,
        "train_on_input": c.train_on_input, "epochs": c.epochs, "batch_size": c.batch_size,
        "batch_size_val": plan.batch_size_val, "gradient_accumulation_steps": c.gradient_accumulation_steps,
        "lr": float(c.lr), "lr_scheduler": c.lr_scheduler, "num_warmup_steps": c.num_warmup_steps,
        "weight_decay": float(c.weight_decay), "lora_rank": c.lora_rank, "lora_alpha": c.lora_alpha,
        "lora_dropout": c.lora_dropout, "lora_attn_modules": list(c.lora_attn_modules),
        "apply_lora_to_mlp": c.apply_lora_to_mlp, "max_seq_len": c.max_seq_len, "packed": c.packed,
        "seed": c.seed, "validation_during_training": plan.validation,
        "run_val_every_n_steps": plan.val_every, "max_steps_per_epoch": c.max_steps_per_epoch,
        "save_adapter_weights_only": c.save_adapter_weights_only, "log_every_n_steps": c.log_every_n_steps,
        "device": c.device, "dtype": c.dtype,
    }
    if plan.dpo:
        controls["dpo_beta"] = float(c.dpo_beta)
    model = exp.model(plan.run.model) if plan.run.model in {m.name for m in exp.models} else None
    ident = {
        "objective": plan.run.kind.objective,
        "experiment_name": exp.name, "my_wandb_project": exp.wandb_project, "my_wandb_entity": exp.wandb_entity,
        "my_wandb_run_name": plan.run.name, "model_name": model.name if model is not None else spec.key,
    }
    if model is not None and model.component:
        ident["model_component"] = model.component
    elif model is not None and model.name != spec.key:
        ident["model_registry"] = spec.key
    ident["model_dir"] = str(plan.model_dir)
    ident.update({"dataset_label": plan.run.dataset_label, "dataset_path": str(plan.dataset),
                  "output_dir_base": str(plan.output_dir.parent)})
    if plan.base_checkpoint is not None:
        ident["base_checkpoint_dir"] = str(plan.base_checkpoint)
    slurm = {k: plan.res[k] for k in ("time", "gpus", "cpus", "mem", "account", "partition", "constraint")
             if plan.res.get(k) not in (None, "")}
    if "gpus" not in slurm:
        slurm["gpus"] = 0
    return render_template("torchtune/setup_finetune.yaml.j2", run=plan.run.name, experiment=exp.name,
                  ident={k: yv(v) for k, v in ident.items()}, controls={k: yv(v) for k, v in controls.items()},
                  recipe=yv(plan.recipe), slurm={k: yv(v) for k, v in slurm.items()})


def finetune_slurm(plan: Plan, settings: Settings, exp_dir: Path, source: str, env: dict | None = None) -> str:
    script = plan.run_dir / layout.FINETUNE_SCRIPT
    env = env or job_environment(settings, exp_dir)
    python = "python" if (env["venv"] or env["conda_env"]) else sys.executable
    return render_template("torchtune/finetune.slurm.j2", job_name=f"{plan.run.name}.train", job_id=f"{plan.run.name}.train",
                  log=str(layout.job_log(plan.output_dir)), res=plan.res, env=env,
                  workdir=str(plan.run_dir), exit_code_file=layout.exit_code_file(script), source=source,
                  run=plan.run.name, output_dir=str(plan.output_dir), recipe=plan.recipe_file,
                  recipe_label=plan.recipe.rsplit(".", 1)[-1],
                  nproc=plan.nproc, config=str(plan.run_dir / layout.FINETUNE_CONFIG), pick_best_from=plan.pick_best_from,
                  provenance={"python": python, "files": {"dataset": str(plan.dataset)} if plan.dataset else {},
                              "models": {"base_model": str(plan.model_dir)}})


def render_run(plan: Plan, exp: Experiment, settings: Settings, env: dict | None = None) -> dict:
    """{file name: text} for one training run, byte-identical from scaffold and from setup_finetune
    (the job script names the run's setup_finetune.yaml as its source: its resolved parameters)."""
    source = str(plan.run_dir / layout.SETUP_FINETUNE)
    return {layout.SETUP_FINETUNE: setup_yaml(plan, exp), layout.FINETUNE_CONFIG: finetune_yaml(plan),
            layout.FINETUNE_SCRIPT: finetune_slurm(plan, settings, exp.dir, source, env)}


def job_spec(plan: Plan) -> JobSpec:
    run = plan.run
    return JobSpec(id=f"{run.name}.train", kind="train", run=run.name, script=f"{plan.rel_dir}/{layout.FINETUNE_SCRIPT}",
                   after=[f"{run.base_run}.train"] if run.base_run else [],
                   log=str(layout.job_log(plan.output_dir)), output_dir=str(plan.output_dir), stage=run.stage,
                   meta={"config": f"{plan.rel_dir}/{layout.FINETUNE_CONFIG}", "model": run.model, "epochs": run.controls.epochs,
                         "gpus": int(plan.res.get("gpus") or 0), "recipe": plan.recipe,
                         "objective": run.kind.objective, "dataset_type": plan.dataset_type,
                         "chat_template": plan.dataset_type == CHAT_COMPLETION,
                         **({"base_checkpoint": str(plan.base_checkpoint)} if plan.base_checkpoint else {}),
                         **({"base_epoch": "best"} if plan.pick_best_from else {})})


# -- the worker interface --------------------------------------------------------------------------
_LAST: list = []  # (exp, settings, plans, problems) of the last check(): render() right after reuses it


def _plans(exp: Experiment, settings: Settings) -> tuple[list[Plan], list]:
    """Plans of every training run and the problems found; computed once per (exp, settings) pair."""
    if _LAST and _LAST[0] is exp and _LAST[1] is settings:
        return _LAST[2], _LAST[3]
    problems = ProblemList(str(exp.source))
    cache: dict = {}
    plans = []
    for i, run in enumerate(exp.runs):
        if run.trains:
            plan = plan_run(exp, run, settings, problems, index=i, cache=cache)
            if plan is not None:
                plans.append(plan)
    unique = list({p.line(): p for p in problems.problems}.values())  # e.g. one unsafe dir, not one per run
    _LAST[:] = [exp, settings, plans, unique]
    return plans, unique


def check(exp: Experiment, settings: Settings, problems: ProblemList) -> None:
    _, found = _plans(exp, settings)
    for p in found:
        (problems.error if p.level == "error" else problems.warn)(p.path, p.message, p.hint)


def render(exp: Experiment, settings: Settings, files, config_overlay=None) -> list[JobSpec]:
    """`config_overlay(plan, text) -> text`, when given, rewrites each finetune.yaml (`generate`: a
    torchtune built-in config under ours, the sweep's _override over it)."""
    plans, found = _plans(exp, settings)
    errors = ProblemList(str(exp.source), [p for p in found if p.level == "error"])
    errors.raise_if_errors()
    env = job_environment(settings, exp.dir)
    jobs = []
    for plan in plans:
        for name, text in render_run(plan, exp, settings, env).items():
            if name == layout.FINETUNE_CONFIG and config_overlay is not None:
                text = config_overlay(plan, text)
            files.add(f"{plan.rel_dir}/{name}", text, executable=name.endswith(".slurm"))
        jobs.append(job_spec(plan))
    return jobs


__all__ = ["check", "render", "plan_run", "render_run", "job_spec", "Plan", "yv", "resolve_recipe",
           "module_file", "recipe_arg", "RECIPE_MODULE", "DPO_RECIPE_MODULE", "DISTRIBUTED_RECIPE", "RECIPE_ALIASES", "FILES"]

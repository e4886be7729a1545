"""DIR/experiment.yaml (a lightweight sweep for `cruijff-kit generate`) -> the typed `Experiment`.

The sweep file names a torchtune built-in config, a grid of `variables`, the `controls` every run
shares (our control names; `learning_rate` is accepted for `lr`), an optional `controls.dataset`,
`controls._override` (deep-merged into each torchtune config last) and the inspect-ai tasks to run on
each fine-tuned model. It becomes the same typed model a design becomes (`Experiment` with one
fine-tuned `Run` per grid point, `Controls` with the grid point applied, `Task`s and an evaluation
matrix), so the torchtune worker's control -> config-key mapping and the inspect worker's eval
settings are shared with `scaffold`. What is specific to `generate` is kept beside it in `Sweep`:
the built-in config to start from, the dataset block, `_override`, task arguments and output dirs.

    experiment: {name, framework: torchtune, question, hypothesis, researcher, date, tags}
    framework_config: {base_config: llama3_2/1B_lora_single_device}   # or a .yaml file under DIR
    variables: {lora_rank: [8, 16], learning_rate: [1e-4, 3e-4]}       # the grid (product, in order)
    controls:  {learning_rate: 3e-4, lora_rank: 8, ..., dataset: data/train.json, _override: {...}}
    evaluation: {enabled, framework: inspect, checkpoint: last, model_format: hf, tasks_dir: evals/,
                 tasks: [{name, file, function, args}], limit, max_tokens}
    output: {configs_dir: configs, results_dir: results, eval_results_dir: eval_results, slurm_scripts: true}
    slurm: {time, gpus, cpus, mem, account, partition, constraint}     # optional, for the sweep scripts
    profiles: {tiny: {...}}                                             # deep-merged with --profile NAME

`controls.dataset` is either a path (relative to DIR) to our JSON format
(`{"train": [{"input", "output"}], "validation": [...]}`, read by
`cruijff_kit.tools.torchtune.datasets.input_output_dataset` with the prompt / system_prompt /
dataset_type / train_on_input / packed controls) or a torchtune dataset block with a `_component_`
(used as given). Without it the built-in config's dataset stays. String values of `_override`,
`dataset`, `base_config`, `output.results_dir` and `output.eval_results_dir` may use `{models_dir}` and
`{scratch_dir}` (claude.local.md); results may live outside DIR, configs_dir must be inside it.
Nothing here imports torch, torchtune or inspect_ai.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache, cache
from pathlib import Path

from cruijff_kit.errors import Problem, ProblemList, UserError, ValidationFailed, closest
from cruijff_kit.experiment.model import BaseModel, Controls, Dataset, Evaluation, Experiment, Run, Task
from cruijff_kit.settings import Settings, load_settings

SWEEP_FILE = "experiment.yaml"
RECIPE = "lora_finetune_single_device"  # torchtune's own recipe, run by name
DATASET_COMPONENT = "cruijff_kit.tools.torchtune.datasets.input_output_dataset"
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
WARN_VARIABLES_ABOVE = 2
CONFIRM_RUNS_FROM = 100

TOP_KEYS = ("experiment", "framework_config", "variables", "controls", "evaluation", "output", "slurm", "profiles")
EXPERIMENT_KEYS = ("name", "framework", "question", "hypothesis", "researcher", "date", "tags", "purpose",
                   "project")
FRAMEWORK_KEYS = ("base_config",)
EVALUATION_KEYS = ("enabled", "framework", "checkpoint", "model_format", "tasks_dir", "tasks", "limit",
                   "max_tokens")
TASK_KEYS = ("name", "file", "function", "args")
OUTPUT_KEYS = ("configs_dir", "results_dir", "eval_results_dir", "slurm_scripts")
SLURM_KEYS = ("time", "gpus", "cpus", "mem", "account", "partition", "constraint")
OUTPUT_DEFAULTS = {"configs_dir": "configs", "results_dir": "results", "eval_results_dir": "eval_results"}
ALIASES = {"learning_rate": "lr"}  # sweep name -> control name
# controls of our own recipe (validation loop, DPO): torchtune's lora_finetune_single_device has none
OUR_RECIPE_ONLY = {
    "batch_size_val": "torchtune's lora_finetune_single_device has no validation loop",
    "run_val_every_n_steps": "torchtune's lora_finetune_single_device has no validation loop",
    "validation_during_training": "torchtune's lora_finetune_single_device has no validation loop",
    "dpo_beta": "generate runs supervised LoRA fine-tuning only",
}
DATASET_CONTROLS = ("prompt", "system_prompt", "dataset_type")  # only for a JSON dataset (our component)


# -- the control -> torchtune key mapping ---------------------------------------------------------
# It belongs with the torchtune worker (cruijff_kit/workers/torchtune.py), whose finetune.yaml template
# applies the same controls; tests/test_generate.py checks, control by control, that both agree.
# control -> the torchtune config keys (dotted) it sets, as templates/torchtune/finetune.yaml.j2 renders it
CONTROL_KEYS: dict[str, tuple[str, ...]] = {
    "lr": ("optimizer.lr",),
    "weight_decay": ("optimizer.weight_decay",),
    "lora_rank": ("model.lora_rank",),
    "lora_alpha": ("model.lora_alpha",),
    "lora_dropout": ("model.lora_dropout",),
    "lora_attn_modules": ("model.lora_attn_modules",),
    "apply_lora_to_mlp": ("model.apply_lora_to_mlp",),
    "max_seq_len": ("tokenizer.max_seq_len",),
    "epochs": ("epochs",),
    "batch_size": ("batch_size",),
    "gradient_accumulation_steps": ("gradient_accumulation_steps",),
    "max_steps_per_epoch": ("max_steps_per_epoch",),
    "seed": ("seed",),
    "log_every_n_steps": ("log_every_n_steps",),
    "save_adapter_weights_only": ("save_adapter_weights_only",),
    "dtype": ("dtype",),
    "device": ("device", "optimizer.fused", "log_peak_memory_stats"),
    "num_warmup_steps": ("lr_scheduler.num_warmup_steps",),
    "lr_scheduler": ("lr_scheduler._component_", "lr_scheduler.num_cycles"),
    "packed": ("dataset.packed",),
    "train_on_input": ("dataset.train_on_input",),
    "prompt": ("dataset.prompt",),
    "system_prompt": ("dataset.system_prompt",),
    "dataset_type": ("dataset.dataset_type",),
}
COSINE = "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup"
_OMEGA = re.compile(r"(\\*)\$\{")


def omegaconf_text(text: str) -> str:
    """Free text as OmegaConf keeps it literally: `${` escaped (backslashes before it doubled)."""
    return _OMEGA.sub(lambda m: m.group(1) * 2 + "\\${", text)


def control_settings(controls: Controls, names) -> dict:
    """{dotted torchtune config key: value} for the named controls, as finetune.yaml renders them:
    `lr` -> optimizer.lr, `max_seq_len` -> tokenizer.max_seq_len, `device` -> device + optimizer.fused +
    log_peak_memory_stats (CUDA only), `lr_scheduler: constant` -> cosine with num_cycles 0.0, ...
    Free text (prompt, system_prompt) is escaped for OmegaConf. Unknown names raise KeyError."""
    out: dict = {}
    for name in names:
        keys = CONTROL_KEYS[name]
        value = getattr(controls, name)
        if name == "device":
            values = (value, value == "cuda", value == "cuda")
        elif name == "lr_scheduler":
            values = (COSINE, 0.0 if value == "constant" else 0.5)
        elif name in ("lr", "weight_decay", "lora_dropout"):
            values = (float(value),)
        elif name == "lora_attn_modules":
            values = (list(value),)
        elif name in ("prompt", "system_prompt"):
            values = (omegaconf_text(str(value)),)
        else:
            values = (value,)
        out.update(zip(keys, values))
    return out


# -- torchtune's built-in configs (found without importing torchtune: no torch at generate time) ----
@lru_cache(maxsize=1)
def builtin_configs() -> dict[str, tuple[str, Path]]:
    """{config name: (recipe name, yaml file)} from torchtune's own recipe registry."""
    import importlib.util

    from cruijff_kit.workers.torchtune.trainer import module_file

    registry_file = module_file("torchtune._recipe_registry")
    if not registry_file:
        return {}
    spec = importlib.util.spec_from_file_location("_ck_torchtune_recipe_registry", registry_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # dataclasses and lists only: torchtune/__init__ (torch) is not run
    configs_dir = Path(registry_file).resolve().parent.parent / "recipes" / "configs"
    out: dict[str, tuple[str, Path]] = {}
    for recipe in module.get_all_recipes():
        for cfg in recipe.configs:
            out.setdefault(cfg.name, (recipe.name, configs_dir / cfg.file_path))
    return out


def similar_configs(name: str, n: int = 5) -> list[str]:
    names = [k for k, (recipe, _) in builtin_configs().items() if recipe == RECIPE]
    found = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not found:  # same model family first, e.g. llama3_2/...
        family = name.split("/", 1)[0]
        found = [k for k in names if k.split("/", 1)[0] == family][:n]
    return found


def load_base_config(path: Path) -> dict:
    """A torchtune config file as plain data, read the way `tune run` reads it (OmegaConf: `3e-4` is a
    float) with `${...}` interpolations kept as text."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


# -- the sweep -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepTask:
    name: str
    file: str  # as written, relative to tasks_dir
    shown: str  # tasks_dir + file, as the user wrote them (for messages)
    script: Path  # absolute
    function: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    """A translated experiment.yaml: the typed Experiment plus what only `generate` needs."""

    exp: Experiment
    dir: Path  # DIR, absolute
    source: Path  # DIR/experiment.yaml, absolute
    shown: str  # how messages name experiment.yaml
    base_config: str  # as written
    base_config_file: Path
    base: dict  # the built-in config, as data
    explicit: tuple  # control names the sweep sets (controls + variables), in our names
    user_names: dict  # control name -> the name the sweep used (learning_rate)
    grid: tuple  # per run: {user name: value}
    dataset: object  # None | Path (our JSON format) | dict (a torchtune dataset block)
    override: dict
    eval_enabled: bool
    checkpoint: str | int
    tasks_dir: str
    tasks: tuple  # SweepTask
    configs_dir: Path
    results_dir: Path
    eval_results_dir: Path
    slurm_scripts: bool
    slurm: dict
    warnings: tuple = ()

    def rel(self, path: Path) -> str:
        return path.relative_to(self.dir).as_posix()


def _type_name(f) -> str:
    return str(f.type).replace(" ", "")


CONTROL_TYPES = {f.name: _type_name(f) for f in fields(Controls)}  # for _coerce


@cache
def _control_validator(name: str):
    """A jsonschema validator for one control: the design schema's own rule (type, range, choices)."""
    import jsonschema

    from cruijff_kit.experiment.load import schema

    node = schema()["$defs"]["control_fields"]["properties"].get(name)
    return jsonschema.Draft202012Validator({**node, "$defs": schema()["$defs"]}) if node else None


def _type_problem(name: str, value) -> str:
    """'' when `value` is a valid value of control `name` (as in a design), else what is wrong."""
    from cruijff_kit.experiment.load import _describe

    validator = _control_validator(name)
    error = next(iter(validator.iter_errors(value)), None) if validator else None
    if error is None:
        return ""
    message, hint = _describe(error)
    return f"{message}; {hint}" if hint else message


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _coerce(name: str, value):
    """YAML 1.1 reads `1e-4` (no dot) as text; a number-typed control takes it as the number it is."""
    if CONTROL_TYPES.get(name) == "float" and isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    return value


def _placeholders(value, settings: Settings):
    """{models_dir} / {scratch_dir} in every string of a nested value."""
    if isinstance(value, str):
        for key, text in settings.placeholders().items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _placeholders(v, settings) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, settings) for v in value]
    return value


def _unknown(problems: ProblemList, node, known, path: str, hint: str = "") -> None:
    for key in node if isinstance(node, dict) else ():
        if key not in known:
            problems.error(f"{path}.{key}" if path else str(key), "unknown key",
                           closest(key, known) or hint or f"known keys: {', '.join(known)}")


def _mapping(problems: ProblemList, data: dict, key: str, *, required: bool = False) -> dict:
    node = data.get(key)
    if node is None:
        if required:
            problems.error(key, "missing", f"add `{key}:`")
        return {}
    if not isinstance(node, dict):
        problems.error(key, f"expected a mapping, got {type(node).__name__}", f"write `{key}:` followed by keys")
        return {}
    return node


def _inside(problems: ProblemList, base: Path, value: str, path: str) -> Path:
    target = (base / str(value)).resolve()
    if target != base and base not in target.parents:
        problems.error(path, f"{value!r} is outside {base}", "use a directory inside the sweep directory")
    return target


def read_sweep_yaml(source: Path, shown: str) -> dict:
    from cruijff_kit.experiment.load import read_yaml

    try:
        return read_yaml(source)
    except UserError as exc:
        if exc.problems[0].message == "file not found":
            raise UserError(f"no {SWEEP_FILE} in {Path(shown).parent}", where=shown,
                            hint=f"create {SWEEP_FILE} (see examples/lora_rank_with_eval)") from None
        raise


def load_sweep(directory: str | Path, *, profile: str | None = None, settings: Settings | None = None) -> Sweep:
    """Read, check and translate DIR/experiment.yaml; raise ValidationFailed with every problem found."""
    from cruijff_kit.experiment.load import apply_profile

    settings = settings or load_settings()
    given = Path(directory)
    if given.is_file() or given.suffix in (".yaml", ".yml"):
        given = given.parent
    root = given.resolve()
    shown = str(given / SWEEP_FILE) if str(given) not in ("", ".") else SWEEP_FILE
    source = root / SWEEP_FILE
    data = read_sweep_yaml(source, shown)
    if profile is None:
        data = {k: v for k, v in data.items() if k != "profiles"}
    else:
        data = apply_profile(data, profile, shown)
    problems = ProblemList(shown)
    _unknown(problems, data, TOP_KEYS, "")

    # experiment
    meta = _mapping(problems, data, "experiment", required=True)
    _unknown(problems, meta, EXPERIMENT_KEYS, "experiment")
    name = meta.get("name")
    if not name:
        problems.error("experiment.name", "missing", "give the sweep a name (letters, digits, . _ -)")
    elif not SAFE_NAME.match(str(name)):
        problems.error("experiment.name", f"{name!r} is not a safe name", "use only letters, digits, '.', '_' and '-'")
    framework = meta.get("framework", "torchtune")
    if framework != "torchtune":
        problems.error("experiment.framework", f"{framework!r} is not supported", "generate supports torchtune")

    # base config
    fw = _mapping(problems, data, "framework_config", required=True)
    _unknown(problems, fw, FRAMEWORK_KEYS, "framework_config")
    base_name = fw.get("base_config")
    base_file, base = None, {}
    if "framework_config" in data and not base_name:
        problems.error("framework_config.base_config", "missing",
                       f"name a torchtune built-in config of {RECIPE}, e.g. llama3_2/1B_lora_single_device")
    elif base_name:
        base_file = _base_config_file(problems, str(_placeholders(str(base_name), settings)), root)
        if base_file is not None:
            try:
                base = load_base_config(base_file)
            except Exception as exc:  # noqa: BLE001 - a broken YAML file the user named
                problems.error("framework_config.base_config", f"{base_file} cannot be read: {exc}".splitlines()[0],
                               "fix the file or name a built-in config")
                base_file = None

    # controls and variables
    allowed = list(CONTROL_KEYS)
    user_allowed = sorted(set(allowed) | set(ALIASES) | {"dataset", "_override"})
    controls_raw = _mapping(problems, data, "controls")
    variables = _mapping(problems, data, "variables")
    user_names: dict[str, str] = {}
    values: dict[str, object] = {}

    def control_name(key: str, path: str) -> str | None:
        ours = ALIASES.get(key, key)
        if key in OUR_RECIPE_ONLY:
            problems.error(path, f"{key} is not available in generate", OUR_RECIPE_ONLY[key] +
                           "; use a design (experiment_summary.yaml) and `cruijff-kit scaffold`")
            return None
        if ours not in allowed:
            problems.error(path, "unknown control", closest(key, user_allowed) or
                           f"known controls: {', '.join(user_allowed)}")
            return None
        if ours in user_names and user_names[ours] != key:
            problems.error(path, f"{key} and {user_names[ours]} are the same control", "keep one of them")
            return None
        return ours

    for key, value in controls_raw.items():
        if key in ("dataset", "_override"):
            continue
        ours = control_name(key, f"controls.{key}")
        if ours is None:
            continue
        value = _coerce(ours, value)
        why = _type_problem(ours, value)
        if why:
            problems.error(f"controls.{key}", why)
            continue
        user_names[ours] = key
        values[ours] = value
    grid_keys: list[str] = []
    grid_values: list[list] = []
    for key, options in variables.items():
        path = f"variables.{key}"
        if key in ("dataset", "_override"):
            problems.error(path, f"{key} cannot be varied", "vary training controls such as lora_rank or learning_rate")
            continue
        ours = control_name(key, path)
        if ours is None:
            continue
        if not isinstance(options, list) or not options:
            problems.error(path, "expected a non-empty list of values", f"write e.g. `{key}: [8, 16]`")
            continue
        options = [_coerce(ours, v) for v in options]
        bad = [(i, _type_problem(ours, v)) for i, v in enumerate(options)]
        bad = [(i, why) for i, why in bad if why]
        for i, why in bad:
            problems.error(f"{path}[{i}]", why)
        if bad:
            continue
        if len(set(map(repr, options))) != len(options):
            problems.error(path, "lists a value twice", "give each value once")
            continue
        user_names.setdefault(ours, key)
        grid_keys.append(ours)
        grid_values.append(options)

    # dataset and _override
    dataset = None
    raw_dataset = controls_raw.get("dataset")
    if isinstance(raw_dataset, str):
        dataset = (root / _placeholders(raw_dataset, settings)).resolve()
        if not dataset.is_file():
            problems.warn("controls.dataset", f"{dataset} not found (yet)", "create it before training starts")
    elif isinstance(raw_dataset, dict):
        if not str(raw_dataset.get("_component_", "")):
            problems.error("controls.dataset", "a dataset block needs a `_component_`",
                           "give a torchtune dataset builder, or a path to a JSON file in our format")
        dataset = _placeholders(copy.deepcopy(raw_dataset), settings)
    elif raw_dataset is not None:
        problems.error("controls.dataset", f"{raw_dataset!r} is not a dataset",
                       "give a path to a JSON file ({\"train\": [...], \"validation\": [...]}) or a dataset block")
    if not isinstance(dataset, Path):
        for key in DATASET_CONTROLS:
            if key in values or key in grid_keys:
                problems.error(f"controls.{key}" if key in values else f"variables.{key}",
                               f"{key} only applies to a JSON dataset (controls.dataset: path/to/data.json)",
                               "set it in your dataset block instead")
    override = controls_raw.get("_override") or {}
    if not isinstance(override, dict):
        problems.error("controls._override", "expected a mapping of torchtune config keys",
                       "e.g. _override: {checkpointer: {output_dir: ${output_dir}/hf_model}}")
        override = {}
    override = _placeholders(copy.deepcopy(override), settings)

    # output dirs
    output = _mapping(problems, data, "output")
    _unknown(problems, output, OUTPUT_KEYS, "output")
    dirs = {}
    for key, default in OUTPUT_DEFAULTS.items():
        value = output.get(key, default)
        if not isinstance(value, str) or not value.strip():
            problems.error(f"output.{key}", f"{value!r} is not a directory name", f"e.g. {default}")
            value = default
        if key == "configs_dir":  # written by generate: inside DIR; results may live anywhere (e.g. scratch)
            dirs[key] = _inside(problems, root, value, f"output.{key}")
        else:
            dirs[key] = (root / str(_placeholders(value, settings))).resolve()
    slurm_scripts = output.get("slurm_scripts", True)
    if not isinstance(slurm_scripts, bool):
        problems.error("output.slurm_scripts", f"{slurm_scripts!r}: expected true or false", "")
    slurm = _mapping(problems, data, "slurm")
    _unknown(problems, slurm, SLURM_KEYS, "slurm")
    if slurm_scripts is True:
        from cruijff_kit.workers.torchtune.trainer import SAFE_PATH, SAFE_SBATCH

        for key, value in slurm.items():
            if key in ("gpus", "cpus") and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                problems.error(f"slurm.{key}", f"{value!r} is not a count", "give a whole number")
            elif not SAFE_SBATCH.match(str(value)):
                problems.error(f"slurm.{key}", f"{value!r} cannot go into an #SBATCH line", "remove spaces and quotes")
        if not SAFE_PATH.match(str(root)):
            problems.error("output.slurm_scripts", f"the sweep directory {str(root)!r} has characters job scripts "
                           "cannot take safely", "move it to a path of letters, digits and . _ - / only, or set "
                           "slurm_scripts: false")

    # evaluation
    ev = _mapping(problems, data, "evaluation")
    _unknown(problems, ev, EVALUATION_KEYS, "evaluation")
    enabled = bool(ev) and ev.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.error("evaluation.enabled", f"{enabled!r}: expected true or false", "")
    tasks: list[SweepTask] = []
    checkpoint = ev.get("checkpoint", "last")
    tasks_dir = str(ev.get("tasks_dir", "evals/"))
    limit, max_tokens = ev.get("limit"), ev.get("max_tokens", 32)
    if enabled:
        if ev.get("framework", "inspect") not in ("inspect", "inspect-ai"):
            problems.error("evaluation.framework", f"{ev.get('framework')!r} is not supported",
                           "generate evaluates with inspect")
        if ev.get("model_format", "hf") != "hf":
            problems.error("evaluation.model_format", f"{ev.get('model_format')!r} is not supported",
                           "use hf (the merged Hugging Face checkpoint)")
        if not (checkpoint == "last" or (isinstance(checkpoint, int) and not isinstance(checkpoint, bool)
                                         and checkpoint >= 0)):
            problems.error("evaluation.checkpoint", f"{checkpoint!r} is not a checkpoint",
                           "use last or an epoch number (0-indexed)")
        for key, value in (("limit", limit), ("max_tokens", max_tokens)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                problems.error(f"evaluation.{key}", f"{value!r}: expected a whole number above 0", "")
        tasks = _tasks(problems, ev, root, tasks_dir)

    if problems.errors:
        raise ValidationFailed(problems.problems)

    # the typed model: one fine-tuned run per grid point. Each run's Controls hold what its torchtune
    # config will say: the built-in config's values, then the sweep's controls and grid point, then _override.
    base_seed, override_seed = config_controls(base), config_controls(override)
    explicit = [n for n in CONTROL_KEYS if n in values or n in grid_keys]
    if "lora_rank" in explicit and "lora_alpha" not in explicit:
        explicit.append("lora_alpha")  # 2 x rank, as in designs
    combos = list(itertools.product(*grid_values)) if grid_keys else [()]
    width = max(3, len(str(len(combos) - 1)))
    model_name = str(base_name)
    ckpt = {**(base.get("checkpointer") or {}), **(override.get("checkpointer") or {})}
    checkpoint_dir = str(ckpt.get("checkpoint_dir") or root)
    runs, grid, epochs_evaluated = [], [], []
    for i, combo in enumerate(combos):
        point = dict(zip(grid_keys, combo))
        raw = {**base_seed, **values, **point, **override_seed}
        if "lora_alpha" in explicit and "lora_alpha" not in values and "lora_alpha" not in point \
                and "lora_alpha" not in override_seed:
            raw.pop("lora_alpha", None)  # derived: 2 x rank
        run = Run(name=f"run_{i:0{width}d}", type="fine-tuned", model=model_name, parameters=point,
                  controls=Controls.build(raw))
        runs.append(run)
        grid.append({user_names[k]: v for k, v in point.items()})
        if enabled and tasks:
            epochs_evaluated.append(_checkpoint_epoch(problems, checkpoint, run.controls.epochs))
    problems.raise_if_errors()
    controls = Controls.build({**base_seed, **values, **override_seed})
    task_models = tuple(Task(name=t.name, script=t.script, function=t.function) for t in tasks)
    matrix = tuple({"run": r.name, "tasks": [t.name for t in tasks], "epochs": [e]}
                   for r, e in zip(runs, epochs_evaluated))
    exp = Experiment(
        name=str(name), question=str(meta.get("question", "")), date=str(meta.get("date", "")), type="experiment",
        dir=root, source=source, hypothesis=str(meta.get("hypothesis", "")), purpose=str(meta.get("purpose", "")),
        project=str(meta.get("project", "")), tools={"preparation": "torchtune", "evaluation": "inspect-ai"},
        variables={k: list(v) for k, v in zip(grid_keys, grid_values)}, controls=controls,
        models=(BaseModel(name=model_name, path=Path(checkpoint_dir)),),
        training_data=Dataset(str(dataset)) if isinstance(dataset, Path) else None, runs=tuple(runs),
        evaluation=Evaluation(tasks=task_models, matrix=matrix, max_tokens=int(max_tokens or 32), limit=limit),
        raw=data)
    return Sweep(
        exp=exp, dir=root, source=source, shown=shown, base_config=str(base_name), base_config_file=base_file,
        base=base, explicit=tuple(explicit), user_names=user_names, grid=tuple(grid), dataset=dataset,
        override=override, eval_enabled=bool(enabled and tasks), checkpoint=checkpoint, tasks_dir=tasks_dir,
        tasks=tuple(tasks), configs_dir=dirs["configs_dir"], results_dir=dirs["results_dir"],
        eval_results_dir=dirs["eval_results_dir"], slurm_scripts=bool(slurm_scripts), slurm=dict(slurm),
        warnings=tuple(problems.warnings))


def _base_config_file(problems: ProblemList, name: str, root: Path) -> Path | None:
    known = builtin_configs()
    if name in known:
        recipe, path = known[name]
        if recipe != RECIPE:
            similar = similar_configs(name)
            problems.error("framework_config.base_config", f"'{name}' is a config of torchtune's {recipe}, "
                           f"not of {RECIPE}", "similar built-in configs: " + ", ".join(similar) if similar
                           else "run `tune ls` for the list")
            return None
        return path
    candidate = (root / name).resolve()
    if name.endswith((".yaml", ".yml")) and candidate.is_file():
        return candidate
    similar = similar_configs(name)
    hint = ("similar built-in configs: " + ", ".join(similar)) if similar else \
        f"run `tune ls` for the built-in configs of {RECIPE}"
    problems.error("framework_config.base_config", f"'{name}' is not a torchtune built-in config", hint)
    return None


def _tasks(problems: ProblemList, ev: dict, root: Path, tasks_dir: str) -> list[SweepTask]:
    """Every task, checked statically (ast): the file exists and defines the function with @task."""
    from cruijff_kit.workers.inspect.taskscan import task_functions

    raw = ev.get("tasks") or []
    if not isinstance(raw, list) or not raw:
        problems.error("evaluation.tasks", "no tasks to evaluate",
                       "list tasks ({name, file, function}) or set evaluation.enabled: false")
        return []
    folder = (root / tasks_dir).resolve()
    if not folder.is_dir():
        problems.problems.append(Problem("", "", f"Evaluation tasks directory not found: {tasks_dir}"))
        return []
    out, names = [], set()
    for i, task in enumerate(raw):
        path = f"evaluation.tasks[{i}]"
        if not isinstance(task, dict):
            problems.error(path, f"{task!r} is not a task", "write {name: ..., file: ..., function: ...}")
            continue
        _unknown(problems, task, TASK_KEYS, path)
        name, file = task.get("name"), task.get("file")
        function = task.get("function") or name
        if not name or not SAFE_NAME.match(str(name)):
            problems.error(f"{path}.name", f"{name!r} is not a task name", "use letters, digits, '.', '_' and '-'")
            continue
        if name in names:
            problems.error(f"{path}.name", f"'{name}' is used twice", "give every task a unique name")
        names.add(name)
        if not file:
            problems.error(f"{path}.file", "missing", f"name the task's Python file inside {tasks_dir}")
            continue
        args = task.get("args") or {}
        if not isinstance(args, dict):
            problems.error(f"{path}.args", "expected a mapping of keyword arguments", "e.g. args: {limit: 50}")
            args = {}
        shown = tasks_dir + str(file) if tasks_dir.endswith("/") else f"{tasks_dir}/{file}"
        script = (folder / str(file)).resolve()
        if not script.is_file():
            problems.problems.append(Problem("", "", f"Task file not found: {shown}"))
            continue
        try:
            found = task_functions(script)
        except SyntaxError as exc:
            problems.problems.append(Problem("", "", f"{shown}:{exc.lineno}: Python syntax error: {exc.msg}"))
            continue
        if function not in found:
            problems.problems.append(Problem("", "", f"Function '{function}' not found in {shown}"))
            continue
        if not found[function]:
            problems.problems.append(Problem("", "", f"Function '{function}' not found in {shown}",
                                             f"{function}() is there but not decorated with @task"))
            continue
        out.append(SweepTask(str(name), str(file), shown, script, str(function), dict(args)))
    return out


def _checkpoint_epoch(problems: ProblemList, checkpoint, epochs: int) -> int:
    """The 0-indexed epoch evaluated: the last one, or the one named."""
    epochs = max(int(epochs), 1)
    if checkpoint == "last":
        return epochs - 1
    if int(checkpoint) >= epochs:
        problems.error("evaluation.checkpoint", f"epoch {checkpoint} does not exist (a run trains {epochs} "
                       "epochs)", f"epochs are 0-indexed: use 0..{epochs - 1} or last")
    return int(checkpoint)


def _dotted(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def config_controls(config: dict) -> dict:
    """The controls a torchtune config (or an _override) already sets: the inverse of CONTROL_KEYS for
    controls that are one key (values of the wrong type, e.g. max_seq_len: null, are left out)."""
    out = {}
    for name, keys in CONTROL_KEYS.items():
        if name == "lr_scheduler":
            continue
        value = _dotted(config, keys[0])
        if value is KeyError or (isinstance(value, str) and "${" in value):
            continue
        if name == "lora_attn_modules" and isinstance(value, (list, tuple)):
            value = list(value)
        if not _type_problem(name, value):
            out[name] = value
    return out

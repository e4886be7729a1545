"""DIR/experiment.yaml (a lightweight sweep for `cruijff-kit generate`) -> a design -> the typed `Experiment`.

The sweep file names a torchtune built-in config, a grid of `variables`, the `controls` every run
shares (our control names; `learning_rate` is accepted for `lr`), `controls.dataset` (a JSON file in
our format), `controls._override` (torchtune keys deep-merged into each config last) and the inspect-ai
tasks to run on each fine-tuned model. It is translated into a design (the experiment_summary.yaml
format: one fine-tuned run per grid point, the base config's model as a `models.base[].component`
block, the evaluation matrix) and built by the same loader as every design, so its problems are the
design's problems, reported at the sweep's own keys.

    experiment: {name, framework: torchtune, question, hypothesis, researcher, date, purpose, project, tags}
    framework_config: {base_config: llama3_2/1B_lora_single_device}   # or a .yaml file under DIR
    variables: {lora_rank: [8, 16], learning_rate: [1e-4, 3e-4]}       # the grid (product, in order)
    controls:  {learning_rate: 3e-4, lora_rank: 8, ..., dataset: data/train.json, _override: {...}}
    evaluation: {enabled, framework: inspect, checkpoint: last, model_format: hf, tasks_dir: evals/,
                 tasks: [{name, file, function, args}], limit, max_tokens}
    output: {configs_dir: configs, results_dir: results}
    slurm: {time, gpus, cpus, mem, account, partition, constraint}     # every job's SLURM resources
    profiles: {tiny: {...}}                                             # deep-merged with --profile NAME

Controls not given keep the base config's values (`overlay.config_controls`). String values of
`_override`, `dataset`, `base_config` and `output.results_dir` may use `{models_dir}` and `{scratch_dir}`.
Nothing here imports torch, torchtune or inspect_ai.
"""
from __future__ import annotations

import copy
import datetime
import itertools
import re
from dataclasses import dataclass, fields
from pathlib import Path

from cruijff_kit.errors import Problem, ProblemList, UserError, ValidationFailed, closest
from cruijff_kit.experiment.model import Controls, Experiment
from cruijff_kit.experiment.runtypes import SFT, for_objective
from cruijff_kit.settings import Settings
from cruijff_kit.workers.torchtune import overlay

SWEEP_FILE = "experiment.yaml"
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
WARN_VARIABLES_ABOVE = 2
CONFIRM_RUNS_FROM = 100

TOP_KEYS = ("experiment", "framework_config", "variables", "controls", "evaluation", "output", "slurm", "profiles")
EXPERIMENT_KEYS = ("name", "framework", "question", "hypothesis", "researcher", "date", "tags", "purpose",
                   "project")
DESIGN_META = ("hypothesis", "purpose", "project", "researcher")
EVALUATION_KEYS = ("enabled", "framework", "checkpoint", "model_format", "tasks_dir", "tasks", "limit",
                   "max_tokens")
TASK_KEYS = ("name", "file", "function", "args")
OUTPUT_KEYS = ("configs_dir", "results_dir")
RETIRED_OUTPUT = {"eval_results_dir": "eval logs go to RUN/eval/TASK_epochN/logs, as in every experiment",
                  "slurm_scripts": "`cruijff-kit run DIR --executor slurm` submits every job with its dependencies"}
SLURM_KEYS = ("time", "gpus", "cpus", "mem", "account", "partition", "constraint")
OUTPUT_DEFAULTS = {"configs_dir": "configs", "results_dir": "results"}
ALIASES = {"learning_rate": "lr"}  # sweep name -> control name
NOT_IN_GENERATE = {"dpo_beta": "generate runs supervised LoRA fine-tuning only"}
CONTROLS = [n for n in Controls.names() if n not in NOT_IN_GENERATE]
DEFAULTS = {f.name: f.default for f in fields(Controls)}
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class Sweep:
    """A translated experiment.yaml: the typed Experiment plus what only `generate` needs."""

    exp: Experiment
    dir: Path  # DIR, absolute
    shown: str  # how messages name experiment.yaml
    base_config: str  # as written
    base: dict  # the base config, as data
    override: dict
    user_names: dict  # control name -> the name the sweep used (learning_rate)
    grid: tuple  # per run: {user name: value}
    task_args: dict  # task -> its `args`
    configs_dir: Path
    results_dir: Path
    warnings: tuple = ()

    def rel(self, path: Path) -> str:
        return path.relative_to(self.dir).as_posix()


def _coerce(name: str, value):
    """YAML 1.1 reads `1e-4` (no dot) as text; a float control takes it as the number it is."""
    if isinstance(DEFAULTS.get(name), float) and isinstance(value, str) and _FLOAT.match(value.strip()):
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


def _unknown(problems: ProblemList, node, known, path: str) -> None:
    for key in node if isinstance(node, dict) else ():
        if key not in known:
            problems.error(f"{path}.{key}" if path else str(key), "unknown key",
                           closest(key, known) or f"known keys: {', '.join(known)}")


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


def read_sweep_yaml(source: Path, shown: str) -> dict:
    from cruijff_kit.experiment.load import read_yaml

    try:
        return read_yaml(source)
    except UserError as exc:
        if exc.problems[0].message == "file not found":
            raise UserError(f"no {SWEEP_FILE} in {Path(shown).parent}", where=shown,
                            hint=f"create {SWEEP_FILE} (see examples/lora_rank_with_eval)") from None
        raise


# -- reading the sweep -----------------------------------------------------------------------------
def _controls(problems: ProblemList, data: dict) -> tuple[dict, list, list, dict]:
    """(controls, grid keys, grid values, user names), control names checked (values: by the design schema)."""
    controls_raw = _mapping(problems, data, "controls")
    variables = _mapping(problems, data, "variables")
    user_allowed = sorted(set(CONTROLS) | set(ALIASES) | {"dataset", "_override"})
    user_names: dict[str, str] = {}
    values: dict = {}

    def control_name(key: str, path: str) -> str | None:
        ours = ALIASES.get(key, key)
        if key in NOT_IN_GENERATE:
            problems.error(path, f"{key} is not available in generate", NOT_IN_GENERATE[key] +
                           "; use a design (experiment_summary.yaml) and `cruijff-kit scaffold`")
        elif ours not in CONTROLS:
            problems.error(path, "unknown control", closest(key, user_allowed) or
                           f"known controls: {', '.join(user_allowed)}")
        elif ours in user_names and user_names[ours] != key:
            problems.error(path, f"{key} and {user_names[ours]} are the same control", "keep one of them")
        else:
            return ours
        return None

    for key, value in controls_raw.items():
        ours = None if key in ("dataset", "_override") else control_name(key, f"controls.{key}")
        if ours is not None:
            user_names[ours] = key
            values[ours] = _coerce(ours, value)
    grid_keys, grid_values = [], []
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
        if len(set(map(repr, options))) != len(options):
            problems.error(path, "lists a value twice", "give each value once")
            continue
        user_names.setdefault(ours, key)
        grid_keys.append(ours)
        grid_values.append(options)
    return values, grid_keys, grid_values, user_names


def _base(problems: ProblemList, data: dict, root: Path, settings: Settings) -> tuple[str, dict]:
    fw = _mapping(problems, data, "framework_config", required=True)
    _unknown(problems, fw, ("base_config",), "framework_config")
    name = fw.get("base_config")
    if "framework_config" in data and not name:
        problems.error("framework_config.base_config", "missing",
                       f"name a torchtune built-in config of {overlay.RECIPE}, e.g. llama3_2/1B_lora_single_device")
        return "", {}
    if not name:
        return "", {}
    path, why = overlay.find_config(str(_placeholders(str(name), settings)), root)
    if path is None:
        message, _, hint = why.partition("; ")
        problems.error("framework_config.base_config", message, hint)
        return str(name), {}
    try:
        return str(name), overlay.load_config(path)
    except Exception as exc:  # noqa: BLE001 - a broken YAML file the user named
        problems.error("framework_config.base_config", f"{path} cannot be read: {exc}".splitlines()[0],
                       "fix the file or name a built-in config")
        return str(name), {}


def _tasks(problems: ProblemList, ev: dict, root: Path, tasks_dir: str) -> list[dict]:
    """Every task as {name, script, function, args}, checked statically (ast): the file exists and
    defines the function with @task. Missing files and functions are one exact line each."""
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
        name, file, function = task.get("name"), task.get("file"), task.get("function") or task.get("name")
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
        if not found.get(function):
            hint = f"{function}() is there but not decorated with @task" if function in found else ""
            problems.problems.append(Problem("", "", f"Function '{function}' not found in {shown}", hint))
            continue
        out.append({"name": str(name), "script": str(script), "function": str(function), "args": dict(args)})
    return out


def _evaluation(problems: ProblemList, data: dict, root: Path) -> tuple[list[dict], object, dict]:
    """(tasks, checkpoint, {limit, max_tokens}) of an enabled evaluation; ([], ...) when disabled."""
    ev = _mapping(problems, data, "evaluation")
    _unknown(problems, ev, EVALUATION_KEYS, "evaluation")
    enabled = bool(ev) and ev.get("enabled", True)
    checkpoint = ev.get("checkpoint", "last")
    if not isinstance(enabled, bool):
        problems.error("evaluation.enabled", f"{enabled!r}: expected true or false", "")
    if enabled is not True:
        return [], checkpoint, {}
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
    settings = {k: ev[k] for k in ("limit", "max_tokens") if ev.get(k) is not None}
    return _tasks(problems, ev, root, str(ev.get("tasks_dir", "evals/"))), checkpoint, settings


# -- the translation -------------------------------------------------------------------------------
def user_path(path: str, user_names: dict) -> str:
    """A key path of the translated design -> where the same thing is in experiment.yaml."""
    m = re.match(r"^(controls|runs\[\d+\]\.parameters)\.(\w+)(.*)$", path)
    if m:
        where = "controls" if m.group(1) == "controls" else "variables"
        return f"{where}.{user_names.get(m.group(2), m.group(2))}{m.group(3)}"
    for pattern, repl in ((r"^runs\[\d+\]\.slurm_overrides", "slurm"), (r"^evaluation\.matrix.*", "evaluation.checkpoint"),
                          (r"^data\.training.*", "controls.dataset"), (r"^models\.base.*", "framework_config.base_config")):
        if re.match(pattern, path):
            return re.sub(pattern, repl, path)
    return path


def user_problems(found, where: str, user_names: dict) -> list[Problem]:
    """The design's problems at experiment.yaml's keys, each once: one that only names another run
    (a control every run shares) is counted on the first."""
    first: dict[str, list] = {}
    for p in found:
        mapped = Problem(where, user_path(p.path, user_names), p.message, p.hint, p.level)
        first.setdefault(re.sub(r"\brun_\d+\b", "run_*", mapped.line()), []).append(mapped)
    out = []
    for same in first.values():
        p = same[0]
        runs = {q.line() for q in same}
        more = f" (and {len(runs) - 1} more runs)" if len(runs) > 1 else ""
        out.append(Problem(p.where, p.path, p.message + more, p.hint, p.level))
    return out


def _design(meta: dict, root: Path, model: tuple, dataset: Path, controls: dict, grid_keys: list,
            grid_values: list, slurm: dict, tasks: list, checkpoint, ev: dict) -> dict:
    name, path, component = model
    combos = list(itertools.product(*grid_values)) if grid_keys else [()]
    width = max(3, len(str(len(combos) - 1)))
    runs, matrix = [], []
    for i, combo in enumerate(combos):
        run = {"name": f"run_{i:0{width}d}", "type": for_objective(SFT).name, "model": name,
               "parameters": dict(zip(grid_keys, combo))}
        if slurm:
            run["slurm_overrides"] = dict(slurm)
        runs.append(run)
        epochs = run["parameters"].get("epochs", controls.get("epochs", DEFAULTS["epochs"]))
        epoch = checkpoint if isinstance(checkpoint, int) else (epochs if isinstance(epochs, int) else 1) - 1
        if tasks:
            matrix.append({"run": run["name"], "tasks": [t["name"] for t in tasks], "epochs": [epoch]})
    design = {
        "experiment": {"name": meta.get("name"), "question": str(meta.get("question") or f"sweep {meta.get('name')}"),
                       "date": str(meta.get("date") or datetime.date.today().isoformat()), "type": "experiment",
                       "dir": str(root), **{k: str(meta[k]) for k in DESIGN_META if meta.get(k)}},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "variables": {k: list(v) for k, v in zip(grid_keys, grid_values)},
        "controls": controls,
        "models": {"base": [{"name": name, "path": path, "component": component}]},
        "data": {"training": {"path": str(dataset)}},
        "runs": runs,
    }
    if tasks:
        design["evaluation"] = {"tasks": [{k: t[k] for k in ("name", "script", "function")} for t in tasks],
                                "matrix": matrix, **ev}
    return design


def load_sweep(directory: str | Path, *, profile: str | None = None, settings: Settings) -> Sweep:
    """Read, check and translate DIR/experiment.yaml; raise ValidationFailed with every problem found."""
    from cruijff_kit.experiment.load import apply_profile, build, check

    given = Path(directory)
    if given.is_file() or given.suffix in (".yaml", ".yml"):
        given = given.parent
    root = given.resolve()
    shown = str(given / SWEEP_FILE) if str(given) not in ("", ".") else SWEEP_FILE
    source = root / SWEEP_FILE
    data = read_sweep_yaml(source, shown)
    data = apply_profile(data, profile, shown) if profile else {k: v for k, v in data.items() if k != "profiles"}
    problems = ProblemList(shown)
    _unknown(problems, data, TOP_KEYS, "")
    meta = _mapping(problems, data, "experiment", required=True)
    _unknown(problems, meta, EXPERIMENT_KEYS, "experiment")
    if not meta.get("name"):
        problems.error("experiment.name", "missing", "give the sweep a name (letters, digits, . _ -)")
    elif not SAFE_NAME.match(str(meta["name"])):
        problems.error("experiment.name", f"{meta['name']!r} is not a safe name", "use only letters, digits, '.', '_' and '-'")
    if meta.get("framework", "torchtune") != "torchtune":
        problems.error("experiment.framework", f"{meta['framework']!r} is not supported", "generate supports torchtune")
    base_name, base = _base(problems, data, root, settings)
    values, grid_keys, grid_values, user_names = _controls(problems, data)
    controls_raw = data.get("controls") if isinstance(data.get("controls"), dict) else {}
    dataset = controls_raw.get("dataset")
    if isinstance(dataset, str):
        dataset = (root / _placeholders(dataset, settings)).resolve()
    else:
        problems.error("controls.dataset", "missing" if dataset is None else f"{dataset!r} is not a path to a JSON file",
                       "give the training data: a JSON file in our format ({\"train\": [...], \"validation\": [...]})")
    override = controls_raw.get("_override") or {}
    if not isinstance(override, dict):
        problems.error("controls._override", "expected a mapping of torchtune config keys",
                       "e.g. _override: {gradient_accumulation_steps: 1}")
        override = {}
    override = _placeholders(copy.deepcopy(override), settings)
    for key in overlay.owned_keys(override):
        problems.error(f"controls._override.{key}", "is set by generate: checkpoints go to the results dir "
                       "(results/run_NNN/epoch_N), where run, status and summarize look", "remove it")
    output = _mapping(problems, data, "output")
    _unknown(problems, output, (*OUTPUT_KEYS, *RETIRED_OUTPUT), "output")
    for key in set(output) & set(RETIRED_OUTPUT):
        problems.warn(f"output.{key}", "is no longer used", RETIRED_OUTPUT[key])
    dirs = {}
    for key, default in OUTPUT_DEFAULTS.items():
        value = output.get(key, default)
        if not isinstance(value, str) or not value.strip():
            problems.error(f"output.{key}", f"{value!r} is not a directory name", f"e.g. {default}")
            value = default
        dirs[key] = (root / str(_placeholders(value, settings))).resolve()
    if root != dirs["configs_dir"] and root not in dirs["configs_dir"].parents:
        problems.error("output.configs_dir", f"{output['configs_dir']!r} is outside {root}",
                       "use a directory inside the sweep directory")
    slurm = _mapping(problems, data, "slurm")
    _unknown(problems, slurm, SLURM_KEYS, "slurm")
    tasks, checkpoint, ev = _evaluation(problems, data, root)
    problems.raise_if_errors()

    # the design: each run's controls are the base config's, then the sweep's and its grid point, then _override's
    merged = overlay.merge(override, base)
    component, checkpoint_dir = overlay.model_component(merged)
    model_name = Path(checkpoint_dir).name if SAFE_NAME.match(Path(checkpoint_dir).name) else "model"
    controls = {**overlay.config_controls(base, DEFAULTS), **values, **overlay.config_controls(override, DEFAULTS)}
    explicit = set(values) | set(grid_keys) | set(overlay.config_controls(override, DEFAULTS))
    if "lora_alpha" not in explicit and ({"lora_rank"} & explicit):
        controls.pop("lora_alpha", None)  # derived: 2 x rank, as in designs
    design = _design(meta, root, (model_name, checkpoint_dir or str(root), component), dataset, controls,
                     grid_keys, grid_values, dict(slurm), tasks, checkpoint, ev)
    found = check(design, shown)
    mapped = user_problems(found.problems, shown, user_names)
    if any(p.level == "error" for p in mapped):
        raise ValidationFailed(mapped)
    exp = build(design, source, settings)
    grid = tuple({user_names[k]: v for k, v in run.parameters.items()} for run in exp.runs)
    return Sweep(exp=exp, dir=root, shown=shown, base_config=base_name, base=base, override=override,
                 user_names=user_names, grid=grid, task_args={t["name"]: t["args"] for t in tasks},
                 configs_dir=dirs["configs_dir"], results_dir=dirs["results_dir"],
                 warnings=tuple([*problems.warnings, *mapped]))

"""experiment_summary.yaml -> schema (jsonschema, draft 2020-12) -> semantic checks -> Experiment.

Every problem is collected and reported at once, one line each, as
`FILE: key.path: what is wrong; the fix`. Nothing here imports torch or inspect.
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

from cruijff_kit.files import read_yaml as files_read_yaml
from cruijff_kit.errors import Problem, ProblemList, UserError, ValidationFailed, closest
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.epochs import row_epoch_problems
from cruijff_kit.experiment.expand import unevaluated
from cruijff_kit.experiment.model import (
    BaseModel, Controls, Dataset, Evaluation, Experiment, Gate, Run, Stage, Task, as_bool,
)
from cruijff_kit.experiment.migrate import MIGRATE_HINT
from cruijff_kit.experiment.runtypes import RUN_TYPES
from cruijff_kit.experiment.schema_check import SCHEMA_PATH, key_path, schema, schema_problems  # noqa: F401 (SCHEMA_PATH, schema: re-exported)
from cruijff_kit.settings import Settings, load_settings

SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
SUMMARY_FILE = layout.DESIGN


def _run_type(value):
    """The RUN_TYPES row of a raw `runs[].type`; None for a value the schema check reports."""
    return RUN_TYPES.get(value) if isinstance(value, str) else None


def read_yaml(path: Path) -> dict:
    """Parse YAML through files.read_yaml (YAML 1.2 numbers, one-line errors with line and column)."""
    if Path(path).is_dir():
        raise UserError("is a directory", where=str(path), hint=f"pass the {SUMMARY_FILE} inside it")
    data = files_read_yaml(path)
    if not isinstance(data, dict):
        raise UserError("expected a mapping at the top level", where=str(path),
                        hint="start with `experiment:` and `tools:` keys")
    return data


def deep_merge(base: dict, overlay: dict) -> dict:
    """Overlay wins; mappings merge recursively; lists are replaced, except `runs`, merged by name."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        elif key == "runs" and isinstance(value, list) and isinstance(out.get(key), list):
            by_name = {r.get("name"): r for r in value if isinstance(r, dict)}
            out[key] = [deep_merge(r, by_name.pop(r.get("name"), {})) for r in out[key]]
            out[key] += [copy.deepcopy(r) for r in by_name.values()]
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_profile(data: dict, profile: str | None, where: str) -> dict:
    profiles = data.get("profiles") or {}
    if profile is None:
        return data
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise UserError(f"profile '{profile}' is not defined", where=where, path="profiles",
                        hint=f"known profiles: {known}")
    merged = deep_merge({k: v for k, v in data.items() if k != "profiles"}, profiles[profile])
    return merged


# -- semantics -------------------------------------------------------------------------------------
def _path(value: str, base: Path, settings: Settings) -> Path:
    text = value
    for key, repl in settings.placeholders().items():
        text = text.replace("{" + key + "}", repl)
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def semantic_problems(data: dict, problems: ProblemList) -> None:
    controls = data.get("controls") or {}
    runs = data.get("runs") or []
    if not runs:
        problems.warn("runs", "no runs defined yet", "run `cruijff-kit design expand FILE` to fill them from variables")
    models = {m.get("name") for m in (data.get("models") or {}).get("base", [])}
    evaluation = data.get("evaluation") or {}
    tasks = {t.get("name") for t in evaluation.get("tasks", [])}
    run_names: dict[str, int] = {}
    epochs_of: dict[str, int] = {}
    validates: dict[str, bool] = {}
    types: dict[str, str] = {}
    for i, run in enumerate(runs):
        name = run.get("name")
        if name in run_names:
            problems.error(f"runs[{i}].name", f"'{name}' is used twice (also runs[{run_names[name]}])",
                           "give every run a unique name")
        run_names[name] = i
        params = {**controls, **(run.get("parameters") or {})}
        epochs_of[name] = params.get("epochs", Controls.epochs)
        validates[name] = as_bool(params.get("validation_during_training", Controls.validation_during_training))
        types[name] = run.get("type")
        kind = _run_type(run.get("type"))
        given_checkpoint = kind is not None and kind.needs_checkpoint_path
        if run.get("model") not in models and not run.get("base_run"):
            problems.error(f"runs[{i}].model", f"'{run.get('model')}' is not in models.base",
                           f"known: {', '.join(sorted(m for m in models if m))}"
                           + (f"; {closest(run.get('model'), models)}" if closest(run.get('model'), models) else ""))
        if given_checkpoint and not run.get("checkpoint_path"):
            problems.error(f"runs[{i}].checkpoint_path", "eval-only runs need a checkpoint_path",
                           "add the checkpoint directory to evaluate")
        if run.get("checkpoint_path") and not given_checkpoint:
            problems.error(f"runs[{i}].checkpoint_path", "only eval-only runs take a checkpoint_path",
                           "set type: eval-only or remove checkpoint_path")
        if run.get("base_run") and not (kind is not None and kind.trains):
            problems.error(f"runs[{i}].base_run", "only fine-tuned or dpo runs can start from another run",
                           "remove base_run or change the type")
        prompt = params.get("prompt", "{input}")
        if "{input}" not in str(prompt):
            problems.error(f"runs[{i}].parameters.prompt" if "prompt" in (run.get("parameters") or {})
                           else "controls.prompt", "the prompt template has no {input} placeholder",
                           "add {input} where the example's input goes")
        lab = params.get("dataset_label") or (data.get("data") or {}).get("training", {}).get("dataset_label")
        if kind is not None and kind.trains and not (data.get("data") or {}).get(kind.data_key):
            problems.error(f"runs[{i}]", "this run trains but the design has no training data",
                           "add data.training (or data.preference for dpo runs)")
        path_tmpl = (data.get("data") or {}).get("training", {}).get("path", "")
        if "{dataset_label}" in path_tmpl and kind is not None and kind.data_key == "training" and not lab:
            problems.error(f"runs[{i}].parameters.dataset_label", "data.training.path uses {dataset_label} "
                           "but this run sets none", "add dataset_label to the run's parameters")
    for i, run in enumerate(runs):
        both = set(run.get("compute") or {}) & set(run.get("slurm_overrides") or {})
        for key in sorted(k for k in both if run["compute"][k] != run["slurm_overrides"][k]):
            problems.error(f"runs[{i}].compute.{key}", f"{run['compute'][key]!r} disagrees with "
                           f"slurm_overrides.{key} ({run['slurm_overrides'][key]!r})", "keep one of them")
        base = run.get("base_run")
        if base and base not in run_names:
            problems.error(f"runs[{i}].base_run", f"'{base}' is not a run", closest(base, run_names) or
                           "name a run defined in runs")
        elif base == run.get("name"):
            problems.error(f"runs[{i}].base_run", "a run cannot start from itself", "name another run")
        be = run.get("base_epoch")
        if base in epochs_of and isinstance(be, int) and be >= epochs_of[base]:
            problems.error(f"runs[{i}].base_epoch", f"epoch {be} does not exist in '{base}'",
                           f"use 0..{epochs_of[base] - 1}, last or best")
    # every variable value appears in some run
    for var, values in (data.get("variables") or {}).items():
        for value in values if isinstance(values, list) else []:
            used = any(
                (run.get("model") == value) if var == "model" else
                ({**controls, **(run.get("parameters") or {})}.get(var) == value)
                for run in runs)
            if not used:
                problems.warn(f"variables.{var}", f"value {value!r} is not used by any run",
                              "run `cruijff-kit design expand` or add a run")
    for name in unevaluated(data) if evaluation.get("tasks") else []:
        problems.warn("evaluation.matrix", f"run '{name}' trains but has no eval cell",
                      f"add a matrix row for {name} (or run `cruijff-kit design expand FILE --force`)")
    if evaluation.get("do_sample") and not evaluation.get("temperature"):
        problems.error("evaluation.temperature", "do_sample: true needs a temperature above 0",
                       "set temperature (e.g. 0.7) or do_sample: false")
    if evaluation.get("temperature") and not evaluation.get("do_sample"):
        problems.error("evaluation.temperature", "temperature is only used when do_sample is true",
                       "set do_sample: true or remove temperature")
    for i, task in enumerate(evaluation.get("tasks", [])):
        if "prompt" in task and "{input}" not in str(task["prompt"]):
            problems.error(f"evaluation.tasks[{i}].prompt", "the prompt template has no {input} placeholder",
                           "add {input}")
    for i, row in enumerate(evaluation.get("matrix", [])):
        run = row.get("run")
        if run not in run_names:
            problems.error(f"evaluation.matrix[{i}].run", f"'{run}' is not a run",
                           closest(run, run_names) or f"known runs: {', '.join(run_names)}")
            continue
        for j, task in enumerate(row.get("tasks", [])):
            if task not in tasks:
                problems.error(f"evaluation.matrix[{i}].tasks[{j}]", f"'{task}' is not in evaluation.tasks",
                               closest(task, tasks) or f"known tasks: {', '.join(sorted(t for t in tasks if t))}")
        kind = _run_type(types.get(run))
        if kind is not None and not kind.per_epoch:
            if row.get("epochs") is not None:
                problems.error(f"evaluation.matrix[{i}].epochs", f"{types[run]} runs are evaluated once",
                               "set epochs: null")
        else:
            row_epoch_problems(i, row, run, epochs_of[run], validates[run], problems)
    gen = ((data.get("data") or {}).get("preference") or {}).get("generate")
    if gen and gen.get("from_run") not in run_names:
        problems.error("data.preference.generate.from_run", f"'{gen.get('from_run')}' is not a run",
                       closest(gen.get("from_run"), run_names) or "name the SFT run whose checkpoint samples the pairs")
    stage_names = {s.get("name") for s in data.get("stages", [])}
    for i, run in enumerate(runs):
        if run.get("stage") and stage_names and run["stage"] not in stage_names:
            problems.error(f"runs[{i}].stage", f"'{run['stage']}' is not in stages",
                           closest(run["stage"], stage_names) or f"known: {', '.join(sorted(stage_names))}")
    for i, stage in enumerate(data.get("stages", [])):
        gate = stage.get("gate")
        if gate:
            task = gate["metric"].split(".")[0]
            if task not in tasks:
                problems.error(f"stages[{i}].gate.metric", f"'{task}' is not in evaluation.tasks",
                               "write <task>.<scorer>.<metric>, e.g. capitals.match.accuracy")


def build(data: dict, source: Path, settings: Settings) -> Experiment:
    normalise(data)
    base = source.parent
    meta = data["experiment"]
    controls = Controls.build(data.get("controls") or {})
    if meta.get("dir"):
        exp_dir = _path(meta["dir"], base, settings)
    else:
        exp_dir = settings.experiment_dir(meta["name"], meta.get("type", "experiment"))
    training = preference = None
    d = data.get("data") or {}
    for key in ("training", "preference"):
        if key in d:
            ds = d[key]
            resolved = str(_path(ds["path"], base, settings))
            gen = dict(ds["generate"]) if ds.get("generate") else None
            if gen:
                gen["source"] = str(_path(gen["source"], base, settings))
            value = Dataset(resolved, ds.get("dataset_label", ""), ds.get("format", "json"),
                            ds.get("size_kb", 0), ds.get("splits", {}), gen)
            if key == "training":
                training = value
            else:
                preference = value
    runs = []
    # adapter-only is the default, except for a run another starts from (it must save merged weights)
    bases = {r.get("base_run") for r in data.get("runs", []) if isinstance(r, dict) and r.get("base_run")}
    for raw in data.get("runs", []):
        params = dict(raw.get("parameters") or {})
        label = params.pop("dataset_label", "") or (training.dataset_label if training else "")
        controls_in = {**(data.get("controls") or {}), **params}
        if raw["name"] in bases:
            controls_in.setdefault("save_adapter_weights_only", False)
        runs.append(Run(
            name=raw["name"], type=raw["type"], model=raw["model"], parameters=dict(raw.get("parameters") or {}),
            controls=Controls.build(controls_in), dataset_label=label,
            checkpoint_path=_path(raw["checkpoint_path"], base, settings) if raw.get("checkpoint_path") else None,
            stage=raw.get("stage", ""), base_run=raw.get("base_run", ""),
            base_epoch=raw.get("base_epoch", "last"),
            slurm_overrides=raw.get("slurm_overrides") or {}, compute=raw.get("compute") or {}))
    ev = data.get("evaluation") or {}
    tasks = tuple(Task(
        name=t["name"], script=_path(t["script"], base, settings), function=t.get("function", t["name"]),
        dataset=_path(t["dataset"], base, settings) if t.get("dataset") else None,
        split=t.get("split", ""), description=t.get("description", ""),
        prompt=t.get("prompt"), system_prompt=t.get("system_prompt", ev.get("system_prompt")),
        assistant_prefix=t.get("assistant_prefix"), scorers=tuple(t.get("scorers", ())), prompt_sweep=bool(t.get("prompt_sweep", False)))
        for t in ev.get("tasks", []))
    evaluation = Evaluation(
        scorers=tuple({**sc, "params": sc.get("params") or {}} for sc in ev.get("scorers", ())),  # `- name: x` alone
        tasks=tasks, matrix=tuple(ev.get("matrix", ())),
        temperature=ev.get("temperature", 0.0), do_sample=as_bool(ev.get("do_sample", False)),
        max_tokens=ev.get("max_tokens", 32), seed=ev.get("seed", 42), limit=ev.get("limit"),
        max_connections=ev.get("max_connections"), compute=dict(ev.get("compute") or {}),
        group=ev.get("group", Evaluation.group))
    stages = tuple(Stage(s["name"], s.get("description", ""),
                         Gate(**{"on_fail": "stop", **s["gate"]}) if s.get("gate") else None)
                   for s in data.get("stages", []))
    models = tuple(BaseModel(m["name"], _path(m["path"], base, settings), m.get("size_gb", 0.0),
                             m.get("registry", ""), m.get("component"))
                   for m in data["models"]["base"])
    output = data.get("output") or {}
    return Experiment(
        name=meta["name"], question=meta["question"], date=str(meta["date"]), type=meta.get("type", "experiment"), dir=exp_dir,
        source=source, hypothesis=meta.get("hypothesis", ""), purpose=meta.get("purpose", ""),
        project=meta.get("project", ""), tools=dict(data["tools"]), variables=dict(data.get("variables") or {}),
        controls=controls, models=models, training_data=training, preference_data=preference,
        wandb_project=output.get("wandb_project", "") or meta["name"],
        wandb_entity=output.get("wandb_entity", "") or settings.wandb_entity,
        runs=tuple(runs), evaluation=evaluation, stages=stages, raw=data)


def normalise(data: dict) -> dict:
    """Upstream 0.3.4 spellings that mean exactly one of ours, folded in place (idempotent):
    runs[].parameters.checkpoint_path -> runs[].checkpoint_path."""
    for run in data.get("runs") or []:
        params = run.get("parameters") if isinstance(run, dict) else None
        if isinstance(params, dict) and "checkpoint_path" in params and "checkpoint_path" not in run:
            run["checkpoint_path"] = params.pop("checkpoint_path")
    return data


def _non_finite(value, parts=()):
    """Key paths of .nan / .inf values (YAML reads them as floats; no setting takes one)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield key_path(parts)
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _non_finite(child, (*parts, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _non_finite(child, (*parts, i))


def check(data: dict, where: str) -> ProblemList:
    from cruijff_kit.experiment.checks import extra_problems
    from cruijff_kit.experiment.safety import control_problems, path_problems

    problems = ProblemList(where)
    normalise(data)
    for path in _non_finite(data):
        problems.error(path, "is not a finite number (.nan / .inf)", "write a number such as 1e-4")
    control_problems(data, problems)
    path_problems(data, problems)
    early = list(problems.problems)
    schema_problems(data, problems)
    flagged = {p.path for p in early}  # one line per place: the schema's pattern error would repeat it
    problems.problems = early + [p for p in problems.problems[len(early):] if p.path not in flagged]
    if any(p.message.startswith("upstream key") for p in problems.problems):
        problems.problems.insert(0, Problem(where, "", "this file uses upstream cruijff_kit (0.3.x) keys",
                                            MIGRATE_HINT.replace("FILE", where)))
    try:
        semantic_problems(data, problems)
        extra_problems(data, problems)
    except (TypeError, AttributeError, KeyError, ValueError):
        if not problems.errors:  # malformed data the schema let through would be our bug
            raise
    return problems


def resolve_design_path(path: str | Path) -> Path:
    import stat

    path = Path(path)
    path = path / SUMMARY_FILE if path.is_dir() else path
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return path  # read_yaml reports a missing file
    if not stat.S_ISREG(mode):  # a FIFO or device would block the read forever
        raise UserError("is not a regular file", where=str(path), hint=f"pass an {SUMMARY_FILE}")
    return path


def load_experiment(path: str | Path, *, profile: str | None = None, settings: Settings | None = None,
                    warnings: list[Problem] | None = None) -> Experiment:
    """Load, validate and build the experiment; raise ValidationFailed with every problem found."""
    source = resolve_design_path(path)
    data = read_yaml(source)
    data = apply_profile(data, profile, str(source))
    problems = check(data, str(source))
    if problems.errors:
        raise ValidationFailed(problems.problems)
    if warnings is not None:
        warnings.extend(problems.warnings)
    settings = settings or load_settings()
    exp = build(data, source.resolve(), settings)
    from cruijff_kit.experiment.safety import script_problems

    late = ProblemList(str(source))
    script_problems(exp, settings, late)
    late.raise_if_errors()
    return exp

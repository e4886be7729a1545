"""Evaluation worker (inspect-ai): one eval cell per (run, task, epoch) of the design's matrix.

Each cell directory `{exp.dir}/{run}/eval/{task}_epoch{N}/` (`{task}_epoch_best/` for `epochs: best`, whose
model_path is the stand-in `epoch_best` the job resolves: tools/inspect/cell_epoch.py; or `{run}/eval/{task}/`
for control and eval-only runs) gets `eval_config.yaml` (everything the in-job runner needs) and `inspect.slurm`
(extends templates/job.sh.j2; payload: `python -m cruijff_kit.tools.inspect.run_cell eval_config.yaml`).
Job ids: `{run}.eval.{cell_dirname}`, after `{run}.train` for runs that train. With `evaluation.group`
checkpoint (default) or run, the cells of one checkpoint (or run) share one job instead: `{run}.evals.{epochN|all}`
in `{run}/eval_groups/...`, which runs `python -m cruijff_kit.tools.inspect.run_group eval_group.yaml` (groups.py).

`check()` catches at scaffold time what would otherwise surface only after training: task-level
prompt / system prompt overrides that differ from what a fine-tuned run trained on, unknown scorers
or scorer parameters, task scripts without the named @task function (checked with `ast`: the CLI
side never imports inspect_ai), eval datasets without the requested split.
"""
from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

from cruijff_kit.errors import ProblemList, UserError, closest
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.model import Cell, Experiment, Run, Task
from cruijff_kit.experiment.resolve import TEXT_COMPLETION, resolve_run
from cruijff_kit.experiment.runtypes import BASE_MODEL, GIVEN_CHECKPOINT
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.jobscript import job_environment, job_overrides, resources, vram_problem
from cruijff_kit.render import RenderSet
from cruijff_kit.render import render as render_template
from cruijff_kit.settings import Settings
from cruijff_kit.tools.inspect.placement import SPREAD, wants_spread  # pure: the job applies it
from cruijff_kit.workers.inspect import groups
from cruijff_kit.workers.inspect.taskscan import parse_script, task_problem

RUNNER = "cruijff_kit.tools.inspect.run_cell"
GROUP_RUNNER = "cruijff_kit.tools.inspect.run_group"
CONFIG_FILE = layout.EVAL_CONFIG
SCRIPT_FILE = layout.EVAL_SCRIPT

# Known scorers and their parameters (plain data: validation needs no inspect import).
# param -> {"type": bool|str|number|list, "choices": [...], "required": bool}. Kept in step with
# cruijff_kit.tools.inspect.scorers.BUILDERS by tests/test_eval_worker.py.
SCORERS: dict[str, dict[str, dict]] = {
    "match": {"location": {"type": "str", "choices": ["begin", "end", "any", "exact"]},
              "ignore_case": {"type": "bool"}, "numeric": {"type": "bool"}},
    "includes": {"ignore_case": {"type": "bool"}},
    "exact": {},
    "f1": {"stop_words": {"type": "list"}},
    "pattern": {"pattern": {"type": "str", "required": True}, "ignore_case": {"type": "bool"},
                "match_all": {"type": "bool"}},
    "numeric": {"tolerance": {"type": "number", "minimum": 0}},
    "calibration": {"labels": {"type": "list"}, "positive": {"type": "str"},
                    "top_logprobs": {"type": "number", "minimum": 1}},
    "continuous": {},
}
_TYPES = {"bool": (bool,), "str": (str,), "number": (int, float), "list": (list,)}


def known_scorers() -> str:
    return ", ".join(SCORERS)


def scorer_problems(spec) -> list[tuple[str, str, str]]:
    """(key suffix, message, hint) for each problem of one `{name, params}` scorer spec."""
    if not isinstance(spec, dict):
        return [("", f"{spec!r} is not a scorer spec", "write {name: match, params: {location: exact}}")]
    name, params = spec.get("name"), spec.get("params") or {}
    if name not in SCORERS:
        hint = closest(name, SCORERS)
        return [(".name", f"unknown scorer {name!r}",
                 (f"{hint} " if hint else "") + f"known scorers: {known_scorers()}")]
    if not isinstance(params, dict):
        return [(".params", "must be a mapping", f"e.g. params: {{{next(iter(SCORERS[name]), 'x')}: ...}}")]
    out = []
    accepted = SCORERS[name]
    for key, value in params.items():
        rule = accepted.get(key)
        if rule is None:
            out.append((f".params.{key}", f"scorer {name!r} takes no parameter {key!r}",
                        f"it accepts: {', '.join(accepted) or 'none'}"))
            continue
        ok = isinstance(value, _TYPES[rule["type"]]) and not (rule["type"] == "number" and isinstance(value, bool))
        if not ok:
            out.append((f".params.{key}", f"{value!r} is not a {rule['type']}", f"give {key} a {rule['type']} value"))
        elif "choices" in rule and value not in rule["choices"]:
            out.append((f".params.{key}", f"{value!r} is not supported",
                        f"use one of {', '.join(rule['choices'])}"))
        elif "minimum" in rule and value < rule["minimum"]:
            out.append((f".params.{key}", f"{value!r} is below {rule['minimum']}", f"use {key} >= {rule['minimum']}"))
    for key, rule in accepted.items():
        if rule.get("required") and key not in params:
            out.append((".params", f"scorer {name!r} needs parameter {key!r}", f"add params: {{{key}: ...}}"))
    return out


def task_scorers(exp: Experiment, task: Task) -> list[dict]:
    """The scorer specs a task is scored with: the design's list, or the subset the task names.

    A name the design's `evaluation.scorers` defines uses its params; a known scorer the design
    does not list runs with its defaults. An empty result leaves the task's own scorers in place.
    """
    specs = [dict(s) for s in exp.evaluation.scorers]  # load gives every scorer its params ({} when left out)
    if not task.scorers:
        return specs
    by_name = {s.get("name"): s for s in specs}
    return [dict(by_name.get(name) or {"name": name, "params": {}}) for name in task.scorers]


@lru_cache(maxsize=256)
def task_params(script: str, function: str) -> tuple[str, ...] | None:
    """Parameter names of `function` in `script` (ast), or None when any keyword is accepted."""
    tree = parse_script(script)  # task_problem() vetted it first
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            if node.args.kwarg is not None:
                return None
            a = node.args
            return tuple(arg.arg for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs))
    return ()


@lru_cache(maxsize=256)
def dataset_splits(path: str, mtime: float) -> dict | str:
    """{split: count} of one of our JSON data files, or a one-line problem."""
    from cruijff_kit.files import read_json

    try:
        data = read_json(path)
    except UserError as exc:
        return exc.problems[0].message
    if not isinstance(data, dict):
        return "expected {\"train\": [...], \"validation\": [...]}"
    return {k: len(v) for k, v in data.items() if isinstance(v, list)}


# -- where each cell's model and data come from ----------------------------------------------------
def cell_model(exp: Experiment, settings: Settings, run: Run, cell: Cell) -> dict:
    """model_path (what is evaluated), base_model_path (for adapter merges / tokenizer), adapter_only:
    what the run type is evaluated as (experiment.runtypes), with paths from experiment.resolve."""
    r = resolve_run(exp, run, settings)
    if r.kind.evaluated_as == BASE_MODEL:
        return {"model_path": r.model.path, "base_model_path": None, "adapter_only": False}
    if r.kind.evaluated_as == GIVEN_CHECKPOINT:
        return {"model_path": run.checkpoint_path, "base_model_path": r.model.path, "adapter_only": False}
    return {"model_path": r.checkpoint(cell.epoch), "base_model_path": r.adapter_base,
            "adapter_only": bool(run.controls.save_adapter_weights_only)}


def cell_dataset(exp: Experiment, run: Run, task: Task) -> Path | None:
    return task.dataset or exp.dataset_file(run)


def cell_split(exp: Experiment, run: Run, task: Task) -> str:
    """The split a cell evaluates: the task's `split`, else `test` when the dataset has a non-empty one
    (upstream's default), else `validation`."""
    if task.split:
        return task.split
    path = cell_dataset(exp, run, task)
    try:
        splits = dataset_splits(str(path), path.stat().st_mtime) if path else {}
    except OSError:
        splits = {}
    return "test" if isinstance(splits, dict) and splits.get("test") else "validation"


def cell_prompts(run: Run, task: Task, kind: str) -> tuple[str, str]:
    """(prompt, system_prompt) of a cell: the run's training controls unless the task overrides.

    text_completion (`kind`) training has no system turn, so neither does its evaluation.
    """
    prompt = task.prompt if task.prompt is not None else run.controls.prompt
    system = task.system_prompt if task.system_prompt is not None else run.controls.system_prompt
    return prompt, ("" if kind == TEXT_COMPLETION else system)


def cell_prefix(run: Run, task: Task) -> str:
    """The text the cell's assistant turn starts with: the task's, else the run's training one."""
    return task.assistant_prefix if task.assistant_prefix is not None else run.controls.assistant_prefix


def cell_relpath(cell: Cell) -> str:
    return layout.cell_relpath(cell.run, cell.dirname)


def vis_label(cell: Cell) -> str:
    if cell.vis_label:
        return cell.vis_label
    return cell.run + layout.epoch_suffix(cell.epoch)


def job_id(cell: Cell) -> str:
    return f"{cell.run}.eval.{cell.dirname}"


# -- check -----------------------------------------------------------------------------------------
def check(exp: Experiment, settings: Settings, problems: ProblemList) -> None:
    """Scaffold-time problems of the evaluation part of the design (all collected, none raised)."""
    ev = exp.evaluation
    cells = exp.cells()
    evaluated = {c.run for c in cells}
    trained_tasks = {c.task for c in cells if exp.run(c.run).trains}
    for i, spec in enumerate(ev.scorers):
        for suffix, message, hint in scorer_problems(spec):
            problems.error(f"evaluation.scorers[{i}]{suffix}", message, hint)
    design_names = {s.get("name") for s in ev.scorers if isinstance(s, dict)}
    task_index = {t.name: i for i, t in enumerate(ev.tasks)}
    for i, task in enumerate(ev.tasks):
        for j, name in enumerate(task.scorers):
            if name not in SCORERS and name not in design_names:
                hint = closest(name, SCORERS)
                problems.error(f"evaluation.tasks[{i}].scorers[{j}]", f"unknown scorer {name!r}",
                               (f"{hint} " if hint else "") + f"known scorers: {known_scorers()}")
        problem = task_problem(task.script, task.function)
        if problem:
            key = "function" if problem.startswith("Function") else "script"
            problems.error(f"evaluation.tasks[{i}].{key}", problem,
                           "point script at the task file and function at its @task function "
                           "(`cruijff-kit task new` writes one)")
            continue
        params = task_params(str(task.script), task.function)
        if params is not None and "data_path" not in params:
            problems.warn(f"evaluation.tasks[{i}].function",
                          f"{task.function}() takes no data_path: it will use its own dataset",
                          "add a data_path parameter to evaluate on the design's data")
        missing = [p for p in ("prompt", "system_prompt") if params is not None and p not in params]
        if missing and task.name in trained_tasks:
            problems.warn(f"evaluation.tasks[{i}].function",
                          f"{task.function}() takes no {' or '.join(missing)}: cruijff_kit cannot pass the "
                          "training prompt", "add prompt and system_prompt parameters and pass them to "
                          "cruijff_kit.tools.inspect.dataset.load_dataset")

    _check_prompts(exp, cells, problems, task_index)
    _check_data(exp, cells, problems, task_index)
    for i, run in enumerate(exp.runs):
        if run.kind.evaluated_as == GIVEN_CHECKPOINT and run.checkpoint_path and not Path(run.checkpoint_path).is_dir():
            problems.error(f"runs[{i}].checkpoint_path", f"checkpoint not found: {run.checkpoint_path}",
                           "point checkpoint_path at an existing model or adapter directory")
        if not run.trains and run.name in evaluated:
            res = cell_resources(exp, settings, run)
            spec = resolve_run(exp, run, settings).spec
            if spec is not None:
                vram_problem(problems, settings, spec, res, job_overrides(run, "eval", exp.evaluation.compute),
                             f"runs[{i}]")
            if run.controls.device == "cuda" and not int(res.get("gpus") or 0):
                problems.error(f"runs[{i}].parameters.device" if "device" in run.parameters else "controls.device",
                               f"run {run.name} evaluates on cuda but its eval jobs request no GPU",
                               "use device: cpu, or request GPUs (slurm_overrides.gpus / Default GPUs in "
                               "claude.local.md)")
            if resolve_run(exp, run, settings).dataset_type == TEXT_COMPLETION and run.controls.system_prompt:
                problems.warn(f"runs[{i}]", f"run {run.name} uses text_completion, which has no system turn: "
                              "its system prompt is not shown to the model", "put it into the prompt template")


def _check_prompts(exp: Experiment, cells: list[Cell], problems: ProblemList, task_index: dict) -> None:
    """A fine-tuned run is evaluated with exactly the prompt and system prompt it trained with."""
    mismatches: dict[tuple[str, str], dict[str, Run]] = {}
    for cell in cells:
        run, task = exp.run(cell.run), exp.task(cell.task)
        if not run.trains:
            continue
        for field in ("prompt", "system_prompt", "assistant_prefix"):
            override = getattr(task, field)
            if override is not None and override != getattr(run.controls, field):
                mismatches.setdefault((task.name, field), {}).setdefault(run.name, run)
    for (name, field), runs in mismatches.items():
        i = task_index[name]
        first = next(iter(runs.values()))
        label = {"system_prompt": "system prompt", "assistant_prefix": "assistant prefix"}.get(field, "prompt template")
        more = f" (and {len(runs) - 1} more run{'s' if len(runs) > 2 else ''})" if len(runs) > 1 else ""
        (problems.warn if exp.task(name).prompt_sweep else problems.error)(
            f"evaluation.tasks[{i}].{field}",
            f"differs from the training {label} of run {first.name}{more}: "
            f"{getattr(exp.task(name), field)!r} vs {getattr(first.controls, field)!r}",
            "an eval prompt sweep (prompt_sweep: true): `cruijff-kit prompts` shows every cell's prompts"
            if exp.task(name).prompt_sweep else
            f"remove {field} from the task (cells then use each run's training {label}), set the "
            f"same value in controls / the run's parameters, or mark the task prompt_sweep: true")


def _check_data(exp: Experiment, cells: list[Cell], problems: ProblemList, task_index: dict) -> None:
    reported = set()
    for cell in cells:
        run, task = exp.run(cell.run), exp.task(cell.task)
        i = task_index[task.name]
        path = cell_dataset(exp, run, task)
        key = f"evaluation.tasks[{i}].dataset" if task.dataset else "data.training.path"
        if path is None:
            if ("none", task.name) not in reported:
                reported.add(("none", task.name))
                problems.error(f"evaluation.tasks[{i}].dataset",
                               f"task {task.name} has no dataset for run {run.name} (the design has no "
                               "data.training)", "give the task a dataset: path/to/data.json")
            continue
        split = cell_split(exp, run, task)
        if (str(path), split) in reported:
            continue
        reported.add((str(path), split))
        if not path.is_file():
            problems.warn(key, f"eval dataset of task {task.name} (run {run.name}) not found (yet): {path}",
                          "create it before the eval job starts (the job reads it then) or fix the path")
            continue
        splits = dataset_splits(str(path), path.stat().st_mtime)
        if isinstance(splits, str):
            problems.error(key, f"{path}: {splits}", "fix the data file")
        elif split not in splits:
            problems.error(f"evaluation.tasks[{i}].split",
                           f"{path} has no split '{split}' (splits: {', '.join(splits) or 'none'})",
                           f"use one of {', '.join(splits)} or add the split to the file")


# -- render ----------------------------------------------------------------------------------------
def cell_resources(exp: Experiment, settings: Settings, run: Run) -> dict:
    """SBATCH resources of a run's eval jobs: registry defaults, claude.local.md, slurm_overrides;
    no GPU unless the run's device is cuda (as for training)."""
    spec = resolve_run(exp, run, settings).spec
    overrides = job_overrides(run, "eval", exp.evaluation.compute)
    if run.controls.device != "cuda" and "gpus" not in overrides:
        overrides["gpus"] = 0
    return resources(settings, overrides, dict(spec.resources) if spec is not None else {},
                     vram_gb=spec.min_gpu_vram_gb if spec is not None else 0)


def cell_context(exp: Experiment, settings: Settings, cell: Cell) -> dict:
    """Everything eval_config.yaml holds for one cell."""
    run, task = exp.run(cell.run), exp.task(cell.task)
    cell_dir = exp.dir / cell_relpath(cell)
    kind = resolve_run(exp, run, settings).dataset_type
    prompt, system_prompt = cell_prompts(run, task, kind)
    data = cell_dataset(exp, run, task)
    ev = exp.evaluation
    generation = {"do_sample": bool(ev.do_sample), "max_tokens": ev.max_tokens, "seed": ev.seed}
    if ev.do_sample:
        generation["temperature"] = ev.temperature
    if ev.max_connections:
        generation["max_connections"] = ev.max_connections
    model = cell_model(exp, settings, run, cell)
    gpus = int(cell_resources(exp, settings, run).get("gpus") or 0)
    return {
        "experiment": exp.name, "run": run.name, "run_type": run.type, "task": task.name,
        "epoch": cell.epoch, "cell": cell.dirname, "job_id": job_id(cell),
        "model_path": str(model["model_path"]),
        "base_model_path": str(model["base_model_path"]) if model["base_model_path"] else None,
        "adapter_only": model["adapter_only"],
        "task_script": str(task.script), "task_function": task.function,
        "task_args": {"data_path": str(data) if data else None, "split": cell_split(exp, run, task),
                      "prompt": prompt, "system_prompt": system_prompt},
        "dataset_type": kind, "assistant_prefix": cell_prefix(run, task),
        "generation": generation, "limit": ev.limit, "scorers": task_scorers(exp, task),
        "vis_label": vis_label(cell), "log_dir": str(cell_dir / layout.LOGS),
        "device": run.controls.device, "dtype": run.controls.dtype, "source": source_of(exp),
        "gpus": gpus, "device_map": SPREAD if wants_spread(run.controls.device, gpus) else None,
    }


def cell_provenance(context: dict, python: str) -> dict:
    """What tools/provenance records for a cell: its data file, task script, model (and base model)."""
    files = {"task_script": context["task_script"]}
    if context["task_args"].get("data_path"):
        files["dataset"] = context["task_args"]["data_path"]
    models = {"model": context["model_path"]}
    if context.get("base_model_path"):
        models["base_model"] = context["base_model_path"]
    return {"python": python, "files": files, "models": models}


def source_of(exp: Experiment) -> str:
    """What rendered files name as their source: the resolved design copy in the experiment dir."""
    return str(layout.design_file(exp.dir))


def render(exp: Experiment, settings: Settings, files: RenderSet, task_args: dict | None = None) -> list[JobSpec]:
    """Add every cell's eval_config.yaml and the eval job scripts to `files`; return the eval jobs: one per
    cell, or one per group of cells (`evaluation.group`, workers/inspect/groups.py).
    `task_args` {task: {keyword: value}} adds keyword arguments for a task's @task function (`generate`)."""
    env = job_environment(settings, exp.dir)
    python = "python" if (env["venv"] or env["conda_env"]) else sys.executable
    by = exp.evaluation.group
    jobs = []
    for cells in groups.grouped(exp.cells(), by):
        run = exp.run(cells[0].run)
        contexts = []
        for cell in cells:
            context = cell_context(exp, settings, cell)
            context["task_args"].update((task_args or {}).get(cell.task, {}))
            files.add(f"{cell_relpath(cell)}/{CONFIG_FILE}", render_template(f"inspect/{CONFIG_FILE}.j2", **context))
            contexts.append(context)
        if len(cells) == 1:
            rel, context = cell_relpath(cells[0]), contexts[0]
            job = JobSpec(
                id=job_id(cells[0]), kind="eval", run=run.name, script=f"{rel}/{SCRIPT_FILE}",
                after=[f"{run.name}.train"] if run.trains else [], log=str(layout.job_log(exp.dir / rel)),
                output_dir=context["log_dir"], stage=run.stage, task=cells[0].task, epoch=cells[0].epoch,
                meta={"cell": cells[0].dirname, "vis_label": context["vis_label"],
                      "model_path": context["model_path"], "config": f"{rel}/{CONFIG_FILE}"})
            extra = {"config_file": CONFIG_FILE, "runner": RUNNER, "provenance": cell_provenance(context, python),
                     "res": cell_resources(exp, settings, run)}
        else:
            rel = layout.group_relpath(run.name, groups.group_dirname(cells, by))
            members = [groups.cell_entry(c, ctx, job_id(c), str(exp.dir / cell_relpath(c) / CONFIG_FILE))
                       for c, ctx in zip(cells, contexts)]
            job = JobSpec(
                id=groups.group_job_id(run.name, Path(rel).name), kind="eval", run=run.name,
                script=f"{rel}/{SCRIPT_FILE}", after=[f"{run.name}.train"] if run.trains else [],
                log=str(layout.job_log(exp.dir / rel)), stage=run.stage, meta={"cells": members, "group": by})
            files.add(f"{rel}/{layout.EVAL_GROUP_CONFIG}", render_template(
                f"inspect/{layout.EVAL_GROUP_CONFIG}.j2", job_id=job.id, run=run.name, by=by, cells=members,
                provenance=[cell_provenance(ctx, python) for ctx in contexts], source=source_of(exp),
                state_file=layout.EVAL_GROUP_STATE))
            res = cell_resources(exp, settings, run)
            extra = {"config_file": layout.EVAL_GROUP_CONFIG, "runner": GROUP_RUNNER, "provenance": None,
                     "res": {**res, "time": groups.scaled_time(res["time"], len(cells))}, "cells": len(cells)}
        script = render_template(
            f"inspect/{SCRIPT_FILE}.j2", job_name=job.id, job_id=job.id, log=job.log, env=env,
            workdir=str(exp.dir / rel), exit_code_file=str(exp.dir / job.exit_code_file), source=source_of(exp),
            python=python, **extra)
        files.add(job.script, script, executable=True)
        jobs.append(job)
    return jobs

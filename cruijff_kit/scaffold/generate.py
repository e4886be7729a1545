"""Render a lightweight sweep from DIR/experiment.yaml: one torchtune config and one eval script per
grid point, a run mapping and SLURM array scripts.

  cruijff-kit generate DIR                 # or: python -m cruijff_kit.scaffold.generate DIR
  cruijff-kit generate DIR --dry-run       # print the files that would be written; write nothing
  cruijff-kit generate DIR --profile tiny  # apply `profiles.tiny` of experiment.yaml first

Writes (relative to DIR; names from `output:`):
  configs/train_000.yaml ...  torchtune's built-in `framework_config.base_config` with the sweep's controls,
                              the run's grid point and `controls._override` applied; output_dir results/run_000.
                              Run: tune run lora_finetune_single_device --config configs/train_000.yaml
  configs/eval_000.py ...     runs every evaluation task (inspect-ai, hf/local, greedy, HF_HUB_OFFLINE=1) on
                              the run's checkpoint; logs to eval_results/run_000. Run: python configs/eval_000.py
  configs/run_mapping.yaml    run id -> grid values, config, eval script, checkpoint and log paths
  configs/train_sweep.slurm   SLURM job array over the train configs (bash it to train every run in turn)
  configs/eval_sweep.slurm    SLURM job array over the eval scripts (sbatch --dependency=aftercorr:TRAIN_JOB)

experiment.yaml is translated into the same typed experiment a design becomes (one fine-tuned run per grid
point) and the controls reach torchtune through the torchtune worker's mapping, as with `scaffold`; see
cruijff_kit/generate_model.py for the file format. Files are written atomically and never clobbered: an
unchanged file is left alone and a file you edited is kept unless --force. Grids of more than 2 variables
are warned about; grids of 100 runs or more need --yes.
"""
from __future__ import annotations

import copy
import pprint
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.scaffold.generate_model import (
    CONFIRM_RUNS_FROM, DATASET_COMPONENT, RECIPE, WARN_VARIABLES_ABOVE, Sweep, control_settings, load_sweep,
)
from cruijff_kit.settings import Settings

TEMPLATES = "generate"
MAPPING_FILE = "run_mapping.yaml"
TRAIN_SWEEP = "train_sweep.slurm"
EVAL_SWEEP = "eval_sweep.slurm"
JSON_DATASET_KEYS = ("dataset_type", "prompt", "system_prompt", "train_on_input", "packed")


def configure(parser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the sweep directory holding experiment.yaml")
    parser.add_argument("--profile", help="apply a profile from experiment.yaml's `profiles:` (e.g. tiny)")
    parser.add_argument("-y", "--yes", action="store_true", help=f"generate grids of {CONFIRM_RUNS_FROM} runs or more")
    parser.add_argument("--dry-run", action="store_true", help="print the files that would be written; write nothing")
    parser.add_argument("--force", action="store_true", help="overwrite files you edited since they were generated")


# -- one run ---------------------------------------------------------------------------------------
def set_dotted(config: dict, key: str, value) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def train_config(sweep: Sweep, index: int) -> dict:
    """The run's torchtune config as data: built-in config <- dataset <- controls <- _override."""
    from cruijff_kit.experiment.load import deep_merge

    run = sweep.exp.runs[index]
    config = copy.deepcopy(sweep.base)
    config["output_dir"] = str(sweep.results_dir / run.name)
    if isinstance(sweep.dataset, Path):
        block = {"_component_": DATASET_COMPONENT, "source": str(sweep.dataset), "split": "train"}
        block.update({k.split(".", 1)[1]: v for k, v in control_settings(run.controls, JSON_DATASET_KEYS).items()})
        config["dataset"] = block
    elif isinstance(sweep.dataset, dict):
        config["dataset"] = copy.deepcopy(sweep.dataset)
    for key, value in control_settings(run.controls, sweep.explicit).items():
        set_dotted(config, key, value)
    return deep_merge(config, sweep.override)


def resolved(config: dict, key: str) -> str:
    """A config value with its ${...} interpolations resolved, as torchtune will see it."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(OmegaConf.create(config), key, throw_on_missing=False)
    return "" if value is None else str(value)


def checkpoint_path(config: dict, epoch: int) -> Path:
    """Where the HF checkpointer writes epoch `epoch`: {checkpointer.output_dir}/epoch_{N}."""
    out = resolved(config, "checkpointer.output_dir") or resolved(config, "output_dir")
    return Path(out) / f"epoch_{epoch}"


def eval_cells(sweep: Sweep, settings: Settings, index: int, config: dict) -> list[dict]:
    """run_cell configs (the inspect worker's eval-cell settings) for every task of one run."""
    from cruijff_kit.workers.inspect.evaluator import cell_context, task_params

    run = sweep.exp.runs[index]
    by_name = {t.name: t for t in sweep.tasks}
    cells = []
    for cell in sweep.exp.cells():
        if cell.run != run.name:
            continue
        task = by_name[cell.task]
        context = cell_context(sweep.exp, settings, cell)
        accepted = task_params(str(task.script), task.function)
        training_prompts = {k: context["task_args"][k] for k in ("prompt", "system_prompt")
                            if accepted is None or k in accepted}
        context.update(
            model_path=str(checkpoint_path(config, cell.epoch)),
            log_dir=str(sweep.eval_results_dir / run.name),
            task_args={**training_prompts, **task.args},
            device=str(config.get("device") or "cpu"), dtype=str(config.get("dtype") or "auto"),
            source=str(sweep.source), job_id=f"{run.name}.eval.{cell.dirname}")
        cells.append(context)
    return cells


# -- the sweep -------------------------------------------------------------------------------------
@dataclass
class Generated:
    files: object  # RenderSet
    train: list = field(default_factory=list)  # relative paths
    evals: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def _tools(settings: Settings, sweep: Sweep) -> tuple[dict, str, str]:
    from cruijff_kit.jobscript import job_environment

    env = job_environment(settings, sweep.dir)
    activated = bool(env["venv"] or env["conda_env"])
    python = "python" if activated else sys.executable
    tune = "tune" if activated else str(Path(sys.executable).with_name("tune"))
    return env, python, tune


def _flow(params: dict) -> str:
    from cruijff_kit.workers.torchtune.trainer import yv

    return yv(params)


def build(sweep: Sweep, settings: Settings) -> Generated:
    from cruijff_kit.files import yaml_dump
    from cruijff_kit.jobscript import resources
    from cruijff_kit.render import RenderSet, render

    files = RenderSet(sweep.dir)
    out = Generated(files)
    configs = sweep.rel(sweep.configs_dir)
    source = sweep.rel(sweep.source)
    rows, devices = [], []
    for i, run in enumerate(sweep.exp.runs):
        params = dict(sweep.grid[i])
        config = train_config(sweep, i)
        devices.append(str(config.get("device") or "cuda"))
        train_rel = f"{configs}/train_{run.name.removeprefix('run_')}.yaml"
        files.add(train_rel, render(f"{TEMPLATES}/train.yaml.j2", run=run.name, experiment=sweep.exp.name,
                                    params=_flow(params) if params else "no variables", source=source,
                                    base_config=sweep.base_config, recipe=RECIPE, config=train_rel,
                                    body=yaml_dump(config)))
        out.train.append(train_rel)
        row = {"name": run.name, "params": _flow(params), "train_config": train_rel,
               "output_dir": config["output_dir"], "eval_script": None, "model_path": None, "eval_dir": None}
        if sweep.eval_enabled:
            cells = eval_cells(sweep, settings, i, config)
            eval_rel = f"{configs}/eval_{run.name.removeprefix('run_')}.py"
            files.add(eval_rel, render(
                f"{TEMPLATES}/eval.py.j2", run=run.name, experiment=sweep.exp.name,
                params=_flow(params) if params else "no variables", source=source, script=eval_rel,
                train_config=train_rel, recipe=RECIPE, model_path=cells[0]["model_path"],
                log_dir=cells[0]["log_dir"], tasks=", ".join(c["task"] for c in cells),
                cells=[pprint.pformat(c, indent=1, width=100, sort_dicts=False) for c in cells]),
                executable=True)
            out.evals.append(eval_rel)
            row.update(eval_script=eval_rel, model_path=cells[0]["model_path"], eval_dir=cells[0]["log_dir"])
        rows.append(row)
    variables = [sweep.user_names[k] for k in sweep.exp.variables]
    files.add(f"{configs}/{MAPPING_FILE}", render(
        f"{TEMPLATES}/{MAPPING_FILE}.j2", experiment=sweep.exp.name, source=source, base_config=sweep.base_config,
        recipe=RECIPE, variables=variables, runs=rows, question=sweep.exp.question))
    if sweep.slurm_scripts:
        env, python, tune = _tools(settings, sweep)
        device = "cpu" if devices and all(d == "cpu" for d in devices) else "cuda"
        res = resources(settings, dict(sweep.slurm), device=device)
        common = dict(env=env, res=res, workdir=str(sweep.dir), source=str(sweep.source), experiment=sweep.exp.name,
                      last=len(rows) - 1, count=len(rows))
        train_script = f"{configs}/{TRAIN_SWEEP}"
        eval_script = f"{configs}/{EVAL_SWEEP}"
        files.add(train_script, render(
            f"{TEMPLATES}/{TRAIN_SWEEP}.j2", job_name=f"{sweep.exp.name}.train", job_id=f"{sweep.exp.name}.train",
            log=str(sweep.configs_dir / "train_sweep-%A_%a.out"), exit_code_file=str(sweep.dir / train_script) +
            ".exitcode", script=train_script, items=out.train, tune=tune, recipe=RECIPE,
            eval_script=eval_script if out.evals else "", **common), executable=True)
        if out.evals:
            files.add(eval_script, render(
                f"{TEMPLATES}/{EVAL_SWEEP}.j2", job_name=f"{sweep.exp.name}.eval", job_id=f"{sweep.exp.name}.eval",
                log=str(sweep.configs_dir / "eval_sweep-%A_%a.out"), exit_code_file=str(sweep.dir / eval_script) +
                ".exitcode", script=eval_script, items=out.evals, python=python, train_script=train_script,
                **common), executable=True)
    return out


def grid_warnings(sweep: Sweep, *, yes: bool) -> list[str]:
    """Warnings about the grid's size; raises when it reaches CONFIRM_RUNS_FROM runs without --yes."""
    lines = []
    sizes = [len(v) for v in sweep.exp.variables.values()]
    n = len(sweep.exp.runs)
    if len(sizes) > WARN_VARIABLES_ABOVE:
        shape = " x ".join(map(str, sizes))
        lines.append(f"warning: {sweep.shown}: variables: {len(sizes)} variables make a {shape} grid of {n} runs; "
                     "consider varying at most 2 at a time")
    if n >= CONFIRM_RUNS_FROM:
        if not yes:
            raise UserError(f"the grid has {n} runs", where=sweep.shown, path="variables",
                            hint="pass --yes to generate them all, or vary fewer values")
        lines.append(f"warning: {sweep.shown}: variables: the grid has {n} runs (generating them: --yes)")
    return lines


def stale_files(sweep: Sweep, generated: Generated) -> list[str]:
    """train_NNN.yaml / eval_NNN.py files of an earlier, larger grid (not rewritten, not in the sweep scripts)."""
    current = set(generated.train) | set(generated.evals)
    if not sweep.configs_dir.is_dir():
        return []
    return sorted(sweep.rel(p) for pattern in ("train_[0-9]*.yaml", "eval_[0-9]*.py")
                  for p in sweep.configs_dir.glob(pattern) if sweep.rel(p) not in current)


def _range(paths: list[str], what: str) -> str:
    names = [Path(p).name for p in paths]
    if len(names) == 1:
        return f"✓ Generated 1 {what} ({names[0]})"
    return f"✓ Generated {len(names)} {what}s ({names[0]} to {names[-1]})"


def main(args) -> int:
    from cruijff_kit.settings import load_settings

    settings = load_settings()
    sweep = load_sweep(args.dir, profile=args.profile, settings=settings)
    for line in grid_warnings(sweep, yes=args.yes):
        print(line, file=sys.stderr)
    for problem in sweep.warnings:
        print(problem.line(), file=sys.stderr)
    checkpoint_dir = sweep.exp.models[0].path
    if not checkpoint_dir.is_dir():
        print(f"warning: {sweep.shown}: checkpointer.checkpoint_dir: {checkpoint_dir} not found (yet); "
              "put the model there or point controls._override.checkpointer.checkpoint_dir at it",
              file=sys.stderr)
    generated = build(sweep, settings)
    if args.dry_run:
        print(generated.files.tree())
        print(f"dry run: {len(generated.files.files)} files, nothing written")
        return 0
    report = generated.files.commit(force=args.force)
    for rel in report.preserved:
        print(f"kept {rel}: edited since it was generated (use --force to overwrite)", file=sys.stderr)
    for rel in stale_files(sweep, generated):
        print(f"warning: {rel} is not part of this grid (left from an earlier one); delete it", file=sys.stderr)
    print(_range(generated.train, "training config"))
    if sweep.eval_enabled:
        print(_range(generated.evals, "evaluation script"))
        print("✓ Validated all evaluation tasks")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("generate")

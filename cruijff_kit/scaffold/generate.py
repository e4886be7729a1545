"""Scaffold a lightweight sweep from DIR/experiment.yaml: an ordinary experiment in DIR, with jobs.json.

  cruijff-kit generate DIR                 # or: python -m cruijff_kit.generate DIR
  cruijff-kit generate DIR --dry-run       # print the files that would be written; write nothing
  cruijff-kit generate DIR --profile tiny  # apply `profiles.tiny` of experiment.yaml first
  cruijff-kit run DIR                      # then: train and evaluate every run (status, resubmit, summarize too)

experiment.yaml becomes a design (generate_model.py) and goes through `scaffold` like any design: the
torchtune worker renders each run's files with torchtune's built-in `framework_config.base_config` under
its finetune.yaml and `controls._override` over it (workers/torchtune/overlay.py), the inspect worker
renders an eval cell per task with the task's `args`, and scaffold writes them with jobs.json and the
resolved design (experiment_summary.yaml). Writes, relative to DIR:
  run_000/finetune.yaml ...          the run's torchtune config (+ setup_finetune.yaml, finetune.slurm)
  run_000/eval/TASK_epochN/ ...      eval_config.yaml + inspect.slurm per task
  configs/run_mapping.yaml           run id -> grid values, config, checkpoint and eval paths
  experiment_summary.yaml, jobs.json the experiment `cruijff-kit run / status / resubmit / summarize` read
Checkpoints and training logs go to results/run_000/ (output.results_dir). Files are never clobbered:
an unchanged file is left alone and a file you edited is kept unless --force. Grids of more than 2
variables are warned about; grids of 100 runs or more need --yes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path

from cruijff_kit.errors import UserError, ValidationFailed
from cruijff_kit.experiment import layout
from cruijff_kit.scaffold.generate_model import CONFIRM_RUNS_FROM, WARN_VARIABLES_ABOVE, Sweep, load_sweep, user_problems
from cruijff_kit.settings import Settings

MAPPING_FILE = "run_mapping.yaml"


def configure(parser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the sweep directory holding experiment.yaml")
    parser.add_argument("--profile", help="apply a profile from experiment.yaml's `profiles:` (e.g. tiny)")
    parser.add_argument("-y", "--yes", action="store_true", help=f"generate grids of {CONFIRM_RUNS_FROM} runs or more")
    parser.add_argument("--dry-run", action="store_true", help="print the files that would be written; write nothing")
    parser.add_argument("--force", action="store_true", help="overwrite files you edited since they were generated")


@dataclass
class SweepSettings(Settings):
    """claude.local.md's settings, with each run's outputs under the sweep's results dir."""

    results_root: str = ""

    def output_dir(self, experiment: str, run: str) -> Path:
        return Path(self.results_root) / run


def sweep_settings(settings: Settings, sweep: Sweep) -> SweepSettings:
    return SweepSettings(**{f.name: getattr(settings, f.name) for f in fields(Settings)},
                         results_root=str(sweep.results_dir))


def _params(sweep: Sweep, run: str) -> str:
    from cruijff_kit.workers.torchtune.trainer import yv

    params = sweep.grid[[r.name for r in sweep.exp.runs].index(run)]
    return yv(params) if params else "no variables"


def config_overlay(sweep: Sweep):
    """finetune.yaml text -> the same config over the base config, with _override last (trainer hook)."""
    from cruijff_kit.files import yaml_dump, yaml_load
    from cruijff_kit.render import render
    from cruijff_kit.workers.torchtune.overlay import merge

    def apply(plan, text: str) -> str:
        config = merge(yaml_load(text), sweep.base, sweep.override)
        return render("generate/finetune.yaml.j2", run=plan.run.name, experiment=sweep.exp.name,
                      params=_params(sweep, plan.run.name), source=sweep.rel(sweep.dir / "experiment.yaml"),
                      base_config=sweep.base_config, config=f"{plan.rel_dir}/{layout.FINETUNE_CONFIG}", dir=str(sweep.dir),
                      body=yaml_dump(config))
    return apply


def run_mapping(sweep: Sweep, settings: Settings) -> str:
    from cruijff_kit.render import render
    from cruijff_kit.workers.inspect.evaluator import cell_relpath
    from cruijff_kit.workers.torchtune.trainer import RECIPE_MODULE

    cells = sweep.exp.cells()
    rows = []
    for run in sweep.exp.runs:
        mine = [c for c in cells if c.run == run.name]
        out = settings.output_dir(sweep.exp.name, run.name)
        rows.append({"name": run.name, "params": _params(sweep, run.name), "train_config": f"{run.name}/{layout.FINETUNE_CONFIG}",
                     "output_dir": str(out), "model_path": str(layout.epoch_dir(out, mine[0].epoch)) if mine else None,
                     "eval_configs": [f"{cell_relpath(c)}/{layout.EVAL_CONFIG}" for c in mine],
                     "eval_dir": f"{run.name}/{layout.EVAL_DIR}" if mine else None})
    variables = [sweep.user_names[k] for k in sweep.exp.variables]
    return render(f"generate/{MAPPING_FILE}.j2", experiment=sweep.exp.name, source="experiment.yaml",
                  base_config=sweep.base_config, recipe=RECIPE_MODULE, variables=variables, runs=rows,
                  question=sweep.exp.question)


def design_copy(sweep: Sweep) -> str:
    """experiment_summary.yaml: the translated design, resolved as scaffold writes it, with our header."""
    from cruijff_kit.files import yaml_dump
    from cruijff_kit.render import render
    from cruijff_kit.scaffold.scaffold import SUMMARY_FILE, resolved_design

    return SUMMARY_FILE, render("generate/experiment_summary.yaml.j2", source=sweep.shown, name=sweep.exp.name,
                                dir=str(sweep.dir), body=yaml_dump(resolved_design(sweep.exp)))


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


def generate(directory: str | Path, *, profile: str | None = None, yes: bool = False, dry_run: bool = False,
             force: bool = False, settings: Settings | None = None):
    """(Sweep, scaffold Outcome, warning lines): experiment.yaml scaffolded through the workers."""
    from cruijff_kit.scaffold.scaffold import scaffold
    from cruijff_kit.settings import load_settings

    settings = settings or load_settings()
    sweep = load_sweep(directory, profile=profile, settings=settings)
    lines = grid_warnings(sweep, yes=yes) + [p.line() for p in sweep.warnings]
    model_dir = sweep.exp.models[0].path
    if not model_dir.is_dir():
        lines.append(f"warning: {sweep.shown}: checkpointer.checkpoint_dir: {model_dir} not found (yet); put the "
                     "model there or point controls._override.checkpointer.checkpoint_dir at it")
    ours = sweep_settings(settings, sweep)
    extra = dict([design_copy(sweep), (sweep.rel(sweep.configs_dir / MAPPING_FILE), run_mapping(sweep, ours))])
    try:
        outcome = scaffold(sweep.dir, exp=sweep.exp, settings=ours, dry_run=dry_run, force=force, log=False,
                           quiet=True, extra_files=extra,
                           worker_options={"torchtune": {"config_overlay": config_overlay(sweep)},
                                           "inspect-ai": {"task_args": sweep.task_args}})
    except ValidationFailed as exc:
        raise ValidationFailed(user_problems(exc.problems, sweep.shown, sweep.user_names)) from None
    known = set(lines)
    for p in user_problems(outcome.warnings, sweep.shown, sweep.user_names):  # tasks here name their own data
        if p.line() not in known and "takes no data_path" not in p.message:
            lines.append(p.line())
    return sweep, outcome, lines


def _range(paths: list[str], what: str) -> str:
    if len(paths) == 1:
        return f"✓ Generated 1 {what} ({paths[0]})"
    return f"✓ Generated {len(paths)} {what}s ({paths[0]} to {paths[-1]})"


def main(args) -> int:
    sweep, outcome, warnings = generate(args.dir, profile=args.profile, yes=args.yes, dry_run=args.dry_run,
                                        force=args.force)
    for line in warnings:
        print(line, file=sys.stderr)
    if args.dry_run:
        print(outcome.files.tree())
        print(f"dry run: {len(outcome.files.files)} files, {len(outcome.jobs)} jobs, nothing written")
        return 0
    for rel in outcome.report.preserved:
        print(f"kept {rel}: edited since it was generated (use --force to overwrite)", file=sys.stderr)
    for name in outcome.stale:
        print(f"warning: {name}/ is not part of this grid (left from an earlier one); delete it", file=sys.stderr)
    print(_range([f"{j.run}/{layout.FINETUNE_CONFIG}" for j in outcome.jobs if j.kind == "train"], "training config"))
    evals = [layout.cell_relpath(c.run, c.meta["cell"]) for j in outcome.jobs if j.kind == "eval" for c in j.cells()]
    if evals:
        print(_range(evals, "evaluation config"))
        print("✓ Validated all evaluation tasks")
    shown = args.dir if Path(args.dir).name != "experiment.yaml" else str(Path(args.dir).parent)
    print(f"✓ Wrote {layout.JOBS} ({len(outcome.jobs)} jobs); next: cruijff-kit run {shown}")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("generate")

"""Render every run of a design into the experiment directory: torchtune files for fine-tuning runs,
inspect-ai eval cells for every evaluation, the resolved design copy and jobs.json.

  cruijff-kit scaffold path/to/experiment_summary.yaml [--profile tiny]
  cruijff-kit scaffold EXPERIMENT_DIR                  # from the resolved copy scaffold wrote there
  cruijff-kit scaffold DESIGN --dry-run                # print the file tree, write nothing
  cruijff-kit scaffold DESIGN --only RUN [RUN ...]     # (re)write only these runs' directories

The design is validated once; every worker (`tools.preparation`, `tools.evaluation`) checks it first and all
problems are reported together, then the workers render into one no-clobber set of files: unchanged files
are left alone (re-scaffolding an unchanged design changes nothing), a file you edited since it was
rendered is kept and named unless --force. `{exp dir}/experiment_summary.yaml` is the design with the
profile applied and every path absolute, so `cruijff-kit run/scaffold EXPERIMENT_DIR` work from there.
Each scaffold is logged to `{exp dir}/scaffold-experiment.log`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.errors import Problem, UserError, ValidationFailed, closest
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.model import Experiment
from cruijff_kit.settings import Settings

SUMMARY_FILE = layout.DESIGN
LIST_LIMIT = 12


def configure(parser) -> None:
    parser.add_argument("design", metavar="EXPERIMENT_DIR_OR_YAML",
                        help="an experiment_summary.yaml, or a directory holding one")
    parser.add_argument("--profile", help="apply a profile from the design's `profiles:` (e.g. tiny)")
    parser.add_argument("--dry-run", action="store_true", help="print the files that would be written; write nothing")
    parser.add_argument("--force", action="store_true", help="overwrite files you edited since they were rendered; write into a non-empty "
                        "experiment dir cruijff_kit did not create")
    parser.add_argument("--only", nargs="+", action="extend", metavar="RUN",
                        help="scaffold only these runs (their directories and jobs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every file written")
    parser.add_argument("--no-log", action="store_true", help="do not append to scaffold-experiment.log")


@dataclass
class Outcome:
    exp: Experiment
    jobs: list = field(default_factory=list)
    files: object = None  # the RenderSet
    report: object = None  # render.WriteReport (None for a dry run)
    warnings: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (kind, tool, why) of workers not available
    stale: list = field(default_factory=list)  # run dirs no longer in the design
    per_worker: dict = field(default_factory=dict)  # tool -> (number of jobs, its file paths)
    seconds: float = 0.0
    frozen: list = field(default_factory=list)  # files of submitted jobs left as they ran (no --force)


# -- helpers ---------------------------------------------------------------------------------------
def _workers(exp: Experiment) -> tuple[list, list]:
    """[(kind, tool, module)] routed through cruijff_kit.workers; workers not installed yet are skipped."""
    from cruijff_kit import workers

    out, skipped = [], []
    for kind, table, get in (("preparation", workers.PREPARATION, workers.preparation_worker),
                             ("evaluation", workers.EVALUATION, workers.evaluation_worker)):
        tool = exp.tools.get(kind)
        if not tool:
            continue
        try:
            out.append((kind, tool, get(tool)))
        except ModuleNotFoundError as exc:
            if exc.name != table.get(tool):
                raise
            skipped.append((kind, tool, f"worker {table[tool]} is not installed"))
    return out, skipped


def resolved_design(exp: Experiment) -> dict:
    """exp.raw with the profile applied (already), no profiles, every path absolute and the dir fixed."""
    data = {k: v for k, v in exp.raw.items() if k != "profiles"}
    data["experiment"] = {**data["experiment"], "dir": str(exp.dir)}
    data["models"] = {**data["models"], "base": [{**m, "path": str(model.path)}
                                                 for m, model in zip(data["models"]["base"], exp.models)]}
    if data.get("data"):
        data["data"] = dict(data["data"])
        for key, ds in (("training", exp.training_data), ("preference", exp.preference_data)):
            if ds is not None and key in data["data"]:
                data["data"][key] = {**data["data"][key], "path": ds.path}
    if data.get("runs") and any(r.checkpoint_path for r in exp.runs):
        data["runs"] = [{**raw, "checkpoint_path": str(run.checkpoint_path)} if run.checkpoint_path else raw
                        for raw, run in zip(data["runs"], exp.runs)]
    ev = data.get("evaluation")
    if ev and ev.get("tasks"):
        tasks = []
        for raw, task in zip(ev["tasks"], exp.evaluation.tasks):
            raw = {**raw, "script": str(task.script)}
            if task.dataset is not None:
                raw["dataset"] = str(task.dataset)
            tasks.append(raw)
        data["evaluation"] = {**ev, "tasks": tasks}
    return data


def _design_copy(exp: Experiment) -> str:
    from cruijff_kit.files import yaml_dump
    from cruijff_kit.render import render

    return render(f"{layout.DESIGN}.j2", exp=exp, body=yaml_dump(resolved_design(exp)))


def _run_of(rel: str, names: set) -> str | None:
    head = rel.split("/", 1)[0]
    return head if head in names and "/" in rel else None


def _stale_runs(exp: Experiment) -> list[str]:
    names = {r.name for r in exp.runs}
    if not exp.dir.is_dir():
        return []
    return sorted(p.name for p in exp.dir.iterdir() if p.name not in names and layout.is_run_dir(p))


def _merge_jobs(exp_dir: Path, jobs: list, selected: set) -> list:
    """--only: the selected runs' new jobs, plus the jobs already scaffolded for the design's other runs
    (from the existing jobs.json), in the design's job order. Runs no longer in the design drop out."""
    from cruijff_kit.files import read_json
    from cruijff_kit.experiment.jobs import JobSpec

    old = {j["id"]: j for j in (read_json(layout.jobs_file(exp_dir)) or {}).get("jobs", [])}
    out = []
    for job in jobs:
        if job.run in selected:
            out.append(job)
        elif job.id in old:
            out.append(JobSpec(**old[job.id]))
    return out


def submitted_jobs(exp_dir: Path) -> set[str]:
    """Ids of the jobs `run` has submitted (any state past pending), from .ck/state.json."""
    from cruijff_kit.files import read_json

    state = read_json(layout.state_file(exp_dir), {}) or {}
    jobs = state.get("jobs") if isinstance(state.get("jobs"), dict) else {}
    return {job_id for job_id, js in jobs.items() if isinstance(js, dict) and (
        js.get("submitted") or js.get("native_id") or js.get("state") not in (None, "pending"))}


def _freeze_submitted(exp_dir: Path, jobs: list, files) -> list[str]:
    """Keep the files a submitted job ran with (its script's folder, not the folders below it): the script
    on disk stays the one that ran. Returns the files left alone."""
    submitted = submitted_jobs(exp_dir)
    folders = {str(Path(j.script).parent) for j in jobs if j.id in submitted}
    frozen = []
    if not folders:
        return frozen
    for rel in sorted(files.files):
        if str(Path(rel).parent) in folders and (exp_dir / rel).exists():
            text = files.files[rel][0]
            if (exp_dir / rel).read_bytes() != text.encode():
                frozen.append(rel)
            del files.files[rel]
    return frozen


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


# -- the verb --------------------------------------------------------------------------------------
def scaffold(design: str | Path, *, profile: str | None = None, dry_run: bool = False, force: bool = False,
             only: list[str] | None = None, settings: Settings | None = None, log: bool = True,
             quiet: bool = False, exp: Experiment | None = None, worker_options: dict | None = None,
             extra_files: dict | None = None) -> Outcome:
    """`exp`, when given (built by `generate`), is rendered instead of loading `design`; `worker_options`
    {tool: keyword arguments of that worker's render()}; `extra_files` {relpath: text} go with the rest
    (and win over scaffold's own files of the same path, such as the design copy)."""
    from cruijff_kit.experiment.load import load_experiment, resolve_design_path
    from cruijff_kit.experiment.jobs import jobs_payload
    from cruijff_kit.render import RenderSet
    from cruijff_kit.settings import load_settings

    start = time.perf_counter()
    settings = settings or load_settings()
    source = resolve_design_path(design)
    warnings: list[Problem] = []
    if exp is None and (source.parent / "experiment.yaml").is_file():
        raise UserError(f"{source.parent} is a `generate` sweep (it holds experiment.yaml)", where=str(source),
                        hint=f"re-render it with `cruijff-kit generate {source.parent}`")
    if exp is None:
        _progress(f"[scaffold] loading {source}" + (f" (profile {profile})" if profile else ""), quiet)
        exp = load_experiment(source, profile=profile, settings=settings, warnings=warnings)
    from cruijff_kit.experiment.safety import check_experiment_dir

    check_experiment_dir(exp, force=force)  # never /, ~, a system dir, a file or someone else's folder
    names = [r.name for r in exp.runs]
    selected = set(names)
    if only:
        bad = [n for n in only if n not in selected]
        if bad:
            hint = closest(bad[0], names)
            raise UserError(f"'{bad[0]}' is not a run of {exp.name}", where="--only",
                            hint=(hint + "; " if hint else "") + f"runs: {', '.join(names[:20])}"
                            + (" ..." if len(names) > 20 else ""))
        selected = set(only)
    workers, skipped = _workers(exp)
    _progress(f"[scaffold] checking {len(exp.runs)} runs with {', '.join(t for _, t, _ in workers)}", quiet)
    from cruijff_kit.workers.check import design_problems
    from cruijff_kit.workers.prefs import generator as prefs_worker  # data.preference.generate -> the prefs job

    problems = design_problems(exp, settings)  # the same checks `validate` runs
    problems.raise_if_errors()
    warnings = _dedupe([*warnings, *problems.warnings])
    files = RenderSet(exp.dir)
    jobs, per_worker = [], {}
    for _kind, tool, module in workers:
        before = set(files.files)
        made = module.render(exp, settings, files, **(worker_options or {}).get(tool, {}))
        per_worker[tool] = (len(made), set(files.files) - before)
        jobs += made
    if prefs_worker.generate_spec(exp) is not None:
        before = set(files.files)
        made = prefs_worker.render(exp, settings, files, jobs)  # also makes the dpo jobs wait for it
        per_worker["prefs"] = (len(made), set(files.files) - before)
        jobs += made
    if only:
        run_names = set(names)
        files.files = {rel: v for rel, v in files.files.items()
                       if _run_of(rel, run_names) is None or _run_of(rel, run_names) in selected}
        run_of_job = {j.id: j.run for j in jobs}
        jobs = _merge_jobs(exp.dir, jobs, selected)
        known = {j.id for j in jobs}
        for job in jobs:
            for dep in job.after:
                if dep not in known:
                    warnings.append(Problem("--only", job.run, f"job {job.id} waits for {dep}, which is not "
                                            "scaffolded", f"add {run_of_job.get(dep, dep)} to --only", "warning"))
    copy_path = exp.dir / SUMMARY_FILE
    if exp.source.resolve() != copy_path.resolve():  # never overwrite a design that lives in the exp dir
        files.add(SUMMARY_FILE, _design_copy(exp))
    for rel, text in (extra_files or {}).items():
        files.add(rel, text)
    files.add(layout.JOBS, json.dumps(jobs_payload(exp.name, jobs), indent=2, sort_keys=True, default=str) + "\n")
    frozen = [] if force else _freeze_submitted(exp.dir, jobs, files)
    outcome = Outcome(exp, jobs, files, None, warnings, skipped, _stale_runs(exp), per_worker, frozen=frozen)
    if dry_run:
        outcome.seconds = time.perf_counter() - start
        return outcome
    _progress(f"[scaffold] writing {len(files.files)} files under {exp.dir}", quiet)
    outcome.report = files.commit(force=force)
    # SLURM opens --output before the job starts: its directory must exist
    for folder in sorted({str(Path(j.log).parent) for j in jobs if j.run in selected and j.log.startswith("/")}):
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
    outcome.seconds = time.perf_counter() - start
    if log:
        _log(outcome, profile, only, force)
    return outcome


def _dedupe(problems: list[Problem]) -> list[Problem]:
    out, seen = [], set()
    for p in problems:
        if p.line() not in seen:
            seen.add(p.line())
            out.append(p)
    return out


def _log(o: Outcome, profile: str | None, only: list[str] | None, force: bool) -> None:
    from cruijff_kit import logbook

    path = o.exp.dir / logbook.LOG_NAMES["scaffold"]
    cmd = f"cruijff-kit scaffold {o.exp.source}" + (f" --profile {profile}" if profile else "") + (
        f" --only {' '.join(only)}" if only else "") + (" --force" if force else "")
    r = o.report
    cells = sum(len(j.cells()) for j in o.jobs if j.kind == "eval")
    logbook.log(path, "SCAFFOLD", f"scaffolded {o.exp.name}: {len(o.exp.runs)} runs, {cells} eval cells, "
                f"{len(o.jobs)} jobs", command=cmd, result=r.summary(),
                explanation="rendered from the validated design; unchanged files left alone, edited files kept"
                + (" (forced)" if force else ""),
                details=f"preserved: {', '.join(r.preserved)}" if r.preserved else None)
    for tool, (n, mine) in o.per_worker.items():
        counts = [sum(1 for f in lst if f in mine) for lst in (r.written, r.unchanged, r.preserved)]
        logbook.log(path, "SCAFFOLD_" + tool.upper().replace("-", "_"), f"{tool} rendered {n} jobs",
                    command=cmd, result="{} written, {} unchanged, {} preserved".format(*counts),
                    explanation=f"{tool} worker: check() then render() into the experiment's file set")
    for _kind, tool, why in o.skipped:
        logbook.log(path, "SCAFFOLD_" + tool.upper().replace("-", "_"), f"{tool} skipped",
                    command=cmd, result="no files", explanation=why)


def _listing(label: str, items: list[str], verbose: bool, always: bool = False) -> list[str]:
    if not items:
        return []
    shown = items if verbose or always else items[:LIST_LIMIT]
    lines = [f"  {label} ({len(items)}):"] + [f"    {i}" for i in shown]
    if len(shown) < len(items):
        lines.append(f"    ... and {len(items) - len(shown)} more (-v lists all)")
    return lines


def main(args) -> int:
    from cruijff_kit.settings import load_settings

    settings = load_settings()
    o = scaffold(args.design, profile=args.profile, dry_run=args.dry_run, force=args.force, only=args.only,
                 settings=settings, log=not args.no_log)
    for w in o.warnings:
        print(w.line(), file=sys.stderr)
    exp = o.exp
    trained = sum(1 for r in exp.runs if r.trains)
    cells = sum(len(j.cells()) for j in o.jobs if j.kind == "eval")
    head = (f"{exp.name}: {len(exp.runs)} runs ({trained} fine-tuned, {len(exp.runs) - trained} control/eval-only), "
            f"{len(exp.cells())} eval cells, {len(o.jobs)} jobs")
    for _kind, tool, why in o.skipped:
        print(f"note: {tool} cells not rendered: {why}", file=sys.stderr)
    if args.dry_run:
        print(o.files.tree())
        print(f"dry run: {head}; {len(o.files.files)} files would be written under {exp.dir} (nothing written)")
        return 0
    r = o.report
    lines = [f"Scaffolded {head} in {o.seconds:.1f}s", f"  experiment dir: {exp.dir}", f"  {r.summary()}"]
    lines += _listing("written", r.written, args.verbose)
    lines += _listing("unchanged", r.unchanged, args.verbose) if args.verbose else []
    lines += _listing("preserved, edited by you (--force overwrites)", r.preserved, args.verbose, always=True)
    lines += _listing("kept as submitted (the job ran with them; --force rewrites)", o.frozen, args.verbose,
                      always=True)
    if o.stale:
        lines.append(f"  note: {len(o.stale)} run dirs are no longer in the design: {', '.join(o.stale[:10])}"
                     + (" ..." if len(o.stale) > 10 else ""))
    if cells != len(exp.cells()) and not o.skipped and not args.only:
        lines.append(f"  note: {len(exp.cells())} cells in the matrix, {cells} eval jobs rendered")
    lines.append(f"Next: cruijff-kit run {exp.dir} --executor {settings.executor}")
    print("\n".join(lines))
    from cruijff_kit.workers.inspect.prompts import scaffold_check  # eval prompt tokens == training's

    mismatches = scaffold_check(exp.dir)
    if mismatches:
        raise ValidationFailed(mismatches)
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("scaffold")

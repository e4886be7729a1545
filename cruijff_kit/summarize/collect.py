"""Collect an experiment's results from disk: losses per run, eval scores per cell, job states, compute.

Inputs (all read defensively; anything missing becomes a flag, never a crash):

* `{exp}/experiment_summary.yaml` (the resolved design scaffold wrote) -> runs, cells, variables;
* `{exp}/jobs.json` (train job output dirs) and `{exp}/.ck/state.json` (`{"jobs": {id: {"state", "started",
  "ended", ...}}}`, written by the run engine) -> job states and times;
* per trained run: output_dir from `{run}/finetune.yaml` (else jobs.json, else the settings' scratch layout),
  its DiskLogger logs (`cruijff_kit.workers.torchtune.losses`), `training_summary.json` and `{exp}/{run}/compute.json` (the job's
  wall time wins over the recipe's own);
* per eval cell: `{exp}/{run}/eval/{cell}/logs/*.eval`, read header-only with inspect-ai, and the cell's
  compute.json (job wall time; the run engine writes it next to each job script).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.epochs import epoch_text, resolved_epoch
from cruijff_kit.experiment.runtypes import RUN_TYPES
from cruijff_kit.workers.inspect.scores import cell_logs, cell_scores
from cruijff_kit.files import read_json
from cruijff_kit.workers.torchtune.losses import OVERFIT_ABS, OVERFIT_REL, LossCurve, output_dir_from_config, read_losses

SUMMARY_YAML = layout.DESIGN
STATE_FILE = layout.STATE
COMPUTE_FILE = layout.COMPUTE
TRAINING_SUMMARY = layout.TRAINING_SUMMARY
SATURATION = 0.95
NOT_SCORES = ("stderr", "std", "var")  # metrics that describe spread, not a score


@dataclass
class Flag:
    kind: str  # missing | failed | incomplete | unreadable | saturated | overfitting | no_losses
    run: str
    message: str
    cell: str = ""

    def line(self) -> str:
        where = f"{self.run}/{self.cell}" if self.cell else self.run
        return f"{self.kind}: {where}: {self.message}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "run": self.run, "cell": self.cell, "message": self.message, "line": self.line()}


@dataclass
class CellResult:
    run: str
    task: str
    epoch: int | str | None  # a number, `best` / `last` (matrix names), None for a run evaluated once
    dirname: str
    resolved_epoch: int | None = None  # the epoch evaluated: the number, or what the job picked for best / last
    status: str = "missing"  # success | error | cancelled | started | missing | unreadable
    log: str = ""  # the .eval file used, relative to the experiment dir
    logs_found: int = 0
    samples: int | None = None
    completed_samples: int | None = None
    metrics: dict = field(default_factory=dict)  # "match.accuracy" -> 0.8
    error: str = ""
    eval_s: float | None = None
    job_state: str = ""
    base_run: str = ""  # the control run this cell is compared with
    deltas: dict = field(default_factory=dict)  # "match.accuracy" -> fine-tuned minus base
    reliability: list = field(default_factory=list)  # stats.add_reliability(): confidence bins (calibration)

    @property
    def job_id(self) -> str:
        return f"{self.run}.eval.{self.dirname}"

    @property
    def epoch_text(self) -> str:
        """`base`, `1`, `best`, or `best (1)` once its job picked the epoch (what the tables show)."""
        return epoch_text(self.epoch, self.resolved_epoch)


@dataclass
class RunResult:
    name: str
    type: str
    model: str
    values: dict  # the design's variables for this run ("" where not applicable)
    trains: bool
    output_dir: str = ""
    curve: LossCurve | None = None
    losses: dict = field(default_factory=dict)  # LossCurve.summary()
    overfitting: str = ""
    train_state: str = ""
    wall_s: float | None = None
    tokens_per_s: float | None = None
    peak_memory_gb: float | None = None


@dataclass
class Collected:
    exp: object  # cruijff_kit.experiment.model.Experiment
    exp_dir: Path
    runs: list[RunResult]
    cells: list[CellResult]
    flags: list[Flag]
    metrics: list[str]  # every "scorer.metric" seen, in first-seen order
    variables: list[str]  # design variables shown as columns
    generated: str = ""
    stages: list = field(default_factory=list)  # stage_progression(): per task/metric, a row per stage
    cost: dict | None = None  # stage_cost(): estimated vs actual GPU-hours / cost per stage
    comparisons: list = field(default_factory=list)  # stats.comparisons(): paired tests, Holm-corrected
    replicates: list = field(default_factory=list)  # stats.replicate_rows(): across-seed aggregates
    provenance: str = ""  # summarize/provenance.py: do the jobs come from the same data and software?

    def run(self, name: str) -> RunResult:
        return next(r for r in self.runs if r.name == name)

    @property
    def score_metrics(self) -> list[str]:
        return [m for m in self.metrics if m.rsplit(".", 1)[-1] not in NOT_SCORES]

    @property
    def has_controls(self) -> bool:
        return any(RUN_TYPES[r.type].baseline for r in self.runs)

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.cells))


# -- small readers ---------------------------------------------------------------------------------
def read_state(exp_dir: Path) -> dict[str, dict]:
    """{job id: record} from .ck/state.json; {} when absent or malformed."""
    try:
        data = read_json(exp_dir / STATE_FILE, {}) or {}
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        return {}
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def read_jobs_json(exp_dir: Path) -> dict[str, dict]:
    try:
        data = read_json(layout.jobs_file(exp_dir), {}) or {}
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return {j["id"]: j for j in jobs or [] if isinstance(j, dict) and "id" in j}


def _seconds(value) -> float | None:
    """Epoch seconds from a number or an ISO timestamp; None otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def duration(record: dict) -> float | None:
    start, end = _seconds(record.get("started")), _seconds(record.get("ended"))
    return end - start if start is not None and end is not None and end >= start else None


def _number(record: dict, *keys) -> float | None:
    for key in keys:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def read_record(path: Path) -> dict:
    try:
        data = read_json(path, {})
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_output_dir(exp, exp_dir: Path, run, jobs: dict, settings) -> Path:
    """finetune.yaml's output_dir, else jobs.json's train job, else the settings' scratch layout."""
    config = layout.run_dir(exp_dir, run.name) / layout.FINETUNE_CONFIG
    if config.is_file():
        try:
            return output_dir_from_config(config)
        except UserError:
            pass
    job = jobs.get(f"{run.name}.train") or {}
    if job.get("output_dir"):
        return Path(job["output_dir"])
    return settings.output_dir(exp.name, run.name)


def run_values(exp, run) -> dict:
    """The run's value of each design variable; '' where the variable does not apply (controls)."""
    out = {}
    for var in exp.variables:
        if var == "model":
            out[var] = run.model
        elif var == "dataset_label":
            out[var] = run.dataset_label or (run.parameters or {}).get(var, "")
        elif var in (run.parameters or {}):
            out[var] = run.parameters[var]
        elif run.trains and hasattr(run.controls, var):
            out[var] = getattr(run.controls, var)
        else:
            out[var] = ""
    return out


# -- eval logs -------------------------------------------------------------------------------------
def cell_log_dir(exp_dir: Path, run: str, dirname: str) -> Path:
    return layout.cell_logs(exp_dir, run, dirname)


def read_cell(cell: CellResult, paths: list[Path], exp_dir: Path) -> None:
    """Fill a cell from its newest successful log (else its newest log), header only."""
    found = cell_scores(paths)
    cell.logs_found = found.logs_found
    cell.error = found.error
    cell.status = found.status
    if found.log is None:
        return
    log = found.log
    try:
        cell.log = str(found.path.relative_to(exp_dir))
    except ValueError:
        cell.log = str(found.path)
    results = log.results
    if results is not None:
        cell.samples = results.total_samples
        cell.completed_samples = results.completed_samples
    cell.metrics.update(found.metrics)
    stats = log.stats
    if stats is not None:
        start, end = _seconds(stats.started_at), _seconds(stats.completed_at)
        if start is not None and end is not None and end >= start:
            cell.eval_s = end - start


# -- the whole experiment --------------------------------------------------------------------------
def load(exp_dir: str | Path, settings=None):
    """(Experiment, resolved experiment dir) for an experiment directory scaffold wrote."""
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import load_settings

    exp_dir = Path(exp_dir).expanduser()
    if exp_dir.is_file() and exp_dir.name == SUMMARY_YAML:
        exp_dir = exp_dir.parent
    if not exp_dir.is_dir():
        raise UserError("no such directory", where=str(exp_dir),
                        hint="pass the experiment directory (it holds experiment_summary.yaml)")
    design = exp_dir / SUMMARY_YAML
    if not design.is_file():
        raise UserError(f"no {SUMMARY_YAML} here", where=str(exp_dir),
                        hint="pass the experiment directory that `cruijff-kit scaffold` wrote")
    settings = settings or load_settings()
    return load_experiment(design, settings=settings), exp_dir.resolve(), settings


def collect(exp_dir: str | Path, *, settings=None, progress=print, saturation: float = SATURATION,
            overfit_rel: float = OVERFIT_REL, overfit_abs: float = OVERFIT_ABS) -> Collected:
    exp, exp_dir, settings = load(exp_dir, settings)
    state = read_state(exp_dir)
    jobs = read_jobs_json(exp_dir)
    flags: list[Flag] = []
    runs: list[RunResult] = []
    progress(f"collecting {len(exp.runs)} runs of {exp.name} from {exp_dir}")
    for run in exp.runs:
        result = RunResult(run.name, run.type, run.model, run_values(exp, run), run.trains)
        train_job = state.get(f"{run.name}.train", {})
        result.train_state = str(train_job.get("state", "")) if run.trains else ""
        if run.trains:
            out = run_output_dir(exp, exp_dir, run, jobs, settings)
            result.output_dir = str(out)
            result.curve = read_losses(out, required=False)
            if result.curve is not None:
                result.losses = result.curve.summary()
                result.overfitting = result.curve.overfitting(overfit_rel, overfit_abs)
                if result.overfitting:
                    flags.append(Flag("overfitting", run.name, result.overfitting))
            else:
                note = f" (train job {result.train_state})" if result.train_state else ""
                flags.append(Flag("no_losses", run.name, f"no DiskLogger logs under {out}/logs{note}"))
            record = {**read_record(layout.training_summary(out)),
                      **read_record(layout.compute_file(layout.run_dir(exp_dir, run.name)))}
            result.wall_s = _number(record, "wall_s", "wall_time_s", "elapsed_s", "train_s") or duration(train_job)
            result.tokens_per_s = _number(record, "tokens_per_s", "tokens_per_second")
            result.peak_memory_gb = _number(record, "peak_memory_gb", "gpu_peak_memory_gb")
        runs.append(result)

    cells = [CellResult(c.run, c.task, c.epoch, c.dirname, c.epoch if isinstance(c.epoch, int) else
                        resolved_epoch(layout.cell_dir(exp_dir, c.run, c.dirname))) for c in exp.cells()]
    found = {id(c): cell_logs(cell_log_dir(exp_dir, c.run, c.dirname)) for c in cells}
    total = sum(1 for c in cells if found[id(c)])
    progress(f"reading eval logs of {total} of {len(cells)} cells")
    every = max(1, total // 10) if total > 20 else max(total, 1)  # about ten progress lines at most
    done, started = 0, time.monotonic()
    for cell in cells:
        cell.job_state = str(state.get(cell.job_id, {}).get("state", ""))
        paths = found[id(cell)]
        if not paths:
            job = f" (eval job {cell.job_state})" if cell.job_state else ""
            flags.append(Flag("missing", cell.run, f"no .eval log in {layout.cell_relpath(cell.run, cell.dirname)}/"
                              f"{layout.LOGS}{job}",
                              cell.dirname))
            continue
        read_cell(cell, paths, exp_dir)
        job_wall = _number(read_record(layout.compute_file(layout.cell_dir(exp_dir, cell.run, cell.dirname))),
                           "wall_s")
        cell.eval_s = job_wall if job_wall is not None else cell.eval_s
        done += 1
        if done % every == 0 or done == total:
            progress(f"  {done}/{total} eval logs read ({time.monotonic() - started:.1f}s)")
        if cell.status == "unreadable":
            flags.append(Flag("unreadable", cell.run, cell.error or "no readable log", cell.dirname))
        elif cell.status != "success":
            flags.append(Flag("failed", cell.run, f"eval {cell.status}" + (f": {cell.error}" if cell.error else ""),
                              cell.dirname))
        elif cell.samples is not None and cell.completed_samples is not None and \
                cell.completed_samples < cell.samples:
            flags.append(Flag("incomplete", cell.run, f"{cell.completed_samples}/{cell.samples} samples scored",
                              cell.dirname))
        at_ceiling = [f"{key} = {value:.3f}" for key, value in cell.metrics.items()
                      if key.rsplit(".", 1)[-1] == "accuracy" and value >= saturation]
        if at_ceiling and cell.status == "success":
            flags.append(Flag("saturated", cell.run, f"{', '.join(at_ceiling)} (>= {saturation:g}): at the "
                              "ceiling, the task cannot show further gains", cell.dirname))
    metrics = list(dict.fromkeys(k for c in cells for k in c.metrics))
    collected = Collected(exp, exp_dir, runs, cells, flags, metrics,
                          [v for v in exp.variables if v != "model"],
                          datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
    add_deltas(collected)
    from cruijff_kit.summarize.stages import stage_cost, stage_progression

    collected.stages = stage_progression(collected)
    collected.cost = stage_cost(collected, settings)
    add_statistics(collected, progress)
    from cruijff_kit.summarize.provenance import provenance_flags

    more, collected.provenance = provenance_flags(collected)
    collected.flags += more
    order = {"failed": 0, "unreadable": 1, "missing": 2, "incomplete": 3, "no_losses": 4, "overfitting": 5,
             "saturated": 6}
    collected.flags.sort(key=lambda f: order.get(f.kind, 9))
    return collected


def add_deltas(collected: Collected) -> None:
    """Fine-tuned minus base score, per cell, when a control run evaluates the same model on the task.

    A control matches a run when it uses the same model and, where both name one, the same dataset_label.
    """
    runs = {r.name: r for r in collected.runs}
    exp_runs = {r.name: r for r in collected.exp.runs}
    controls = [c for c in collected.cells if RUN_TYPES[runs[c.run].type].baseline and c.status == "success"]
    for cell in collected.cells:
        run = exp_runs[cell.run]
        if run.kind.baseline:
            continue
        for base in controls:
            other = exp_runs[base.run]
            if base.task != cell.task or other.model != run.model:
                continue
            if run.dataset_label and other.dataset_label and run.dataset_label != other.dataset_label:
                continue
            cell.base_run = base.run
            if cell.status == "success":
                cell.deltas = {k: cell.metrics[k] - base.metrics[k] for k in collected.score_metrics
                               if k in cell.metrics and k in base.metrics}
            break


def add_statistics(collected: Collected, progress=print) -> None:
    """Paired comparisons and replicate aggregates (cruijff_kit.summarize.stats; reads per-sample scores)."""
    from cruijff_kit.summarize import stats

    started = time.monotonic()
    collected.comparisons = stats.comparisons(collected)
    collected.replicates = stats.replicate_rows(collected)
    stats.add_reliability(collected)
    if collected.comparisons:
        progress(f"{len(collected.comparisons)} paired comparison(s) ({time.monotonic() - started:.1f}s)")


def columns(collected: Collected) -> list[str]:
    """summary.csv's columns, in order (metric names with '.' -> '_')."""
    cols = ["run", "type", "model", *[v for v in collected.variables if v not in ("run", "type")],
            "task", "epoch", "resolved_epoch", "status", "samples", "completed_samples"]
    cols += [m.replace(".", "_") for m in collected.metrics]
    if collected.has_controls:
        cols += ["base_run"] + [f"{m.replace('.', '_')}_delta" for m in collected.score_metrics]
    cols += ["final_train_loss", "final_train_step", "best_train_loss", "best_train_step",
             "final_val_loss", "final_val_step", "best_val_loss", "best_val_step",
             "train_wall_s", "eval_wall_s", "train_state", "eval_state", "log"]
    return cols


def rows(collected: Collected) -> list[dict]:
    """One row per eval cell (design order), then one per run without cells."""
    out = []
    with_cells = {c.run for c in collected.cells}

    def base(run: RunResult) -> dict:
        row = {"run": run.name, "type": run.type, "model": run.model, **{v: run.values.get(v, "")
                                                                       for v in collected.variables}}
        for key in ("final_train_loss", "final_train_step", "best_train_loss", "best_train_step",
                    "final_val_loss", "final_val_step", "best_val_loss", "best_val_step"):
            row[key] = run.losses.get(key)
        row["train_wall_s"] = run.wall_s
        row["train_state"] = run.train_state
        return row

    for cell in collected.cells:
        row = base(collected.run(cell.run))
        row.update(task=cell.task, epoch=cell.epoch, resolved_epoch=cell.resolved_epoch, status=cell.status,
                   samples=cell.samples, completed_samples=cell.completed_samples, eval_wall_s=cell.eval_s,
                   eval_state=cell.job_state, log=cell.log)
        for m in collected.metrics:
            row[m.replace(".", "_")] = cell.metrics.get(m)
        if collected.has_controls:
            row["base_run"] = cell.base_run
            for m in collected.score_metrics:
                row[f"{m.replace('.', '_')}_delta"] = cell.deltas.get(m)
        out.append(row)
    for run in collected.runs:
        if run.name not in with_cells:
            row = base(run)
            row.update(task="", epoch=None, status="no eval", samples=None, completed_samples=None,
                       eval_wall_s=None, eval_state="", log="")
            out.append(row)
    cols = columns(collected)
    return [{c: row.get(c) for c in cols} for row in out]

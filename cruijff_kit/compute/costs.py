"""GPU-hours and cost per stage, estimated and actual (ground floor: `status`, the run engine's Status block
and `summarize` all use it).

estimated: `cruijff_kit.compute.estimates.plan_estimates` per run, summed over each stage's runs;
actual: per job, wall time (state.json; the elapsed time so far for a running job) x the GPUs its script
requests (`#SBATCH --gres=gpu[:type]:N`; 0 without a --gres line, e.g. CPU jobs), summed per stage;
cost = GPU-hours x settings.gpu_hourly_cost (None when no hourly cost is set: GPU-hours only);
measured on the GPU (only where a job's compute.json holds nvidia-smi samples, see compute/records.py): the
stage's peak memory on one GPU (MiB) and its jobs' mean utilization (%).
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from cruijff_kit.experiment import layout

GRES = re.compile(r"^#SBATCH\s+--gres[= ]gpu(?::[A-Za-z0-9_.-]+)?:(\d+)\s*$", re.M)
NO_STAGE = "(no stage)"


def script_gpus(path: Path) -> int:
    """GPUs a job script requests on its SBATCH --gres line; 0 when it has none."""
    try:
        m = GRES.search(Path(path).read_text())
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def run_estimates(exp_dir: Path, settings) -> tuple[dict, str]:
    """({run: RunEstimate}, note) from the experiment's experiment_summary.yaml; ({}, why) when it cannot load."""
    try:
        from cruijff_kit.compute.estimates import plan_estimates
        from cruijff_kit.experiment.load import load_experiment

        exp = load_experiment(layout.design_file(exp_dir), settings=settings)
        return {e.run: e for e in plan_estimates(exp, settings).estimates}, ""
    except Exception as exc:  # noqa: BLE001 - an estimate is a nicety: never let it break status
        text = str(exc).strip().splitlines()
        return {}, f"no estimate: {text[0][:200] if text else type(exc).__name__}"


def _elapsed(js: dict) -> float | None:
    if js.get("wall_s") is not None:
        return float(js["wall_s"])
    if js.get("state") == "running" and js.get("started"):
        try:
            return max(0.0, (datetime.now() - datetime.fromisoformat(str(js["started"]))).total_seconds())
        except ValueError:
            return None
    return None


def _money(hours: float, hourly: float | None) -> float | None:
    return round(hours * hourly, 6) if hourly else None


def stage_costs(exp_dir: Path, jobs: list, job_stage: dict, state_jobs: dict, *, stages: list[str],
                estimates: dict, hourly: float | None, note: str = "") -> dict:
    """Per stage (design order, then any other stage names, then NO_STAGE) and in total.

    jobs: JobSpec-like (id, run, script); job_stage: {job id: stage name}; state_jobs: state.json's jobs.
    """
    hourly = float(hourly) if hourly else None
    order = list(stages)
    for job in jobs:
        name = job_stage.get(job.id) or NO_STAGE
        if name not in order:
            order.append(name)
    rows = {name: {"stage": name, "estimated_gpu_hours": 0.0, "actual_gpu_hours": 0.0, "jobs_timed": 0,
                   "jobs": 0} for name in order}
    from cruijff_kit.compute.records import read_gpu_summary

    run_stage: dict[str, str] = {}
    utils: dict[str, list[float]] = {}
    for job in jobs:
        name = job_stage.get(job.id) or NO_STAGE
        run_stage.setdefault(job.run, name)
        row = rows[name]
        row["jobs"] += 1
        gpu = read_gpu_summary(exp_dir, job)
        if gpu.get("peak_memory_mib") is not None:
            row["gpu_peak_memory_mib"] = max(row.get("gpu_peak_memory_mib") or 0.0, gpu["peak_memory_mib"])
        if gpu.get("mean_utilization_pct") is not None:
            utils.setdefault(name, []).append(gpu["mean_utilization_pct"])
        wall = _elapsed(state_jobs.get(job.id) or {})
        if wall is None:
            continue
        row["jobs_timed"] += 1
        row["actual_gpu_hours"] += wall / 3600 * script_gpus(Path(exp_dir) / job.script)
    preliminary = False
    for run, est in estimates.items():
        if run in run_stage:
            rows[run_stage[run]]["estimated_gpu_hours"] += est.gpu_hours
            preliminary |= bool(est.preliminary)
    out_rows = []
    for name in order:
        row = rows[name]
        if not row["jobs"] and name not in stages:
            continue
        row["estimated_gpu_hours"] = round(row["estimated_gpu_hours"], 6) if estimates else None
        row["actual_gpu_hours"] = round(row["actual_gpu_hours"], 6)
        row["estimated_cost"] = _money(row["estimated_gpu_hours"] or 0.0, hourly) if estimates else None
        row["actual_cost"] = _money(row["actual_gpu_hours"], hourly)
        if utils.get(name):
            row["gpu_mean_utilization_pct"] = round(sum(utils[name]) / len(utils[name]), 1)
        out_rows.append(row)
    est_total = round(sum(r["estimated_gpu_hours"] or 0.0 for r in out_rows), 6) if estimates else None
    act_total = round(sum(r["actual_gpu_hours"] for r in out_rows), 6)
    total = {"stage": "total", "estimated_gpu_hours": est_total, "actual_gpu_hours": act_total,
             "estimated_cost": _money(est_total or 0.0, hourly) if estimates else None,
             "actual_cost": _money(act_total, hourly), "jobs": sum(r["jobs"] for r in out_rows),
             "jobs_timed": sum(r["jobs_timed"] for r in out_rows)}
    peaks = [r["gpu_peak_memory_mib"] for r in out_rows if r.get("gpu_peak_memory_mib") is not None]
    if peaks:
        total["gpu_peak_memory_mib"] = max(peaks)
    all_utils = [u for name in utils for u in utils[name]]
    if all_utils:
        total["gpu_mean_utilization_pct"] = round(sum(all_utils) / len(all_utils), 1)
    return {"hourly_cost": hourly, "preliminary": preliminary, "note": note, "stages": out_rows, "total": total}


def cost_lines(cost: dict) -> list[str]:
    """A small text table: stage, estimated and actual GPU-hours (and cost when an hourly cost is set)."""
    money = bool(cost.get("hourly_cost"))

    def h(value):
        return "-" if value is None else f"{value:.3f}"

    def c(value):
        return "-" if value is None else f"${value:,.2f}"

    measured = any("gpu_peak_memory_mib" in r or "gpu_mean_utilization_pct" in r for r in cost["stages"])

    def g(row):
        peak, util = row.get("gpu_peak_memory_mib"), row.get("gpu_mean_utilization_pct")
        return (f" {'-' if peak is None else f'{peak / 1024:.1f}':>12} "
                f"{'-' if util is None else f'{util:.0f}%':>9}")

    header = (f"{'STAGE':<16} {'EST GPU-H':>10} {'ACT GPU-H':>10}" + (f" {'EST COST':>10} {'ACT COST':>10}" if money else "")
              + (f" {'GPU PEAK GiB':>12} {'GPU UTIL':>9}" if measured else ""))
    lines = [header]
    for row in cost["stages"] + [cost["total"]]:
        line = f"{row['stage']:<16} {h(row['estimated_gpu_hours']):>10} {h(row['actual_gpu_hours']):>10}"
        if money:
            line += f" {c(row['estimated_cost']):>10} {c(row['actual_cost']):>10}"
        if measured:
            line += g(row)
        lines.append(line)
    if cost.get("note"):
        lines.append(cost["note"])
    elif not money:
        lines.append("no `gpu hourly cost` in claude.local.md: GPU-hours only")
    return lines

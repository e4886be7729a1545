"""Stages of a staged design in the summary: how each task's score progresses from stage to stage (with deltas),
and estimated vs actual GPU-hours and cost per stage."""
from __future__ import annotations

from cruijff_kit.summarize.collect import Collected, read_state


# -- stages: progression across a staged design, and cost --------------------------------------------
def stage_order(exp) -> list[str]:
    """Stage names in design order, then stages only runs name (first seen)."""
    order = [s.name for s in exp.stages]
    for run in exp.runs:
        if run.stage and run.stage not in order:
            order.append(run.stage)
    return order


def _delta(a, b):
    return None if a is None or b is None else a - b


def stage_progression(collected: Collected) -> list[dict]:
    """Per task and score metric: a row per stage (design order) with the stage's best and mean score over
    its successful cells, and deltas vs the previous stage with a score and vs the first stage (base)."""
    exp = collected.exp
    order = stage_order(exp)
    if not order:
        return []
    run_stage = {r.name: r.stage for r in exp.runs}
    tables = []
    for task in collected.tasks:
        cells = [c for c in collected.cells if c.task == task and c.status == "success" and run_stage.get(c.run)]
        for metric in [m for m in collected.score_metrics if any(m in c.metrics for c in cells)]:
            rows, first, prev = [], None, None
            for stage in order:
                scored = [c for c in cells if run_stage[c.run] == stage and metric in c.metrics]
                row = {"stage": stage, "runs": sorted({c.run for c in scored}), "cells": len(scored),
                       "best": None, "best_cell": "", "mean": None}
                if scored:
                    top = max(scored, key=lambda c: c.metrics[metric])
                    row.update(best=top.metrics[metric], best_cell=top.job_id,
                               mean=sum(c.metrics[metric] for c in scored) / len(scored))
                row.update(delta_prev=_delta(row["best"], prev and prev["best"]),
                           delta_first=_delta(row["best"], first and first["best"]),
                           delta_prev_mean=_delta(row["mean"], prev and prev["mean"]),
                           delta_first_mean=_delta(row["mean"], first and first["mean"]),
                           prev_stage=prev["stage"] if prev else "", first_stage=first["stage"] if first else "")
                rows.append(row)
                if scored:
                    first = first or row
                    prev = row
            tables.append({"task": task, "metric": metric, "rows": rows})
    return tables


def stage_cost(collected: Collected, settings) -> dict | None:
    """Estimated vs actual GPU-hours (and cost) per stage and in total (cruijff_kit.compute.costs); None without jobs."""
    from cruijff_kit.compute import costs
    from cruijff_kit.experiment.jobs import read_jobs

    try:
        jobs = read_jobs(collected.exp_dir)
    except Exception:  # noqa: BLE001 - no jobs.json: nothing ran, no actual cost
        return None
    run_stage = {r.name: r.stage for r in collected.exp.runs}
    job_stage = {j.id: j.stage or run_stage.get(j.run, "") for j in jobs}
    estimates, note = costs.run_estimates(collected.exp_dir, settings)
    return costs.stage_costs(collected.exp_dir, jobs, job_stage, read_state(collected.exp_dir),
                             stages=stage_order(collected.exp), estimates=estimates,
                             hourly=getattr(settings, "gpu_hourly_cost", 0.0), note=note)

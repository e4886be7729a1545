"""Show the state of every job of an experiment: from any terminal, while it runs or after.

Reads {exp}/.ck/state.json (written on every transition). When no runner follows the experiment,
SLURM jobs are polled (squeue/sacct) and what changed is recorded, so the table is always the truth.
Failed jobs show the last lines of their log.

  cruijff-kit status EXPERIMENT_DIR            table, stage gates, GPU-hours/cost per stage, log tails of failed jobs
  cruijff-kit status EXPERIMENT_DIR --json     machine-readable
  cruijff-kit status EXPERIMENT_DIR --watch    refresh every --interval seconds until all are done
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import datetime


def configure(parser) -> None:
    parser.add_argument("experiment_dir", help="the experiment directory (holds jobs.json)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--watch", action="store_true", help="refresh until every job is done (Ctrl-C stops)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="S", help="--watch refresh period (default 5)")
    parser.add_argument("--no-refresh", action="store_true", help="only read the state file; never poll SLURM")


def refreshed(engine) -> dict:
    """When no live runner follows the experiment, poll the jobs that live without one (SLURM) and record
    what changed; else (or when there are none) the state as it is."""
    from cruijff_kit.run.executors import needs_runner
    from cruijff_kit.run.state import is_submitted, runner_alive

    snapshot = engine.store.read()
    if runner_alive(snapshot.get("runner")) or not any(
            is_submitted(js) and js.get("executor") and not needs_runner(js["executor"])
            for js in snapshot["jobs"].values()):
        return snapshot
    engine.command = "status"
    return engine.step(None)


def collect(engine, *, refresh: bool = True) -> dict:
    """Everything status shows, as one JSON-able dict."""
    from cruijff_kit.experiment.epochs import job_epoch
    from cruijff_kit.run.executors import needs_runner
    from cruijff_kit.run.executors.base import log_tail
    from cruijff_kit.run.gates import gate_rows
    from cruijff_kit.compute.records import read_gpu_summary
    from cruijff_kit.run.state import FAILED, RUNNING, STATES, TERMINAL, new_job, runner_alive, seconds_between
    from cruijff_kit.workers.inspect.groups import cell_states

    st = refreshed(engine) if refresh else engine.store.read()
    runner = st.get("runner")
    alive = runner_alive(runner)
    jobs = []
    for job_id in engine.order:
        job = engine.by_id[job_id]
        js = dict(st["jobs"].get(job_id) or new_job())
        if js["state"] == FAILED and not js.get("tail") and js.get("log"):
            js["tail"] = log_tail(js["log"])
        if js["state"] == RUNNING and js.get("started"):
            js["elapsed_s"] = seconds_between(js["started"], datetime.now().isoformat(timespec="seconds"))
        elif js["state"] in TERMINAL:
            js["elapsed_s"] = js.get("wall_s")
        orphan = (needs_runner(js.get("executor")) and js["state"] == RUNNING and not alive)
        jobs.append({"id": job_id, "kind": job.kind, "run": job.run, "stage": engine.job_stage.get(job_id) or None,
                     "task": job.task or None, "epoch": job.epoch,
                     "resolved_epoch": job_epoch(engine.exp_dir, job)[1] if job.kind == "eval" else None,
                     "after": list(job.after), "script": job.script, **js,
                     "runner_gone": orphan,
                     "gpu": read_gpu_summary(engine.exp_dir, job) or None if js["state"] in TERMINAL else None})
        if job.kind == "eval" and len(job.cells()) > 1:  # a grouped eval job: each cell's own state
            jobs[-1]["cells"] = cell_states(engine.exp_dir, job, js)
    counts = Counter(j["state"] for j in jobs)
    return {"experiment": engine.experiment, "dir": str(engine.exp_dir), "updated": st.get("updated"),
            "runner": dict(runner, alive=alive) if runner else None,
            "counts": {s: counts[s] for s in STATES}, "done": all(j["state"] in TERMINAL for j in jobs),
            "jobs": jobs, "gates": [{"stage": g["stage"], "outcome": g["outcome"], "text": g["text"],
                                     **(g["record"] or {})} for g in gate_rows(engine.plan, st)],
            "cost": engine.cost(st)}


def gpu_note(summary: dict) -> str:
    """`GPU peak 12.3 GiB, util 87%` from a compute record's GPU summary (nvidia-smi samples)."""
    parts = []
    if summary.get("peak_memory_mib") is not None:
        parts.append(f"peak {summary['peak_memory_mib'] / 1024:.1f} GiB")
    if summary.get("mean_utilization_pct") is not None:
        parts.append(f"util {summary['mean_utilization_pct']:.0f}%")
    return f"GPU {', '.join(parts)}" if parts else ""


def format_text(data: dict) -> str:
    from cruijff_kit.fmt import fmt_seconds, fmt_time

    lines = [f"{data['experiment']}  ({data['dir']})"]
    runner = data.get("runner")
    if runner:
        word = "running" if runner["alive"] else "GONE (run the experiment again to continue)"
        lines.append(f"runner: pid {runner['pid']} ({runner.get('executor')}, since {fmt_time(runner.get('started'))}) "
                     f"{word}")
    lines.append(", ".join(f"{n} {s}" for s, n in data["counts"].items() if n) or "no jobs")
    lines.append("")
    width = max([len(j["id"]) for j in data["jobs"]] + [len(c["id"]) + 2 for j in data["jobs"]
                                                          for c in j.get("cells") or []] + [3])
    lines.append(f"{'JOB'.ljust(width)}  {'STATE':<10} {'ID':<10} {'STARTED':<19}  {'TIME':>8}  NOTE")
    for j in data["jobs"]:
        note = j.get("reason") or ""
        if j.get("runner_gone"):
            note = "its runner is gone; `cruijff-kit run` reruns it"
        elif j["state"] == "pending" and j.get("native_id"):
            note = note or "queued"
        if (j.get("attempts") or 0) > 1:
            note = f"{note + '; ' if note else ''}attempt {j['attempts']}"
        if j.get("resolved_epoch") is not None and j.get("epoch") != j["resolved_epoch"]:  # best / last
            note = f"{note + '; ' if note else ''}{j['epoch']} = epoch {j['resolved_epoch']}"
        if j.get("gpu"):
            note = f"{note + '; ' if note else ''}{gpu_note(j['gpu'])}"
        lines.append(f"{j['id'].ljust(width)}  {j['state']:<10} {str(j.get('native_id') or '-'):<10} "
                     f"{fmt_time(j.get('started')):<19}  {fmt_seconds(j.get('elapsed_s')):>8}  {note}".rstrip())
        for c in j.get("cells") or []:  # the cells of a grouped eval job, under it
            lines.append(f"{('  ' + c['id']).ljust(width)}  {c['state']:<10} {'':<10} {'':<19}  "
                         f"{fmt_seconds(c.get('wall_s')):>8}  {c.get('reason') or ''}".rstrip())
    if data.get("gates"):
        lines += ["", "gates:"]
        lines += [f"  {g['stage']}: {g['outcome'].upper()}: {g['text']}" for g in data["gates"]]
    if data.get("cost"):
        from cruijff_kit.compute.costs import cost_lines

        lines += ["", "GPU-hours (estimated vs actual) per stage:"]
        lines += [f"  {line}" for line in cost_lines(data["cost"])]
    for j in data["jobs"]:
        for c in j.get("cells") or []:
            if c["state"] == "failed":
                lines += ["", f"{c['id']} failed in {j['id']}: {c.get('reason') or 'failed'}; log: {j.get('log') or '-'}"]
        if j["state"] != "failed":
            continue
        lines += ["", f"{j['id']} failed ({j.get('reason') or 'failed'}); log: {j.get('log') or '-'}"]
        lines += [f"  | {line}" for line in j.get("tail") or ["(no log)"]]
    return "\n".join(lines)


def main(args) -> int:
    from cruijff_kit.run.engine import Engine

    engine = Engine(args.experiment_dir, command="status", out=lambda line: None)  # the table says it all
    while True:
        data = collect(engine, refresh=not args.no_refresh)
        if args.json:
            print(json.dumps(data, indent=2, default=str))
        else:
            if args.watch and sys.stdout.isatty():
                print("\033[H\033[2J", end="")
            print(format_text(data))
        sys.stdout.flush()
        if not args.watch or data["done"]:
            return 0
        try:
            time.sleep(max(0.2, args.interval))
        except KeyboardInterrupt:
            return 0
        if not args.json:
            print()


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("status")

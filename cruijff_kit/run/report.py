"""What the run engine tells the user: one progress line per finished job, the closing report of `run`,
and the Status block of experiment_summary.md (job tables, gates, GPU-hours), rewritten in place.

Functions of an Engine (read only: its jobs, selection, state snapshot, gates and cost) that write nothing
but the user's lines and the Status block.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.epochs import epoch_text, job_epoch
from cruijff_kit.files import replace_block
from cruijff_kit.fmt import fmt_seconds, fmt_time
from cruijff_kit.render import STATUS_BLOCK, render
from cruijff_kit.run import gates
from cruijff_kit.run.state import BY_USER, CANCELLED, COMPLETED, FAILED, PENDING, STATES, TERMINAL, now
from cruijff_kit.workers import rerun_policy
from cruijff_kit.workers.inspect.groups import cell_states

SUMMARY_FILE = layout.SUMMARY_MD
STATUS_START, STATUS_END = STATUS_BLOCK


def progress_line(engine, st: dict, job, js: dict) -> str:
    """`[k/n] JOB STATE in 1.2s (reason); log: ...` for a job that just ended."""
    sel = engine.selected
    k, n = sum(1 for i in sel if st["jobs"][i]["state"] in TERMINAL), len(sel)
    line = f"{f'[{k}/{n}]' if job.id in sel else '[-]'} {job.id} {js['state']}"
    if js["state"] in (COMPLETED, FAILED) and js.get("wall_s") is not None:
        line += f" in {js['wall_s']:.1f}s"
    if js.get("reason"):
        line += f" ({js['reason']})"
    if js["state"] == FAILED and js.get("log"):
        line += f"; log: {js['log']}"
    return line


def final(engine, st: dict, ex, *, blocking: bool, interrupted: bool, elapsed: float,
          max_submit: int | None) -> int:
    """The closing lines of `run`/`resubmit`; returns the exit status (130 interrupted, 1 something failed)."""
    out, exp_dir, selected = engine.out, engine.exp_dir, engine.selected
    counts = Counter(st["jobs"][i]["state"] for i in selected)
    text = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    if interrupted:
        out(f"interrupted after {fmt_seconds(elapsed)}: {text}")
        out(f"run `cruijff-kit run {exp_dir}` again to continue (completed jobs are skipped)"
            if ex.needs_runner else f"{ex.title} jobs keep running; `cruijff-kit status {exp_dir}`")
        return 130
    out(f"{'done' if blocking else 'submitted'} in {fmt_seconds(elapsed)}: {text or 'nothing selected'}")
    bad = counts[FAILED] + sum(1 for i in selected if st["jobs"][i]["state"] == CANCELLED
                               and st["jobs"][i]["reason"] != BY_USER)
    if counts[FAILED] or bad:
        out(f"`cruijff-kit status {exp_dir}` shows the log tails; "
            f"`cruijff-kit resubmit {exp_dir} --failed` reruns failed jobs and their dependents")
    gated = sorted({r["stage"] for r in gates.gate_rows(engine.plan, st) if r["outcome"] == "failed"})
    if gated:
        out(f"gate(s) of stage {', '.join(gated)} stopped the later stages: after relaxing the gate in "
            f"{exp_dir / gates.DESIGN_FILE}, `cruijff-kit resubmit {exp_dir} --failed` "
            "re-evaluates it and continues")
    waiting = [i for i in selected if st["jobs"][i]["state"] == PENDING and not st["jobs"][i]["native_id"]]
    if waiting and blocking:
        out(f"{len(waiting)} job(s) wait on jobs outside --only/--stage: {', '.join(waiting[:5])}"
            + (" ..." if len(waiting) > 5 else ""))
    elif waiting and not blocking and engine.continuation_id:
        out(f"{len(waiting)} job(s) wait on a stage gate: continuation job {engine.continuation_id} submits "
            f"them on the cluster; follow with `cruijff-kit status {exp_dir}`")
    elif waiting and not blocking:
        limit = f" (--max-submit {max_submit})" if max_submit else ""
        out(f"{len(waiting)} job(s) not yet submitted{limit}: run again, or use --wait to drip-feed them")
    return 1 if bad else 0


def status_block(engine, st: dict) -> str:
    """The Status block (between the ck:status markers): a table per job kind, the gates, the cost."""
    train_rows, eval_rows = [], []
    for job_id in engine.order:
        job, js = engine.by_id[job_id], st["jobs"].get(job_id) or {"state": PENDING}
        notes = []
        if js.get("reason"):
            notes.append(js["reason"])
        if (js.get("attempts") or 0) > 1:
            notes.append(f"attempt {js['attempts']}")
        policy = rerun_policy(job)
        if policy is not None:
            notes += policy.notes(js.get("env") or {})
        row = {"run": job.run if job.kind in ("train", "eval") else f"{job.run} ({job.kind})",
               "state": js["state"], "native": js.get("native_id") or "-",
               "started": fmt_time(js.get("started")), "ended": fmt_time(js.get("ended")),
               "duration": fmt_seconds(js.get("wall_s")) if js["state"] in TERMINAL else "-",
               "note": "; ".join(notes).replace("|", "\\|") or "-",
               "task": job.task or "-", "epoch": epoch_text(*job_epoch(engine.exp_dir, job))}
        if job.kind == "eval" and len(job.cells()) > 1:  # a grouped eval job: one row per cell
            eval_rows += [{**row, "task": c["task"], "epoch": "base" if c["epoch"] is None else c["epoch"],
                           "state": c["state"], "duration": fmt_seconds(c["wall_s"]) if c.get("wall_s") else "-",
                           "note": "; ".join(x for x in (c["reason"], f"job {job.id}") if x).replace("|", "\\|")}
                          for c in cell_states(engine.exp_dir, job, js)]
            continue
        (eval_rows if job.kind == "eval" else train_rows).append(row)
    counts = Counter((st["jobs"].get(i) or {"state": PENDING})["state"] for i in engine.order)
    return render("status_tables.md.j2", start=STATUS_START, end=STATUS_END, updated=fmt_time(now()),
                  command=engine.command, counts=[f"{counts[s]} {s}" for s in STATES if counts[s]],
                  train_rows=train_rows, eval_rows=eval_rows, gates=gates.gate_rows(engine.plan, st),
                  cost=engine.cost(st))


def write_summary(engine, st: dict) -> Path:
    """Rewrite only the Status block of experiment_summary.md (append it when the markers are missing)."""
    path = engine.exp_dir / SUMMARY_FILE
    block = status_block(engine, st).rstrip("\n")
    text = path.read_text() if path.exists() else None
    if text is None:
        block = f"# {engine.experiment}\n\n## Status\n{block}"
    elif not (STATUS_START in text and STATUS_END in text and text.index(STATUS_START) < text.index(STATUS_END)):
        block = "\n## Status\n" + block
    # locked read-modify-write: summarize may be rewriting the Results block of the same file
    replace_block(path, STATUS_START, STATUS_END, block)
    return path

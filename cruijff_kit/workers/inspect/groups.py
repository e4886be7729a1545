"""Which eval cells share a job (`evaluation.group`), and what each cell of a grouped job did.

    cell        one job per cell
    checkpoint  one job per (run, epoch): every task of one checkpoint with one model load (the default;
                its cells never swap weights, and the epochs of a run still run in parallel)
    run         one job per run: the base model loaded once, each epoch's adapter merged in memory in turn
                (a merged full checkpoint per epoch is loaded per epoch)

A group of one cell is rendered exactly as a per-cell job. A grouped job lives in `{run}/eval_groups/{all|epochN}/`
(layout.group_relpath): eval_group.yaml names its cells, each of which keeps its own eval_config.yaml and
writes its .eval log into its own `logs/`, so summarize and the gates read the same files either way. The
job (tools/inspect/run_group.py) records each cell's outcome in cells.json as it goes; `cell_states` turns
that and the job's own state into one state per cell for `status`.
"""
from __future__ import annotations

import re
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.experiment.model import Cell
from cruijff_kit.files import read_json

GROUPS = ("cell", "checkpoint", "run")
SKIP_DONE = "CK_EVAL_SKIP_DONE"  # set by the engine on a rerun: cells with a successful log are not evaluated again
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def grouped(cells: list[Cell], by: str) -> list[list[Cell]]:
    """The design's cells in jobs, in the order of their first cell."""
    out: dict[tuple, list[Cell]] = {}
    for i, cell in enumerate(cells):
        key = {"cell": (i,), "checkpoint": (cell.run, cell.epoch), "run": (cell.run,)}[by]
        out.setdefault(key, []).append(cell)
    return list(out.values())


def group_dirname(cells: list[Cell], by: str) -> str:
    return layout.group_dirname(cells[0].epoch if by == "checkpoint" else None)


def group_job_id(run: str, dirname: str) -> str:
    return f"{run}.evals.{dirname}"


def scaled_time(text: str, factor: int) -> str:
    """A SLURM --time (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) times `factor`; unparseable text unchanged."""
    m = _TIME.fullmatch(str(text or "").strip())
    if not m or factor <= 1:
        return text
    days, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1):  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + b * 60 + c
    elif m.group(4):  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    else:  # MM or MM:SS
        seconds = a * 60 + b
    seconds *= factor
    days, rest = divmod(seconds, 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{hms}" if days else hms


def cell_entry(cell: Cell, context: dict, job_id: str, config: str) -> dict:
    """One cell of a grouped job, as jobs.json (meta.cells) and eval_group.yaml name it."""
    return {"id": job_id, "cell": cell.dirname, "task": cell.task, "epoch": cell.epoch,
            "vis_label": context["vis_label"], "model_path": context["model_path"], "config": config,
            "log_dir": context["log_dir"]}


# -- what the cells of a grouped job did ------------------------------------------------------------
def read_outcomes(exp_dir: Path, job: JobSpec) -> dict:
    """{cell dirname: record} from the job's cells.json ({} before it started or when unreadable)."""
    try:
        data = read_json(Path(exp_dir) / Path(job.script).parent / layout.EVAL_GROUP_STATE, {}, kind=dict)
    except Exception:  # noqa: BLE001 - a damaged file is as good as none: the job state still shows
        return {}
    cells = (data or {}).get("cells")
    return cells if isinstance(cells, dict) else {}


def cell_states(exp_dir: Path, job: JobSpec, js: dict) -> list[dict]:
    """One row per cell of a grouped job: its state (pending | running | completed | failed | cancelled),
    why, and its log, from cells.json and the job's own state (`js`, a state.json entry)."""
    outcomes = read_outcomes(exp_dir, job)
    group_state = js.get("state") or "pending"
    rows = []
    for cell in job.cells():
        rec = outcomes.get(cell.meta.get("cell")) or {}
        status, reason = rec.get("status"), rec.get("error") or ""
        if status == "completed":
            state = "completed"
            reason = "finished earlier: not evaluated again" if rec.get("skipped") else ""
        elif group_state == "completed":
            state = "completed"
        elif group_state in ("pending", "running"):
            state = "running" if status == "running" and group_state == "running" else "pending"
            reason = ""
        elif status == "failed":
            state = "failed"
        else:  # the job ended before it reached this cell
            state = group_state
            reason = js.get("reason") or f"the job {group_state}"
        rows.append({"id": cell.id, "task": cell.task, "epoch": cell.epoch, "state": state, "reason": reason,
                     "log": rec.get("log") or "", "wall_s": rec.get("wall_s")})
    return rows

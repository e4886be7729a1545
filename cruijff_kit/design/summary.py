"""experiment_summary.md: the human-readable plan, rendered from the experiment model."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from cruijff_kit import logbook
from cruijff_kit.compute.estimates import SAFETY, plan_estimates, totals
from cruijff_kit.experiment.epochs import epoch_text
from cruijff_kit.experiment.model import Experiment
from cruijff_kit.render import RESULTS_BLOCK, STATUS_BLOCK, render
from cruijff_kit.settings import Settings

STATUS_START, STATUS_END = STATUS_BLOCK


def initial_status_block(exp: Experiment) -> str:
    """Status tables before anything ran: every job pending. `run` rewrites this block later."""
    lines = [STATUS_START, "### Fine-tuning", "| Run | Status | Job ID | Started | Ended |", "|---|---|---|---|---|"]
    lines += [f"| {r.name} | pending | - | - | - |" for r in exp.runs if r.trains]
    lines += ["", "### Evaluation", "| Run | Task | Epoch | Status | Job ID |", "|---|---|---|---|---|"]
    lines += [f"| {c.run} | {c.task} | {epoch_text(c.epoch)} | pending | - |" for c in exp.cells()]
    lines.append(STATUS_END)
    return "\n".join(lines)


VERIFY_ACTIONS = ("VERIFY_MODEL", "VERIFY_DATASET", "VERIFY_EVAL_TASK", "CHECK_DISK")
NOTE_ACTIONS = ("PREREQUISITE", "NOTE")


def design_log(exp: Experiment) -> list[logbook.Entry]:
    return logbook.read(exp.dir / logbook.LOG_NAMES["design"])


def verification(entries: list[logbook.Entry]) -> list[dict]:
    """The latest result of every check `design verify` / `estimate` logged: (action, subject) -> ✓ or ✗."""
    latest: dict[tuple[str, str], dict] = {}
    for e in entries:
        if e.action in VERIFY_ACTIONS:
            subject, _, outcome = e.description.rpartition(": ")
            if not subject:  # an entry written by hand without the verb's "subject: ok" form
                subject, outcome = e.description, "ok"
            latest[(e.action, subject)] = {"action": e.action, "subject": subject, "result": e.result,
                                           "mark": "✗" if outcome.strip().upper() == "FAILED" else "✓"}
    return list(latest.values())


def notes(entries: list[logbook.Entry]) -> list[dict]:
    """Prerequisites and notes the design session logged, then the decisions (with their Decision: line)."""
    out = [{"kind": "Prerequisite" if e.action == "PREREQUISITE" else "Note", "text": e.description,
            "detail": e.extra.get("Decision") or e.result or e.explanation} for e in entries if e.action in NOTE_ACTIONS]
    out += [{"kind": "Decision", "text": e.description, "detail": e.extra.get("Decision", "")}
            for e in entries if e.action.startswith("DECIDE_") or e.action == "APPROVE"]
    return out


def dataset_size(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "not found yet"
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def render_summary(exp: Experiment, settings: Settings, status_block: str | None = None, priors=()) -> str:
    estimates = plan_estimates(exp, settings, priors).estimates
    controls = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(exp.controls).items()}
    from cruijff_kit.workers.inspect.evaluator import cell_split

    splits = {}
    for cell in exp.cells():  # the split each task evaluates (per run when runs use different data)
        task = exp.task(cell.task)
        splits.setdefault(task.name, set()).add(cell_split(exp, exp.run(cell.run), task))
    entries = design_log(exp)
    checks = verification(entries)
    marks = {(c["action"], c["subject"]): c["mark"] for c in checks}
    sizes = {key: dataset_size(Path(ds.path)) if "{" not in ds.path else "one file per dataset_label"
             for key, ds in (("training", exp.training_data), ("preference", exp.preference_data)) if ds}
    data_mark = marks.get(("VERIFY_DATASET", Path(exp.training_data.path).name), "") if exp.training_data else ""
    return render("experiment_summary.md.j2", exp=exp, cells=exp.cells(), controls=controls,
                  splits={name: ", ".join(sorted(found)) for name, found in splits.items()},
                  n_trained=sum(1 for r in exp.runs if r.trains), estimates=estimates,
                  totals=totals(estimates), safety=SAFETY,
                  outputs_root=settings.scratch / "ck-outputs" / exp.name,
                  status_block=status_block or initial_status_block(exp),
                  checks=checks, marks=marks, sizes=sizes, data_mark=data_mark, notes=notes(entries))


def keep_blocks(new_text: str, old_path: Path) -> str:
    """Re-rendering the plan keeps the Status and Results blocks that run/summarize filled in."""
    if not old_path.exists():
        return new_text
    old = old_path.read_text()
    for start, end in (STATUS_BLOCK, RESULTS_BLOCK):
        if start in old and end in old and start in new_text:
            block = old[old.index(start):old.index(end) + len(end)]
            new_text = new_text[:new_text.index(start)] + block + new_text[new_text.index(end) + len(end):]
    return new_text

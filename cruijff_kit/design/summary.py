"""experiment_summary.md: the human-readable plan, rendered from the experiment model."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from cruijff_kit.compute.estimates import SAFETY, plan_estimates, totals
from cruijff_kit.experiment.model import Experiment
from cruijff_kit.render import RESULTS_BLOCK, STATUS_BLOCK, render
from cruijff_kit.settings import Settings

STATUS_START, STATUS_END = STATUS_BLOCK


def initial_status_block(exp: Experiment) -> str:
    """Status tables before anything ran: every job pending. `run` rewrites this block later."""
    lines = [STATUS_START, "### Fine-tuning", "| Run | Status | Job ID | Started | Ended |", "|---|---|---|---|---|"]
    lines += [f"| {r.name} | pending | - | - | - |" for r in exp.runs if r.trains]
    lines += ["", "### Evaluation", "| Run | Task | Epoch | Status | Job ID |", "|---|---|---|---|---|"]
    lines += [f"| {c.run} | {c.task} | {'base' if c.epoch is None else c.epoch} | pending | - |" for c in exp.cells()]
    lines.append(STATUS_END)
    return "\n".join(lines)


def render_summary(exp: Experiment, settings: Settings, status_block: str | None = None, priors=()) -> str:
    estimates = plan_estimates(exp, settings, priors).estimates
    controls = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(exp.controls).items()}
    from cruijff_kit.workers.inspect.evaluator import cell_split

    splits = {}
    for cell in exp.cells():  # the split each task evaluates (per run when runs use different data)
        task = exp.task(cell.task)
        splits.setdefault(task.name, set()).add(cell_split(exp, exp.run(cell.run), task))
    return render("experiment_summary.md.j2", exp=exp, cells=exp.cells(), controls=controls,
                  splits={name: ", ".join(sorted(found)) for name, found in splits.items()},
                  n_trained=sum(1 for r in exp.runs if r.trains), estimates=estimates,
                  totals=totals(estimates), safety=SAFETY,
                  outputs_root=settings.scratch / "ck-outputs" / exp.name,
                  status_block=status_block or initial_status_block(exp))


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

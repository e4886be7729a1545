"""The epochs of an evaluation matrix row: numbers, and `best` / `last` picked when the eval runs.

    epochs: [0, 2]          those saved epochs (0-indexed)
    epochs: best            the saved epoch with the lowest epoch-end validation loss (what `base_epoch: best`
                            and tools/torchtune/pick_epoch use); needs validation_during_training
    epochs: last            the highest saved epoch
    epochs: [0, best, last] numbers and names mixed; each entry is one cell (`{task}_epoch0`,
                            `{task}_epoch_best`, `{task}_epoch_last`), even when two resolve to the same epoch
    epochs: null            runs evaluated once (controls, eval-only)

A `best` / `last` cell's job runs after its run's training job and resolves the epoch itself
(tools/inspect/cell_epoch.py), recording it in the cell's resolved_epoch.json; summarize shows `best (N)`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from cruijff_kit.experiment.layout import NAMED_EPOCHS

if TYPE_CHECKING:
    from cruijff_kit.errors import ProblemList

__all__ = ["NAMED_EPOCHS", "row_epochs", "epoch_text", "row_epoch_problems", "resolved_epoch", "job_epoch"]


def row_epochs(row: dict) -> list:
    """The epochs a matrix row evaluates, as a list ([None] for a row evaluated once)."""
    epochs = row.get("epochs")
    if epochs is None or epochs == []:
        return [None]
    return [epochs] if isinstance(epochs, (str, int)) else list(epochs)


def epoch_text(epoch, resolved=None) -> str:
    """How tables show a cell's epoch: `base` (evaluated once), `1`, `best`, `best (1)` once resolved."""
    if epoch is None:
        return "base"
    if epoch in NAMED_EPOCHS and resolved is not None:
        return f"{epoch} ({resolved})"
    return str(epoch)


def row_epoch_problems(i: int, row: dict, run: str, trained_epochs: int, validates: bool,
                       problems: ProblemList) -> None:
    """Load-time checks of one per-epoch row's `epochs` (the schema has vetted the types)."""
    at = f"evaluation.matrix[{i}].epochs"
    last = trained_epochs - 1
    if row.get("epochs") is None:
        problems.error(at, "fine-tuned runs need the epochs to evaluate",
                       f"list 0-indexed epochs, e.g. [{last}], or write best / last")
        return
    listed = isinstance(row["epochs"], list)
    seen: dict = {}
    for j, epoch in enumerate(row_epochs(row)):
        where = f"{at}[{j}]" if listed else at
        if epoch in seen:
            problems.error(where, f"{epoch} is listed twice (also epochs[{seen[epoch]}])", "list each epoch once")
            continue
        seen[epoch] = j
        if isinstance(epoch, int) and epoch >= trained_epochs:  # negatives: the schema's
            problems.error(where, f"epoch {epoch} does not exist ({run} trains {trained_epochs} epochs)",
                           f"epochs are 0-indexed: use 0..{last}")
        elif epoch == "best" and not validates:
            problems.error(where, f"best needs validation losses but {run} sets validation_during_training: false",
                           "set validation_during_training: true (data with a validation split) or use last")
    if "last" in seen and last in seen:
        problems.warn(f"{at}[{seen['last']}]", f"last is epoch {last} of {run}, also listed: evaluated twice",
                      f"drop one of last and {last}")


def resolved_epoch(cell_dir) -> int | None:
    """The epoch a `best` / `last` cell's job picked (its resolved_epoch.json), None before it ran."""
    from cruijff_kit.errors import UserError
    from cruijff_kit.experiment.layout import resolved_epoch_file
    from cruijff_kit.files import read_json

    try:
        record = read_json(resolved_epoch_file(cell_dir), {})
    except UserError:  # a damaged record reads as not resolved
        return None
    value = record.get("resolved_epoch")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def job_epoch(exp_dir, job) -> tuple[int | str | None, int | None]:
    """(epoch, resolved epoch) of a jobs.json eval job (a `best` / `last` one reads its cell's record)."""
    from cruijff_kit.experiment.layout import cell_dir

    if job.epoch in NAMED_EPOCHS and (job.meta or {}).get("cell"):
        return job.epoch, resolved_epoch(cell_dir(exp_dir, job.run, job.meta["cell"]))
    return job.epoch, job.epoch if isinstance(job.epoch, int) else None

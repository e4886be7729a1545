"""Which saved epoch of a training run to start from, resolved inside a job (at run time).

  python -m cruijff_kit.tools.torchtune.pick_epoch OUTPUT_DIR best|last|N [--dir]

Prints the epoch number (0-indexed), or with --dir the checkpoint directory OUTPUT_DIR/epoch_N.
`best` = the saved epoch with the lowest epoch-end val_loss in OUTPUT_DIR/training_summary.json
(written by our recipes); without validation losses it falls back to the last saved epoch, unless the
caller requires them (`require_val`: an eval matrix's `epochs: best`, which raises NoValidationLoss instead).
`resolve_dir(path)` turns an `epoch_best` / `epoch_last` stand-in (layout.epoch_named_dir) into the real
`epoch_N` directory; every job that meets such a path resolves it here, so the rule exists once.
Exit 1 (message on stderr) when the run saved no epoch at all. Imports nothing heavy.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from cruijff_kit.experiment.layout import TRAINING_SUMMARY as SUMMARY_FILE
from cruijff_kit.experiment.layout import epoch_dir, epoch_dirname, named_epoch_of, saved_epochs


class NoValidationLoss(ValueError):
    """`best` was required to come from validation losses, and the run recorded none."""


def val_losses(output_dir: str | Path) -> dict[int, float]:
    """{epoch: epoch-end val_loss} recorded in training_summary.json (epochs without one left out)."""
    try:
        epochs = json.loads((Path(output_dir) / SUMMARY_FILE).read_text()).get("epochs") or []
    except (OSError, ValueError, AttributeError):
        epochs = []
    return {e["epoch"]: float(e["val_loss"]) for e in epochs
            if isinstance(e, dict) and isinstance(e.get("epoch"), int)
            and isinstance(e.get("val_loss"), (int, float)) and not isinstance(e.get("val_loss"), bool)
            and not math.isnan(float(e["val_loss"]))}


def pick(output_dir: str | Path, which: str | int, *, require_val: bool = False) -> int:
    """The epoch to use; ValueError when nothing fits (NoValidationLoss: `best` without val losses, required)."""
    out = Path(output_dir)
    saved = saved_epochs(out)
    if not saved:
        raise ValueError(f"{out} has no epoch_N/ checkpoint (did the run train?)")
    which = str(which).strip()
    if which == "last":
        return saved[-1]
    if which.isdigit():
        if int(which) not in saved:
            raise ValueError(f"{out}/{epoch_dirname(int(which))} does not exist (saved: {saved})")
        return int(which)
    if which != "best":
        raise ValueError(f"'{which}' is not best, last or an epoch number")
    losses = val_losses(out)
    scored = [(loss, ep) for ep, loss in losses.items() if ep in saved]
    if not scored and require_val:
        raise NoValidationLoss(f"{out / SUMMARY_FILE} records no validation loss for any saved epoch")
    return min(scored)[1] if scored else saved[-1]


def resolve_dir(path: str | Path, *, require_val: bool = False) -> tuple[Path, int | None]:
    """(the checkpoint dir, the epoch picked): an `epoch_best` / `epoch_last` stand-in becomes the run's
    `epoch_N` (ValueError when that is impossible); any other path is returned as it is, with None."""
    path = Path(path)
    which = named_epoch_of(path)
    if which is None:
        return path, None
    epoch = pick(path.parent, which, require_val=require_val)
    return epoch_dir(path.parent, epoch), epoch


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_dir = "--dir" in argv
    argv = [a for a in argv if a != "--dir"]
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        epoch = pick(argv[0], argv[1])
    except ValueError as exc:
        print(f"pick_epoch: {exc}", file=sys.stderr)
        return 1
    print(str(epoch_dir(argv[0], epoch)) if as_dir else epoch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

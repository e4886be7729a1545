"""Which saved epoch of a training run to start from, resolved inside a job (at run time).

  python -m cruijff_kit.tools.torchtune.pick_epoch OUTPUT_DIR best|last|N [--dir]

Prints the epoch number (0-indexed), or with --dir the checkpoint directory OUTPUT_DIR/epoch_N.
`best` = the saved epoch with the lowest epoch-end val_loss in OUTPUT_DIR/training_summary.json
(written by our recipes); without validation losses it falls back to the last saved epoch.
Exit 1 (message on stderr) when the run saved no epoch at all. Imports nothing heavy.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from cruijff_kit.experiment.layout import TRAINING_SUMMARY as SUMMARY_FILE
from cruijff_kit.experiment.layout import epoch_dir, epoch_dirname, saved_epochs


def pick(output_dir: str | Path, which: str | int) -> int:
    """The epoch to use; ValueError when nothing fits."""
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
    try:
        epochs = json.loads((out / SUMMARY_FILE).read_text()).get("epochs") or []
    except (OSError, ValueError):
        epochs = []
    losses = {e["epoch"]: e.get("val_loss") for e in epochs if isinstance(e, dict) and "epoch" in e}
    scored = [(float(v), ep) for ep, v in losses.items()
              if ep in saved and isinstance(v, (int, float)) and not math.isnan(float(v))]
    return min(scored)[1] if scored else saved[-1]


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

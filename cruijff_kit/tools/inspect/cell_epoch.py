"""An eval cell's `epochs: best` / `last`, resolved when its job runs (inside the job; stdlib only).

The design's matrix may name `best` (the saved epoch with the lowest epoch-end validation loss) or `last`
(the highest saved epoch) instead of an epoch number; such a cell's eval_config.yaml names the stand-in
`{output_dir}/epoch_best` (or `epoch_last`) as its model_path. `resolve_cell(config)` picks the real
`epoch_N` with tools/torchtune/pick_epoch (the rule `base_epoch: best` uses for training), records the
choice in the cell's resolved_epoch.json (summarize shows it) and returns the config with model_path
pointing at `epoch_N` and `resolved_epoch: N`. Any runner that evaluates cells (one per job, or several
cells sharing a model load) calls it per cell before it loads a model. Other configs come back unchanged.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.tools.inspect.run_cell import CellError
from cruijff_kit.tools.torchtune.pick_epoch import NoValidationLoss, resolve_dir, val_losses


def resolve_cell(config: dict) -> dict:
    """The config with a `best` / `last` model_path resolved (CellError, one line, when it cannot be)."""
    which = layout.named_epoch_of(config["model_path"])
    if which is None:
        return config
    run = config.get("run") or "?"
    out = Path(config["model_path"]).parent
    try:
        path, epoch = resolve_dir(config["model_path"], require_val=True)
    except NoValidationLoss:
        raise CellError(f"run {run} recorded no validation loss ({out / layout.TRAINING_SUMMARY}), so `epochs: "
                        "best` has no epoch to pick; set validation_during_training: true (data with a validation "
                        "split) and train again, or evaluate `epochs: last`") from None
    except ValueError as exc:
        raise CellError(f"run {run}: cannot pick its {which} epoch: {exc}") from None
    record = {"run": run, "cell": config.get("cell"), "epoch": which, "resolved_epoch": epoch,
              "checkpoint": str(path), "val_loss": val_losses(out).get(epoch),
              "rule": "lowest epoch-end validation loss" if which == "best" else "highest saved epoch",
              "resolved_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if config.get("_path"):  # the cell's eval_config.yaml: the record goes next to it
        from cruijff_kit.files import write_json

        write_json(layout.resolved_epoch_file(Path(config["_path"]).parent), record)
    return {**config, "model_path": str(path), "resolved_epoch": epoch}


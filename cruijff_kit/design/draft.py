"""The approved draft -> the experiment directory.

The design is drafted outside the experiment directory (nothing is written there before the researcher
approves the plan). `design save` then writes it as `{experiment_dir}/experiment_summary.yaml`, with every
relative file path made absolute against the draft's folder, so the design reads the same files from its new
place. Placeholders such as `{models_dir}` stay as they are.
"""
from __future__ import annotations

import copy
from pathlib import Path


def _absolute(value, base: Path):
    if not isinstance(value, str) or not value or value.startswith(("{", "/", "~")):
        return value
    return str((base / value).resolve())


def absolutize(data: dict, base: Path) -> dict:
    """A copy of the design with the relative file paths (data, preference source, task scripts and
    datasets, experiment.dir) resolved against BASE."""
    out = copy.deepcopy(data)
    for ds in (out.get("data") or {}).values():
        if isinstance(ds, dict):
            ds["path"] = _absolute(ds.get("path"), base)
            if isinstance(ds.get("generate"), dict) and "source" in ds["generate"]:
                ds["generate"]["source"] = _absolute(ds["generate"]["source"], base)
    for task in (out.get("evaluation") or {}).get("tasks") or []:
        for key in ("script", "dataset"):
            if key in task:
                task[key] = _absolute(task[key], base)
    if (out.get("experiment") or {}).get("dir"):
        out["experiment"]["dir"] = _absolute(out["experiment"]["dir"], base)
    return out

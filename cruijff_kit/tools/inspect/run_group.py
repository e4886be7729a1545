"""Run the eval cells of one grouped job: `python -m cruijff_kit.tools.inspect.run_group eval_group.yaml`.

eval_group.yaml (rendered by scaffold, workers/inspect/groups.py) lists the cells; each has its own
eval_config.yaml and is evaluated exactly as run_cell evaluates it, into its own logs/ dir. What changes is
the model: each cell's checkpoint is resolved by the same per-cell function (run_cell.cell_model), and cells
whose model args are the same apart from the adapter share one loaded model (provider.py): the base model is
loaded once and each epoch's adapter merged into it in memory in turn (the previous adapter's weights put
back first). Cells of one checkpoint run back to back, so no adapter is applied twice.

A cell that fails (bad config, missing checkpoint, an eval error) is recorded and the others still run.
cells.json next to eval_group.yaml says, as the job goes, each cell's status (running | completed | failed),
log, error and wall time; `cruijff-kit status` shows it per cell. With CK_EVAL_SKIP_DONE=1 (set by the engine
when it reruns the job, e.g. `resubmit --failed`) cells that already have a successful log are not evaluated
again. Each cell's provenance.json is written into its cell dir, as a per-cell job writes it.

Exit status: 0 when every cell succeeded, else the worst of the cells' (1: an eval failed, 2: a bad config).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.tools.inspect import run_cell
from cruijff_kit.tools.inspect.run_cell import CellError, say

SKIP_DONE = "CK_EVAL_SKIP_DONE"


def load_group(path: str | Path) -> dict:
    path = Path(path)
    group = run_cell.read_mapping(path, "eval group file")
    cells = group.get("cells")
    if not isinstance(cells, list) or not cells or not all(isinstance(c, dict) and c.get("config") for c in cells):
        raise CellError(f"{path}: expected a list of cells with their config; re-run `cruijff-kit scaffold`")
    group["_dir"] = str(path.resolve().parent)
    return group


def has_success_log(log_dir: Path) -> Path | None:
    """The newest successful .eval log of a cell, if any (headers only)."""
    from inspect_ai.log import read_eval_log

    for path in sorted(Path(log_dir).glob("*.eval"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            if read_eval_log(str(path), header_only=True).status == "success":
                return path
        except Exception:  # noqa: BLE001 - a half-written log is simply not a finished one
            continue
    return None


class Outcomes:
    """cells.json: each cell's outcome, rewritten atomically after every change."""

    def __init__(self, group: dict):
        self.path = Path(group["_dir"]) / (group.get("state_file") or layout.EVAL_GROUP_STATE)
        self.data = {"job": group.get("job_id"), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "loads": 0,
                     "cells": {c.get("cell") or c["config"]: {"id": c.get("id"), "status": "pending"}
                               for c in group["cells"]}}

    def set(self, cell: str, **fields) -> None:
        from cruijff_kit.files import write_json

        self.data["cells"][cell].update(fields)
        write_json(self.path, self.data)


def write_provenance(cell_dir: Path, spec: dict) -> None:
    from cruijff_kit.tools import provenance

    try:
        provenance.write(layout.provenance_file(cell_dir),
                         provenance.collect(dict(spec.get("files") or {}), dict(spec.get("models") or {})))
    except Exception as exc:  # noqa: BLE001 - as in a per-cell job: a warning, never a failed eval
        say(f"warning: provenance.json of {cell_dir.name} not written: {exc}")


def load_key(margs: dict) -> str:
    """What decides whether two cells can share a loaded model: their model args apart from the adapter."""
    return json.dumps({k: v for k, v in margs.items() if k != "adapter_path"}, sort_keys=True, default=str)


class SharedModel:
    """The loaded model of the cells that share model args (apart from the adapter): loaded on first use."""

    def __init__(self):
        self.key, self.model = None, None

    def get(self, config: dict, margs: dict):
        key = load_key(margs)
        if key != self.key:
            self.close()
            from inspect_ai.model import GenerateConfig, get_model

            from cruijff_kit.tools.inspect.provider import register

            run_cell.check_device(str(config.get("device") or "cpu"))
            self.model = get_model(register(), config=GenerateConfig(**run_cell.generate_args(config)),
                                   memoize=False, **{k: v for k, v in margs.items() if k != "adapter_path"})
            self.key = key
        self.model.api.use_adapter(margs.get("adapter_path"))
        seed = (config.get("generation") or {}).get("seed")
        if seed is not None:  # every cell starts from the seed, as in its own job
            from inspect_ai.model._providers.hf import set_random_seeds

            set_random_seeds(int(seed))
        return self.model

    def close(self) -> None:
        if self.model is not None:
            self.model.api.close()
        self.key, self.model = None, None


def cell_run(shared: SharedModel, name: str, config: dict, margs: dict, model_dir: Path) -> tuple[int, str]:
    """(exit code, error) of one cell; a crash is the cell's failure, never the group's. A model that could not
    be loaded or given its adapter is dropped (the next cell loads it again); a task's failure keeps it."""
    stage = "model"
    try:
        model = shared.get(config, margs)
        stage = "eval"
        code = run_cell.evaluate(config, model, margs, model_dir)
        return code, ("the eval failed (see the job log above)" if code else "")  # evaluate said why
    except CellError as exc:
        code, error = 2, str(exc)
    except Exception as exc:  # noqa: BLE001 - one cell's crash is its failure
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        code, error = 1, f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
    if stage == "model":
        shared.close()
    say(f"eval {name} FAILED: {error}")
    return code, error


def plan(group: dict, outcomes: Outcomes, skip_done: bool) -> tuple[list, int]:
    """(cells to evaluate as (name, config, model_dir, margs, adapter, spec), worst exit code so far), in
    the order that loads each model once and applies each adapter once."""
    todo, worst = [], 0
    for spec in group["cells"]:
        name = spec.get("cell") or spec["config"]
        try:
            config = run_cell.load_config(spec["config"])
            if skip_done and (log := has_success_log(Path(config["log_dir"]))):
                say(f"eval {name}: already has a successful log ({log.name}); not evaluated again")
                outcomes.set(name, status="completed", skipped=True, log=str(log))
                continue
            config, model_dir, margs, adapter = run_cell.cell_model(config)
        except CellError as exc:
            say(f"eval {name} FAILED: {exc}")
            outcomes.set(name, status="failed", error=str(exc))
            worst = max(worst, 2)
            continue
        todo.append((name, config, model_dir, margs, adapter, spec))
    first: dict = {}  # the position of the first cell of each model, and of each adapter
    for i, item in enumerate(todo):
        first.setdefault(load_key(item[3]), i)
        first.setdefault(str(item[4]), i)
    return sorted(todo, key=lambda item: (first[load_key(item[3])], first[str(item[4])])), worst


def run(group: dict) -> int:
    run_cell.quiet_environment()
    outcomes = Outcomes(group)
    skip_done = os.environ.get(SKIP_DONE) == "1"
    todo, worst = plan(group, outcomes, skip_done)
    shared = SharedModel()
    from cruijff_kit.tools.inspect import provider

    say(f"eval group {group.get('job_id')}: {len(group['cells'])} cells, {len(todo)} to evaluate")
    for name, config, model_dir, margs, adapter, spec in todo:
        started = time.monotonic()
        outcomes.set(name, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_provenance(Path(config["_path"]).parent, spec.get("provenance") or {})
        if adapter is not None:
            say(f"adapter {adapter} merged into base {model_dir} in memory")
        code, error = cell_run(shared, name, config, margs, model_dir)
        worst = max(worst, code)
        log = has_success_log(Path(config["log_dir"])) if code == 0 else None
        outcomes.data["loads"] = len(provider.loads())
        outcomes.set(name, status="completed" if code == 0 else "failed", error=error,
                     log=str(log or ""), wall_s=round(time.monotonic() - started, 1))
    shared.close()
    records = outcomes.data["cells"]
    failed = [n for n, rec in records.items() if rec.get("status") == "failed"]
    skipped = sum(1 for rec in records.values() if rec.get("skipped"))
    say(f"eval group {group.get('job_id')}: {len(records) - len(failed) - skipped} evaluated, {skipped} skipped "
        f"(finished earlier), {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
        f"{len(provider.loads())} model load(s)")
    return worst


def main(argv: list[str] | None = None) -> int:
    return run_cell.entry(argv, "cruijff_kit.tools.inspect.run_group", layout.EVAL_GROUP_CONFIG, load_group, run)


if __name__ == "__main__":
    raise SystemExit(main())

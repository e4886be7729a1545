"""The executors `run` can drive: one table, name -> class (or "module:Class", imported when first used).

Adding a backend is one class (a subclass of base.Executor with its capabilities declared) and one line
here; the engine, status, cancel and resubmit never name a backend. See docs/executors.md.
"""
from __future__ import annotations

import importlib

EXECUTORS: dict = {
    "local": "cruijff_kit.run.executors.local:LocalExecutor",
    "slurm": "cruijff_kit.run.executors.slurm:SlurmExecutor",
}


def names() -> list[str]:
    return list(EXECUTORS)


def executor_class(name: str):
    """The Executor subclass registered as `name`; ValueError for an unknown name."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
    entry = EXECUTORS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def needs_runner(name: str | None) -> bool:
    """Jobs recorded with this executor live in the process of the runner that submitted them (False for
    no or an unknown name)."""
    try:
        return bool(name) and executor_class(name).needs_runner
    except ValueError:
        return False


def make_executor(name: str, exp_dir, *, max_parallel: int = 1, require: bool = True, state: dict | None = None):
    """A ready executor: made, and given what it keeps in state.json (`state`, when given)."""
    ex = executor_class(name)(exp_dir, max_parallel=max_parallel, require=require)
    if state is not None:
        ex.load_state(state)
    return ex

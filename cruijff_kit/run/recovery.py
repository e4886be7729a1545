"""A lost `.ck/state.json` (deleted, or emptied) rebuilt from what the jobs left on disk.

Every verb builds an Engine, and the Engine calls `rebuild` first: when the state file is lost and the
jobs left evidence (exit-code files, compute.json, complete epoch checkpoints: experiment/recover.py),
the state is written again from it, each rebuilt job marked `recovered: true`. Then `status` shows what
ran, `run` skips completed jobs, and a training job with complete checkpoints but no sign of finishing
(or killed by a signal) is pending with its rerun policy's overrides (torchtune: CK_RESUME=1), so `run` resumes it from its
last epoch instead of restarting. A damaged (unreadable) state file is never rebuilt silently:
StateStore.read names it and the fix. While a runner drives the experiment, a state file lost, damaged
or rebuilt under it is written back from the runner's own last snapshot (`restore`), so no running job
is submitted twice.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict

from cruijff_kit.errors import UserError
from cruijff_kit.experiment.recover import recover_jobs
from cruijff_kit.run.state import PENDING, ensure_jobs, new_job


def rebuild(engine, *, write: bool = True) -> list[str]:
    """Rebuild a lost state from disk; returns the ids of the jobs that found evidence ([] if none).
    write=False (dry runs): the rebuilt state is only what the lost file reads as (store.fallback)."""
    if not engine.store.lost():
        return []
    found = {job_id: rec for job_id, rec in recover_jobs(engine.exp_dir, [asdict(j) for j in engine.jobs]).items()
             if rec["state"] != PENDING}
    if not found:
        return []  # never run (or nothing left): an empty state is the truth
    if not write:
        st = engine.store.read()
        _fill(engine, st, found)
        engine.store.fallback = st
        return list(found)
    with engine.store.locked() as st:
        if not engine.store.lost():  # another process rebuilt it meanwhile
            return []
        _fill(engine, st, found)
        engine.log("STATE_REBUILT", f"rebuilt a lost state of {len(found)} job(s) from disk",
                   result=", ".join(f"{i}={st['jobs'][i]['state']}" for i in list(found)[:20]),
                   explanation="state.json was missing or empty; evidence: exit-code files, compute.json, "
                               "complete checkpoints", job_id="-")
    return list(found)


def _fill(engine, st: dict, found: dict) -> None:
    ensure_jobs(st, engine.by_id)
    for job_id, rec in found.items():
        job, js = engine.by_id[job_id], new_job()
        js.update(state=rec["state"], exit_code=rec["exit_code"], reason=rec["reason"], recovered=True)
        code = rec["exit_code"]
        killed = code is None or code < 0 or code > 128  # no sign of an ending, or a signal: interrupted
        if rec["resume_from"] is not None and job.kind == "train" and killed:
            env = engine.rerun_env(job, js)
            if env:  # its trainer resumes from the checkpoints: let `run` start it again
                js.update(state=PENDING, env=env, reason=f"recovered: resumes after epoch {rec['resume_from']}")
        st["jobs"][job_id] = js


def remember(engine, st: dict) -> None:
    """Keep the state this process last wrote (a live runner's memory of every submitted id)."""
    engine.last_state = copy.deepcopy(st)


def restore(engine) -> bool:
    """The runner's state file lost, damaged or replaced (a rebuild by `status` from another terminal drops
    the runner record) while it drives the experiment: write its last snapshot back."""
    last = getattr(engine, "last_state", None)
    if not last or (last.get("runner") or {}).get("pid") != os.getpid():
        return False  # not the live runner: a lost file is rebuilt from disk by the next verb instead

    def fine() -> bool:
        if engine.store.lost():
            return False
        try:
            return (engine.store.read().get("runner") or {}).get("pid") == os.getpid()
        except UserError:
            return False

    if fine() or not engine.store.replace(copy.deepcopy(last), unless=fine):
        return False
    engine.log("STATE_RESTORED", "state.json was lost or replaced during the run: written back from the "
               "runner's memory", result=f"{len(last.get('jobs') or {})} job(s)", job_id="-")
    return True

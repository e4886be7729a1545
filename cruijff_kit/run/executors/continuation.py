"""Staged designs on SLURM without --wait: the cluster carries the experiment on by itself.

A job held by a stage gate cannot be handed to sbatch yet: the gate is decided from its stage's eval
results, by the run engine. So after a non-blocking SLURM pass that leaves gate-held jobs, one small job
(`.ck/continue.slurm`, templates/continue.slurm.j2) is submitted with --dependency=afterany on the eval jobs
the gate waits for. It runs `cruijff-kit run EXP --executor slurm` on the cluster: the gate is decided, the next
stage submitted, and, when another gate lies ahead, the next continuation. `cancel` cancels it too.

The engine reaches this through the executor's declared capability (`continues_gates`,
SlurmExecutor.submit_continuation); continue_on_cluster is the engine's side of it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.files import atomic_write
from cruijff_kit.jobscript import job_environment, resources
from cruijff_kit.render import render
from cruijff_kit.run import gates
from cruijff_kit.run.state import PENDING, TERMINAL, is_submitted

SCRIPT = layout.CONTINUATION
KEY = "continuation"  # in state.json: {"native_id", "after", "script", "executor"}
EXECUTOR = "slurm"  # the executor that runs it (continuations recorded before "executor" was kept)
RESOURCES = {"time": "00:15:00", "mem": "2G", "cpus": 1, "gpus": 0}


def gate_waits(engine, st: dict) -> list[str]:
    """Native ids of the submitted, unfinished eval jobs that gates holding selected jobs wait for."""
    ids: list[str] = []
    for job_id in engine.selected:
        js = st["jobs"][job_id]
        if js["state"] != PENDING or js["native_id"]:
            continue
        stage = gates.blocking_gate(engine.plan, st, job_id)
        if not stage:
            continue
        for ev in engine.plan.evals(stage):
            es = st["jobs"][ev.id]
            if is_submitted(es) and es["state"] not in TERMINAL and es["native_id"] not in ids:
                ids.append(es["native_id"])
    return ids


def already_waiting(st: dict, after: list[str], live: set[str]) -> bool:
    """An earlier continuation (not this one) still waits on the same jobs."""
    prev = st.get(KEY) or {}
    return (bool(prev.get("native_id")) and sorted(prev.get("after") or []) == sorted(after)
            and prev["native_id"] != os.environ.get("SLURM_JOB_ID") and prev["native_id"] in live)


def write_script(engine) -> Path:
    settings = engine.settings
    ck = layout.ck_dir(engine.exp_dir)
    path = engine.exp_dir / SCRIPT
    text = render("continue.slurm.j2", job_name=f"ck-continue-{engine.experiment}"[:60],
                  log=str(ck / "continue-%j.out"), res=resources(settings, dict(RESOURCES), device="cpu"),
                  source="`cruijff-kit run` (rewritten at each continuation)", exit_code_file=layout.exit_code_file(path),
                  env=job_environment(settings, engine.exp_dir), workdir=str(engine.exp_dir),
                  job_id="continuation", python=sys.executable, exp_dir=str(engine.exp_dir))
    atomic_write(path, text)
    return path


def submit(engine, st: dict, after: list[str]) -> str:
    """sbatch the continuation; returns its job id. Raises RuntimeError with sbatch's message."""
    script = write_script(engine)
    args = ["sbatch", "--parsable", "--dependency=afterany:" + ":".join(after),
            str(script)]
    try:
        proc = subprocess.run(args, cwd=str(engine.exp_dir), capture_output=True, text=True, timeout=60,
                              start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(str(exc)) from exc
    native = proc.stdout.strip().split(";")[0]
    if proc.returncode != 0 or not native.isdigit():
        raise RuntimeError(" ".join((proc.stderr or proc.stdout).split()) or f"sbatch exit {proc.returncode}")
    st[KEY] = {"native_id": native, "after": list(after), "script": SCRIPT, "executor": EXECUTOR}
    engine.log("SUBMIT_CONTINUATION", f"Submitted the continuation of {engine.experiment}",
                command=" ".join(args[:-1] + [SCRIPT]), result=f"slurm job {native}", job_id=native,
                explanation="decides the gate on the cluster after its eval jobs end, then submits the next stage")
    return native


def continue_on_cluster(engine, ex) -> None:
    """Jobs held by a gate: a continuation job decides the gate once its evals end (`ex` continues_gates)."""
    snapshot = engine.store.read()
    after = gate_waits(engine, snapshot)
    if not after:
        return
    prev = (snapshot.get(KEY) or {}).get("native_id")
    live = {n for n, s in ex.poll([prev]).items() if s.state not in TERMINAL} if prev else set()
    with engine.critical(), engine.store.locked() as st:
        if already_waiting(st, after, live):
            engine.continuation_id = st[KEY]["native_id"]
            return
        try:
            engine.continuation_id = ex.submit_continuation(engine, st, after)
        except RuntimeError as exc:
            engine.out(f"could not submit the continuation job ({exc}): run `cruijff-kit run {engine.exp_dir}` "
                       f"again after the gate's eval jobs ended, or use --wait")
            return
    engine.out(f"submitted continuation {engine.continuation_id}: it decides the gate after job(s) "
               f"{', '.join(after)} end and submits the next stage")

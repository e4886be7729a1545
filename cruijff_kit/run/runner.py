"""The runner: the one process that drives an experiment (recorded in state.json as `runner`).

prepare   before a loop: refuse a second live runner, clean up after a dead one, re-read gates, requeue
          interrupted and gate-stopped jobs, record this process as the runner when it will block
finish    after a loop (done, Ctrl-C, a crash): stop the jobs that die with us (executors that need a
          runner), mark them interrupted, release the runner record, log ALL_COMPLETE once
signals   SIGINT/SIGTERM/SIGHUP become KeyboardInterrupt, held back while the state is being written

Which jobs belong to a runner is the executor's declared capability `needs_runner`, never its name.
"""
from __future__ import annotations

import os
import signal

from cruijff_kit.errors import UserError
from cruijff_kit.fmt import fmt_time
from cruijff_kit.run import gates
from cruijff_kit.run.executors import executor_class, needs_runner
from cruijff_kit.run.state import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    ensure_jobs,
    is_submitted,
    now,
    reset_job,
    runner_alive,
    runner_record,
)


def prepare(engine, executor_name: str, *, own_runner: bool) -> dict:
    """Before a loop: refuse a second live runner, clean up after a dead one, requeue interrupted jobs."""
    with engine.critical(), engine.store.locked() as st:
        ensure_jobs(st, engine.by_id)
        runner = st.get("runner")
        if runner and runner.get("pid") != os.getpid() and runner_alive(runner):
            raise UserError(
                f"another `cruijff-kit {runner.get('command', 'run')}` (pid {runner['pid']}, {runner.get('executor')}, "
                f"since {fmt_time(runner.get('started'))}) is driving this experiment", where=str(engine.exp_dir),
                hint=f"watch it with `cruijff-kit status {engine.exp_dir}`; stop it with Ctrl-C in its terminal "
                     f"or `cruijff-kit cancel {engine.exp_dir}`")
        reconcile_dead_runner(engine, st)
        dropped = gates.stale_gates(engine.plan, st)
        if dropped:
            engine.out(f"re-evaluating gate(s) from {gates.DESIGN_FILE}: {', '.join(dropped)}")
        requeue = [i for i in engine.selected if st["jobs"][i]["state"] in (CANCELLED, FAILED)
                   and st["jobs"][i]["reason"].startswith(INTERRUPTED)]
        if requeue:
            engine.reset(st, requeue, "interrupted earlier: rerun")
            engine.out(f"rerunning {len(requeue)} interrupted job(s): {', '.join(requeue)}")
        gated = [i for i in engine.selected if st["jobs"][i]["state"] == CANCELLED
                 and st["jobs"][i]["reason"].startswith(gates.GATE_PREFIX)]
        if gated:  # the gate is evaluated again (from the design as it is now) before they may start
            engine.reset(st, gated, "stopped by a gate earlier: the gate is evaluated again")
            engine.out(f"re-checking {len(gated)} job(s) stopped by a gate: {', '.join(gated)}")
        if own_runner:
            st["runner"] = runner_record(executor_name, engine.command)
        return st


def reconcile_dead_runner(engine, st: dict) -> None:
    """Jobs of a runner that died without cleaning up: kill leftovers, mark them interrupted."""
    runner = st.get("runner")
    if runner and runner_alive(runner) and runner.get("pid") != os.getpid():
        return
    gone = f"runner pid {runner['pid']} stopped" if runner else "no runner"
    for job_id in engine.order:
        js = st["jobs"][job_id]
        if not needs_runner(js.get("executor")) or not is_submitted(js):
            continue
        if js["state"] == RUNNING or js.get("pid"):
            executor_class(js["executor"]).stop_detached(js["native_id"], js.get("pid"))
            js["ended"] = now()
            engine.set_state(st, engine.by_id[job_id], js, CANCELLED, reason=f"{INTERRUPTED} ({gone})", quiet=True)
        else:
            reset_job(js, keep_env=True)
    if runner and runner.get("pid") != os.getpid():
        st["runner"] = None


def finish(engine, executor_name: str, *, interrupted: bool) -> dict:
    """After the loop: close the executors whose jobs die with us; record what that did; release the runner."""
    held = {name: ex for name, ex in engine.executors.items() if ex.needs_runner}
    polls: dict = {}
    for name, ex in held.items():
        if interrupted:
            try:  # what finished before the interrupt is recorded as finished
                jobs = engine.store.read()["jobs"].values()
                polls[name] = ex.poll([js["native_id"] for js in jobs if js.get("executor") == name and is_submitted(js)])
            except Exception:  # noqa: BLE001 - nothing may stop the cleanup below
                pass
        ex.close()
    engine._critical_depth += 1  # no second interrupt while we clean up
    try:
        with engine.store.locked() as st:
            if interrupted and held:
                engine.apply_polls(st, {name: {k: v for k, v in p.items() if v.state in (COMPLETED, FAILED)}
                                         for name, p in polls.items()})
                for job_id in engine.order:
                    js = st["jobs"][job_id]
                    if js.get("executor") not in held or not is_submitted(js):
                        continue
                    status = polls.get(js["executor"], {}).get(js["native_id"])
                    if js["state"] == RUNNING or js.get("pid") or (status is not None and status.pid is not None):
                        js["ended"] = now()
                        engine.set_state(st, engine.by_id[job_id], js, CANCELLED, reason=INTERRUPTED, quiet=True)
                    else:
                        reset_job(js, keep_env=True)
            if interrupted:
                title = executor_class(executor_name).title
                engine.log("INTERRUPTED", f"{engine.command} interrupted", result="stopped",
                           explanation=f"{title} jobs killed and marked interrupted; run again to continue"
                           if held else f"{title} jobs keep running; `status` follows them")
            runner = st.get("runner")
            if runner and runner.get("pid") == os.getpid():
                st["runner"] = None
            if all(st["jobs"][i]["state"] == COMPLETED for i in engine.order) and not st.get("all_complete_logged"):
                st["all_complete_logged"] = True
                engine.log("ALL_COMPLETE", f"all {len(engine.order)} jobs of {engine.experiment} completed",
                           result=f"{len(engine.order)} completed", explanation="every job in jobs.json completed")
            engine.write_summary(st)
            return st
    finally:
        engine._critical_depth -= 1
        engine._stop_pending = False


def install_signals(engine) -> dict:
    """SIGINT/SIGTERM/SIGHUP -> KeyboardInterrupt, held back inside engine.critical(); returns the old handlers."""
    def handler(signum, frame):
        if engine._critical_depth:
            engine._stop_pending = True
            return
        raise KeyboardInterrupt

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return old


def restore_signals(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)

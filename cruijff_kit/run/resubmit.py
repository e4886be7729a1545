"""Rerun the jobs that failed, the jobs cancelled because a dependency failed or was cancelled (with that
dependency: after a `scancel` of a training job, `--failed` reruns the training job and its evals), and
their dependents.

A training job whose output dir already holds epoch_N checkpoints resumes from the last one
(CK_RESUME=1 -> resume_from_checkpoint=True) instead of starting over. Completed jobs never rerun.

  cruijff-kit resubmit EXPERIMENT_DIR --failed             rerun failed jobs (+ dependents)
  cruijff-kit resubmit EXPERIMENT_DIR --failed --cancelled also jobs cancelled with `cancel`
  cruijff-kit resubmit EXPERIMENT_DIR --failed --wait      SLURM: follow them until done
"""
from __future__ import annotations

from cruijff_kit.errors import UserError
from cruijff_kit.run.cli import add_common, check_limits


def configure(parser) -> None:
    add_common(parser)
    parser.add_argument("--failed", action="store_true", required=True,
                        help="rerun failed jobs and the jobs cancelled because of them (required)")
    parser.add_argument("--cancelled", action="store_true", help="also rerun jobs cancelled with `cancel`")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="only the jobs of these runs")
    parser.add_argument("--dry-run", action="store_true", help="list what would rerun; change nothing")


def main(args) -> int:
    from cruijff_kit.run.engine import Engine
    from cruijff_kit.run.state import ensure_jobs, runner_alive

    check_limits(args)
    engine = Engine(args.experiment_dir, command="resubmit", dry_run=args.dry_run)
    if args.only:
        engine.graph.select(args.only)  # validates the names
    snapshot = engine.store.read()
    ensure_jobs(snapshot, engine.by_id)
    targets = resubmit_targets(engine, snapshot, include_cancelled=args.cancelled, only=args.only)
    if not targets:
        print("nothing to resubmit: no failed (or dependency-cancelled) jobs")
        return 0
    runner = snapshot.get("runner")
    if runner_alive(runner):
        raise UserError(f"a `cruijff-kit {runner.get('command', 'run')}` (pid {runner['pid']}) is still driving "
                        "this experiment", where=str(engine.exp_dir),
                        hint="wait for it to finish (or stop it) before resubmitting")
    name = args.executor or _last_executor(snapshot, targets) or _default_executor()
    if args.dry_run:
        for job_id in targets:
            js = snapshot["jobs"][job_id]
            env = engine.rerun_env(engine.by_id[job_id], js)
            extra = " ".join(f"{k}={v}" for k, v in env.items())
            print(f"  rerun  {job_id} ({js['state']}: {js['reason'] or '-'}){' with ' + extra if extra else ''}")
        print(f"dry run ({name}): {len(targets)} job(s) would rerun; nothing was changed")
        return 0
    with engine.store.locked() as st:
        ensure_jobs(st, engine.by_id)
        targets = resubmit_targets(engine, st, include_cancelled=args.cancelled, only=args.only)
        engine.reset(st, targets, "resubmit --failed")
        engine.log("RESUBMIT", f"resubmitting {len(targets)} job(s)", command=f"cruijff-kit resubmit {engine.exp_dir} --failed",
                   result=", ".join(targets[:20]) + (" ..." if len(targets) > 20 else ""),
                   explanation="failed / dependency-cancelled jobs and their dependents",
                   details="; ".join(f"{i}: {' '.join(f'{k}={v}' for k, v in st['jobs'][i]['env'].items())}"
                                     for i in targets if st["jobs"][i]["env"]) or "-")
    print(f"resubmitting {len(targets)} job(s): {', '.join(targets)}")
    return engine.run(name, selected=targets, max_parallel=args.max_parallel, max_submit=args.max_submit,
                      wait=args.wait, poll_interval=args.poll_interval)


def resubmit_targets(engine, st: dict, *, include_cancelled: bool = False, only: list[str] | None = None) -> list[str]:
    """Failed jobs, jobs cancelled because a dependency failed or was cancelled, was interrupted or a gate
    stopped them (or by the user, when asked), the cancelled dependencies of those, and every dependent of
    those that has not completed."""
    from cruijff_kit.run.gates import GATE_PREFIX
    from cruijff_kit.run.state import CANCELLED, DEPENDENCY_PREFIX, FAILED, INTERRUPTED

    chosen = []
    for job_id in engine.order:
        js = st["jobs"][job_id]
        if only and engine.by_id[job_id].run not in only:
            continue
        if js["state"] == FAILED or (js["state"] == CANCELLED and (
                js["reason"].startswith(DEPENDENCY_PREFIX) or js["reason"].startswith(INTERRUPTED)
                or js["reason"].startswith(GATE_PREFIX) or include_cancelled)):
            chosen.append(job_id)
    # a job cancelled because its dependency was cancelled (a `scancel`, a `cancel --stage train`) can only
    # run again with that dependency: bring back every cancelled or failed job it waits on
    for job_id in list(chosen):
        if st["jobs"][job_id]["state"] == CANCELLED and st["jobs"][job_id]["reason"].startswith(DEPENDENCY_PREFIX):
            chosen += [a for a in engine.graph.ancestors([job_id]) if st["jobs"][a]["state"] in (FAILED, CANCELLED)]
    for job_id in list(chosen):
        chosen += [d for d in engine.graph.descendants(job_id) if st["jobs"][d]["state"] in (FAILED, CANCELLED)]
    return [i for i in engine.order if i in set(chosen)]


def _last_executor(snapshot: dict, targets: list[str]) -> str | None:
    names = [snapshot["jobs"][i].get("executor") for i in targets if snapshot["jobs"][i].get("executor")]
    return max(set(names), key=names.count) if names else None


def _default_executor() -> str:
    from cruijff_kit.settings import load_settings

    return load_settings().executor


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("resubmit")

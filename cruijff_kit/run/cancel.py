"""Cancel an experiment's queued and running jobs (all, or those of --only RUN...).

SLURM jobs get scancel; local jobs are stopped (their process group gets SIGTERM, then SIGKILL) and
the runner that started them leaves them alone. Jobs not yet submitted are marked cancelled too, so no
runner starts them; their dependents become cancelled ("dependency <id> cancelled").
`cruijff-kit resubmit DIR --failed --cancelled` brings them back.
"""
from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("experiment_dir", help="the experiment directory (holds jobs.json)")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="only the jobs of these runs")
    parser.add_argument("--stage", choices=("train", "eval", "all"), default="all", help="only this stage's jobs")


def cancel(engine, ids: list[str]) -> list[str]:
    """Cancel the given jobs (those not yet finished); returns the ids it cancelled."""
    import os

    from cruijff_kit.run.executors import continuation, executor_class
    from cruijff_kit.run.state import BY_USER, CANCELLED, TERMINAL, ensure_jobs, is_submitted, now

    with engine.critical(), engine.store.locked() as st:
        ensure_jobs(st, engine.by_id)
        runner = st.get("runner")
        done = []
        natives: dict[str, list[str]] = {}  # executor -> ids to cancel through it
        for job_id in ids:
            js = st["jobs"][job_id]
            if js["state"] in TERMINAL:
                continue
            if is_submitted(js):
                cls = executor_class(js["executor"])
                if cls.needs_runner:  # its runner holds it: stop its processes; the runner sees the state
                    if js.get("pid"):
                        cls.stop_detached(js["native_id"], js["pid"], graceful=True)
                else:
                    natives.setdefault(js["executor"], []).append(js["native_id"])
            js["ended"] = now()
            engine.set_state(st, engine.by_id[job_id], js, CANCELLED, reason=BY_USER, quiet=True)
            done.append(job_id)
        cont = st.get(continuation.KEY) or {}
        if cont.get("native_id") and cont["native_id"] != os.environ.get("SLURM_JOB_ID") and not any(
                js["state"] not in TERMINAL and js["native_id"] for js in st["jobs"].values()):
            # nothing left for it to wait on
            natives.setdefault(cont.get("executor") or continuation.EXECUTOR, []).append(cont["native_id"])
            st.pop(continuation.KEY)
        for name, ids_ in natives.items():
            engine.executor(name).cancel(ids_)
        engine.cascade(st)
        if done:
            engine.log("CANCEL", f"cancelled {len(done)} job(s)", command=f"cruijff-kit cancel {engine.exp_dir}",
                       result=", ".join(done[:20]) + (" ..." if len(done) > 20 else ""),
                       explanation="requested by the user" + (f"; runner pid {runner['pid']} is told through the "
                                                              "state file" if runner else ""))
        engine.write_summary(st)
        return done


def main(args) -> int:
    from cruijff_kit.run.engine import Engine

    engine = Engine(args.experiment_dir, command="cancel")
    done = cancel(engine, engine.graph.select(args.only, args.stage))
    if done:
        print(f"cancelled {len(done)} job(s): {', '.join(done)}")
    else:
        print("nothing to cancel: every selected job has already finished")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("cancel")

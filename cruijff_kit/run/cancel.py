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


def main(args) -> int:
    from cruijff_kit.run.engine import Engine

    engine = Engine(args.experiment_dir, command="cancel")
    done = engine.cancel(engine.select(args.only, args.stage))
    if done:
        print(f"cancelled {len(done)} job(s): {', '.join(done)}")
    else:
        print("nothing to cancel: every selected job has already finished")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("cancel")

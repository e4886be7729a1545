"""Run a scaffolded experiment: every job of jobs.json, locally or on SLURM, in dependency order.

Local (the default unless claude.local.md sets a SLURM account or `Executor: slurm`): runs in the
foreground until every selected job is done, at most --max-parallel at once; Ctrl-C kills the jobs and
leaves a consistent state. SLURM: submits with sbatch (eval cells after their training job,
--dependency=afterok) and returns; --wait follows the jobs until they finish (and drip-feeds with
--max-submit). Without --wait, jobs held by a stage gate are submitted by a continuation job on the
cluster (.ck/continue.slurm, after the gate's eval jobs) that decides the gate and submits the next stage. Running again continues where the last run stopped: submitted, running and completed
jobs are skipped, interrupted ones rerun.

  cruijff-kit run EXPERIMENT_DIR                          run everything locally
  cruijff-kit run EXPERIMENT_DIR --executor slurm --wait  submit to SLURM and follow
  cruijff-kit run EXPERIMENT_DIR --only RUN --stage eval  just the eval cells of one run
  cruijff-kit status EXPERIMENT_DIR                       from any terminal, any time
"""
from __future__ import annotations

from cruijff_kit.errors import UserError
from cruijff_kit.run.executors import names as executor_names


def add_common(parser) -> None:
    parser.add_argument("experiment_dir", help="the experiment directory (holds jobs.json)")
    parser.add_argument("--executor", choices=executor_names(), default=None,
                        help="where jobs run (default: settings.executor from claude.local.md)")
    parser.add_argument("--max-parallel", type=int, default=1, metavar="N",
                        help="local: run at most N jobs at once (default 1)")
    parser.add_argument("--max-submit", type=int, default=None, metavar="N",
                        help="keep at most N of this experiment's jobs queued/running; submit more as they "
                             "finish (needs --wait, or run again later)")
    parser.add_argument("--wait", action="store_true", help="SLURM: follow the jobs until all are done")
    parser.add_argument("--poll-interval", type=float, default=None, metavar="S",
                        help="seconds between status polls (default: 0.25 local, 10 SLURM)")


def configure(parser) -> None:
    add_common(parser)
    parser.add_argument("--only", nargs="+", metavar="RUN", help="only these runs")
    parser.add_argument("--stage", choices=("train", "eval", "all"), default="all",
                        help="train: training (and other preparation) jobs; eval: eval cells; all (default)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be submitted; change nothing")


def check_limits(args) -> None:
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError(f"--max-parallel {args.max_parallel} is below 1", where="--max-parallel", hint="use 1 or more")
    if args.max_submit is not None and args.max_submit < 1:
        raise UserError(f"--max-submit {args.max_submit} is below 1", where="--max-submit",
                        hint="use 1 or more, or leave it out for no limit")
    if args.poll_interval is not None and args.poll_interval <= 0:
        raise UserError(f"--poll-interval {args.poll_interval} is not positive", where="--poll-interval",
                        hint="e.g. --poll-interval 5")


def executor_name(args) -> str:
    if args.executor:
        return args.executor
    from cruijff_kit.settings import load_settings

    return load_settings().executor


def main(args) -> int:
    from cruijff_kit.run.dry_run import dry_run
    from cruijff_kit.run.engine import Engine

    check_limits(args)
    engine = Engine(args.experiment_dir, command="run", dry_run=args.dry_run)
    name = executor_name(args)
    selected = engine.graph.select(args.only, args.stage)
    if args.dry_run:
        return dry_run(engine, name, selected, max_submit=args.max_submit)
    return engine.run(name, selected=selected, max_parallel=args.max_parallel, max_submit=args.max_submit,
                      wait=args.wait, poll_interval=args.poll_interval)


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("run")

"""`cruijff-kit <verb>`: a thin dispatcher. Each verb lives in its own module and is imported only
when it runs, so `--help` and light verbs never pay for torch, torchtune or inspect_ai.

A verb module provides `configure(parser)` and `main(args) -> int`. A UserError becomes its
one-line message(s) on stderr and exit code 2 — never a traceback for a user mistake.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module, one-line help). Order is the workflow order shown by --help.
VERBS: dict[str, tuple[str, str]] = {
    "config": ("cruijff_kit.settings", "show resolved settings from claude.local.md and where each came from"),
    "migrate": ("cruijff_kit.design.migrate", "convert upstream cruijff_kit 0.3.x files (design, setup_finetune.yaml, claude.local.md)"),
    "validate": ("cruijff_kit.design.validate", "validate an experiment_summary.yaml; print every problem, one per line"),
    "design": ("cruijff_kit.design.cli", "design helpers: expand runs, verify resources, render the summary"),
    "log": ("cruijff_kit.logbook", "append one entry to a skill log (design-experiment.log, ...)"),
    "prompts": ("cruijff_kit.design.prompts", "check that every eval cell's prompt equals what its run learned from (tokens once scaffolded)"),
    "estimate": ("cruijff_kit.design.estimate", "estimate training/eval time, disk, GPU-hours and cost"),
    "scaffold": ("cruijff_kit.scaffold.scaffold", "render every run's finetune.yaml/.slurm and eval cells"),
    "setup_finetune": ("cruijff_kit.scaffold.setup_finetune", "render finetune.yaml/.slurm from a run dir's setup_finetune.yaml"),
    "generate": ("cruijff_kit.scaffold.generate", "render a lightweight sweep from DIR/experiment.yaml"),
    "models": ("cruijff_kit.models.cli", "list known models; build the local tiny model"),
    "task": ("cruijff_kit.design.task", "write a ready inspect-ai @task file for a JSON dataset"),
    "run": ("cruijff_kit.run.cli", "run a scaffolded experiment locally or on SLURM"),
    "status": ("cruijff_kit.run.status", "show the state of every job of an experiment"),
    "cancel": ("cruijff_kit.run.cancel", "cancel an experiment's queued and running jobs"),
    "resubmit": ("cruijff_kit.run.resubmit", "rerun failed jobs and their dependents"),
    "prefs": ("cruijff_kit.workers.prefs.cli", "build preference pairs (chosen/rejected) for DPO"),
    "losses": ("cruijff_kit.workers.torchtune.losses", "print/export train and validation loss per step of a run"),
    "summarize": ("cruijff_kit.summarize.cli", "collect losses and eval scores into tables, plots and a report"),
    "view": ("cruijff_kit.workers.inspect.view", "open inspect view on an experiment's eval logs"),
    "wandb": ("cruijff_kit.summarize.wandb", "sync offline W&B runs of an experiment"),
}
ALIASES = {"setup-finetune": "setup_finetune"}


def verb_parser(verb: str) -> argparse.ArgumentParser:
    module = importlib.import_module(VERBS[verb][0])
    parser = argparse.ArgumentParser(prog=f"cruijff-kit {verb}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.configure(parser)
    parser.set_defaults(_main=module.main)
    return parser


def top_help() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: cruijff-kit <verb> [options]   (or: python -m cruijff_kit <verb>)", "",
             "Design, scaffold, run, evaluate and summarize LLM fine-tuning experiments.", "", "verbs:"]
    lines += [f"  {verb.ljust(width)}  {text}" for verb, (_, text) in VERBS.items()]
    lines += ["", "Run `cruijff-kit <verb> --help` for a verb's options. Workflow:",
              "  validate -> design summary -> scaffold -> run -> status -> summarize"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from cruijff_kit.errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(top_help())
        return 0
    if argv[0] in ("-V", "--version"):
        from cruijff_kit import __version__

        print(f"cruijff-kit {__version__}")
        return 0
    verb = ALIASES.get(argv[0], argv[0])
    if verb not in VERBS:
        from cruijff_kit.errors import closest

        hint = closest(verb, VERBS) or "run `cruijff-kit --help` for the list"
        print(f"cruijff-kit: '{argv[0]}' is not a verb; {hint}", file=sys.stderr)
        return 2
    try:
        args = verb_parser(verb).parse_args(argv[1:])
        return int(args._main(args) or 0)
    except UserError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cruijff-kit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cruijff-kit status --json | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a quota or a file-size limit: one line, not a traceback
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        print(f"{exc.filename or 'cruijff-kit'}: cannot write: {exc.strerror}; free disk space (or raise the "
              "quota) and run the command again: files already in place are complete", file=sys.stderr)
        return 1


def verb_entry(verb: str) -> None:
    """`python -m cruijff_kit.<verb>` lands here."""
    raise SystemExit(main([verb, *sys.argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main())

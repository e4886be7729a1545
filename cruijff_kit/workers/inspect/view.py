"""Open inspect-ai's log viewer on every eval log of an experiment.

    cruijff-kit view EXPERIMENT_DIR [--port N] [--host H] [--dry-run]

Eval cells keep their logs in {exp}/{run}/eval/{cell}/logs/. `inspect view` takes one --log-dir and
lists logs recursively (its default), and it only picks up inspect logs (*.eval, timestamped *.json),
so it is pointed at the experiment directory itself: every cell shows up, nothing is copied or linked.
--dry-run prints the command instead of running it.
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.jobscript import tool_executable
from cruijff_kit.experiment import layout

DEFAULT_PORT = 7575


def eval_log_dirs(exp_dir: Path) -> dict[Path, int]:
    """{cell log dir: number of .eval logs} for every eval cell of the experiment that has logs."""
    dirs: dict[Path, int] = {}
    for log in sorted(exp_dir.glob(layout.EVAL_LOG_GLOB)):
        dirs[log.parent] = dirs.get(log.parent, 0) + 1
    return dirs


def view_command(exp_dir: Path, port: int, host: str | None = None) -> list[str]:
    cmd = [tool_executable("inspect"), "view", "start", "--log-dir", str(exp_dir), "--recursive", "--port", str(port)]
    if host:
        cmd += ["--host", host]
    return cmd


def configure(parser) -> None:
    parser.add_argument("experiment_dir", metavar="EXPERIMENT_DIR", help="the experiment directory")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    parser.add_argument("--host", help="bind address (default: inspect's, localhost)")
    parser.add_argument("--dry-run", action="store_true", help="print the inspect view command, do not run it")


def main(args) -> int:
    exp_dir = Path(args.experiment_dir).expanduser().resolve()
    if not exp_dir.is_dir():
        raise UserError("no such directory", where=str(args.experiment_dir),
                        hint="pass the experiment directory (it holds experiment_summary.yaml)")
    if not 0 < args.port < 65536:
        raise UserError(f"{args.port} is not a port", path="--port", hint="use 1024..65535, e.g. 7575")
    dirs = eval_log_dirs(exp_dir)
    if not dirs:
        raise UserError("no eval logs yet (nothing in */eval/*/logs/*.eval)", where=str(exp_dir),
                        hint="run the evaluation jobs first (`cruijff-kit run`, then `cruijff-kit status`)")
    cmd = view_command(exp_dir, args.port, args.host)
    print(f"{sum(dirs.values())} eval log(s) in {len(dirs)} cell(s) under {exp_dir}")
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    print(f"serving on http://{args.host or '127.0.0.1'}:{args.port} (Ctrl-C to stop)", flush=True)
    return subprocess.call(cmd, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("view")

"""Upload an experiment's offline W&B runs.

    cruijff-kit wandb sync EXPERIMENT_DIR [--dry-run] [--include-synced] [-p PROJECT] [-e ENTITY]

Jobs log to W&B offline unless a key is configured. Their runs sit in every trained run's output dir,
`{output_dir}/logs/wandb/offline-run-*` (output_dir from the run's finetune.yaml, else jobs.json, else
the scratch layout). Each is uploaded with `wandb sync DIR`, one at a time, with no stdin (never waits
on a prompt). Runs already uploaded (wandb leaves `run-*.wandb.synced`) are skipped unless
--include-synced. Needs a W&B login (WANDB_API_KEY or `wandb login`) for the upload itself.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.jobscript import tool_executable
from cruijff_kit.experiment import layout

PATTERN = f"{layout.LOGS}/wandb/offline-run-*"


def offline_runs(exp_dir: str | Path, settings=None) -> tuple[object, list[tuple[str, Path]]]:
    """(experiment, [(run name, offline-run dir)]) for every trained run of the experiment."""
    from cruijff_kit.summarize.collect import load, read_jobs_json, run_output_dir

    exp, exp_dir, settings = load(exp_dir, settings)
    jobs = read_jobs_json(exp_dir)
    found, seen = [], set()
    for run in exp.runs:
        if not run.trains:
            continue
        out = run_output_dir(exp, exp_dir, run, jobs, settings)
        for path in sorted(out.glob(PATTERN)):
            if path.is_dir() and path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((run.name, path))
    return exp, found


def is_synced(run_dir: Path) -> bool:
    return any(run_dir.glob("*.wandb.synced"))


def sync_command(run_dir: Path, project: str = "", entity: str = "", include_synced: bool = False) -> list[str]:
    cmd = [tool_executable("wandb"), "sync"]
    if project:
        cmd += ["--project", project]
    if entity:
        cmd += ["--entity", entity]
    if include_synced:
        cmd.append("--include-synced")
    return cmd + [str(run_dir)]


def run_quietly(cmd: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """(exit code, stdout+stderr) of cmd with no stdin; on timeout its whole process group is killed
    (wandb starts a service process of its own) and the code is 124."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output or ""
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return 124, (output or "") + f"\ntimed out after {timeout:g}s"


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{sync}", required=True)
    p = sub.add_parser("sync", help="upload every offline W&B run of an experiment")
    p.add_argument("experiment_dir", metavar="EXPERIMENT_DIR", help="the experiment directory")
    p.add_argument("--dry-run", action="store_true", help="list the runs and the commands; upload nothing")
    p.add_argument("--include-synced", action="store_true", help="upload runs that were already synced again")
    p.add_argument("-p", "--project", default="", help="override the W&B project (default: as logged)")
    p.add_argument("-e", "--entity", default="", help="override the W&B entity (default: as logged)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run (default 1800)")


def main(args) -> int:
    exp, runs = offline_runs(args.experiment_dir)
    if not runs:
        raise UserError("no offline W&B runs (looked for <output_dir>/logs/wandb/offline-run-* of every "
                        "trained run)", where=str(args.experiment_dir),
                        hint="runs log to W&B only when finetune.yaml has a WandBLogger; with WANDB_API_KEY "
                             "set they were logged online and need no sync")
    todo = [(name, path) for name, path in runs if args.include_synced or not is_synced(path)]
    skipped = len(runs) - len(todo)
    print(f"{len(runs)} offline W&B run(s) of {exp.name}" + (f", {skipped} already synced" if skipped else ""))
    if not todo:
        print("nothing to sync (pass --include-synced to upload again)")
        return 0
    ok = failed = 0
    env = {**os.environ, "WANDB_SILENT": os.environ.get("WANDB_SILENT", "true")}
    env.pop("WANDB_MODE", None)  # the jobs' offline mode must not stop the upload
    for i, (name, path) in enumerate(todo, start=1):
        cmd = sync_command(path, args.project, args.entity, args.include_synced)
        if args.dry_run:
            print(f"[{i}/{len(todo)}] {name}: {shlex.join(cmd)}")
            continue
        print(f"[{i}/{len(todo)}] {name}: syncing {path.name} ...", flush=True)
        code, output = run_quietly(cmd, env, args.timeout)
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        problem = next((ln for ln in reversed(lines) if "error" in ln.lower()), "")
        if code == 0 and not problem:
            ok += 1
            print("    synced")
        else:
            failed += 1
            print(f"    FAILED (exit {code}): {problem or (lines[-1] if lines else 'no output')}")
    if args.dry_run:
        print(f"dry run: {len(todo)} run(s) would be synced")
        return 0
    print(f"{ok} synced, {failed} failed, {skipped} skipped (already synced)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("wandb")

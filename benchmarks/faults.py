"""Issue 18's faults, re-run without SLURM: one outcome line per fault.

Most faults have a test that stages them for real (real bash job scripts, real `cruijff-kit run`, real
signals); this script runs those tests by node id and reports each fault's outcome. Disk full has no test
of its own: it is staged here with a file-size limit (`ulimit -f`, so every write past it fails with EFBIG,
as a full disk fails with ENOSPC): scaffold and run must stop with a message and leave every file either
complete or absent. SLURM-only faults (scancel, time limit, never-satisfiable dependency on a real
cluster) are not run here: their tests need `scripts/slurm-local.sh`.

  python benchmarks/faults.py [--only NAME]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

# fault -> the tests that stage it (tests/FILE.py::NAME, parametrized ids included)
FAULTS = {
    "kill -9 of a training job, then resume from its last complete epoch":
        ["test_recover.py::test_training_resumes_from_complete_checkpoints",
         "test_state_recovery.py::test_lost_state_resumes_training_from_complete_checkpoints"],
    "kill -9 of the runner (a crash): detected, its jobs cleaned up, rerun continues":
        ["test_run_local.py::test_dead_runner_is_detected_and_its_jobs_cleaned_up",
         "test_run_local.py::test_sigint_leaves_consistent_state_and_rerun_continues"],
    "corrupted state.json (9 kinds) in status/run/resubmit/cancel":
        ["test_state_recovery.py::test_damaged_state_is_one_line_in_every_verb"],
    "corrupted jobs.json in every verb": ["test_state_recovery.py::test_damaged_jobs_json_is_one_line_in_every_verb"],
    "deleted or emptied state.json: rebuilt from exit codes, completed jobs not rerun":
        ["test_state_recovery.py::test_lost_state_is_rebuilt_and_run_skips_completed_jobs"],
    "state.json lost under a live runner": [
        "test_state_recovery.py::test_state_lost_under_a_live_runner_is_written_back_and_nothing_runs_twice"],
    "two `run`s at once: the second is refused": ["test_run_local.py::test_cancel_a_running_sleeper_and_status_from_another_process"],
    "crash mid-checkpoint-save keeps the previous checkpoint":
        ["test_checkpoint_atomic.py::test_a_crash_mid_save_keeps_the_previous_checkpoint"],
    "bash wrapper of a local job killed: its trainer dies too, --max-parallel holds":
        ["test_run_hygiene.py::test_killing_the_bash_wrapper_kills_its_trainer_and_max_parallel_holds"],
    "job killed by a signal: the exit-code file says 128+signal":
        ["test_hostile.py::test_exit_file_records_128_plus_signal_when_the_job_is_killed"],
    "re-scaffold after a run: the files the job ran with stay as they were":
        ["test_provenance.py::test_rescaffold_keeps_the_files_submitted_jobs_ran_with"],
}


def run_tests(name: str, nodes: list[str]) -> tuple[str, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", "--timeout", "900",
                           *[f"tests/{n}" for n in nodes]], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    return ("survived" if proc.returncode == 0 else "FAILED"), time.perf_counter() - start, last


def _limited(cmd: list[str], kb: int, env: dict) -> subprocess.CompletedProcess:
    """cmd with every file it writes capped at kb KiB (SIGXFSZ ignored, so a write past it fails with EFBIG)."""
    shell = f"trap '' XFSZ; ulimit -f {kb}; exec \"$@\""
    return subprocess.run(["bash", "-c", shell, "limited", *cmd], capture_output=True, text=True, env=env, timeout=600)


def disk_full() -> tuple[str, float, str]:
    """Scaffold and run with writes failing past a few KiB: one message, no traceback, no half-written file."""
    from conftest_scaffold import small_design, write_design

    start = time.perf_counter()
    problems = []
    with tempfile.TemporaryDirectory(prefix="ck-diskfull-") as tmp:
        root = Path(tmp)
        (root / "claude.local.md").write_text("# disk full\n")
        env = {**os.environ, "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(root / "claude.local.md"),
               "PYTHONPATH": str(REPO)}
        ck = [sys.executable, "-m", "cruijff_kit"]
        # the reference: the same design scaffolded without a limit
        ref_dir, full_dir = root / "ref", root / "full"
        for folder in (ref_dir, full_dir):
            folder.mkdir()
            write_design(folder, small_design(folder))
        subprocess.run([*ck, "scaffold", str(ref_dir / "experiment_summary.yaml")], env=env, check=True,
                       capture_output=True)
        proc = _limited([*ck, "scaffold", str(full_dir / "experiment_summary.yaml")], 4, env)
        if proc.returncode == 0:
            problems.append("scaffold under a 4 KiB file limit exited 0")
        if "Traceback" in proc.stderr:
            problems.append("scaffold printed a traceback: " + proc.stderr.strip().splitlines()[-1])
        for path in (full_dir / "exp").rglob("*"):
            if path.is_file() and path.name not in ("scaffold-experiment.log", "manifest.json"):
                twin = ref_dir / "exp" / path.relative_to(full_dir / "exp")
                if twin.is_file() and twin.read_bytes() != path.read_bytes():
                    problems.append(f"half-written file: {path.relative_to(full_dir)}")
        # a run whose state.json cannot grow: the runner stops with a message
        from run_fixtures import standard

        exp = standard(root / "run_exp", root / "marks", train_sleep=0.1, eval_sleep=0.1)  # 6 jobs: state > 1 KiB
        proc = _limited([*ck, "run", str(exp), "--executor", "local"], 1, env)
        if proc.returncode == 0:
            problems.append("run under a 1 KiB file limit exited 0: the limit was never hit")
        if "Traceback" in proc.stderr:
            problems.append("run printed a traceback: " + proc.stderr.strip().splitlines()[-1])
        state = exp / ".ck" / "state.json"
        if state.exists():
            import json

            try:
                json.loads(state.read_text())
            except ValueError:
                problems.append("state.json left half-written")
        first = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[0]
    outcome = "survived" if not problems else "FAILED"
    return outcome, time.perf_counter() - start, "; ".join(problems) or f"run under a 1 KiB limit: {first[:200]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the faults whose name contains this text")
    args = parser.parse_args()
    results = []
    for name, nodes in [*FAULTS.items(), ("disk full (writes fail past a size limit)", None)]:
        if args.only and args.only not in name:
            continue
        outcome, seconds, detail = disk_full() if nodes is None else run_tests(name, nodes)
        results.append(outcome)
        print(f"{outcome:9s} {seconds:6.0f} s  {name}: {detail}", flush=True)
    print(f"faults survived: {results.count('survived')}/{len(results)}")


if __name__ == "__main__":
    main()

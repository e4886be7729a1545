"""compute.json: what one finished job cost, next to its script (`{run}/compute.json` for training,
`{cell}/compute.json` for an eval cell). The estimator reads these to calibrate later estimates.

Fields: job, kind, run, task, epoch, executor, native_id, state, exit_code, reason, attempts, submitted,
started, ended, wall_s, queue_s, peak_rss_mb (sacct MaxRSS, or the local child's rusage), overrides
(CK_RESUME / CK_BATCH_SIZE of a rerun), and, for training, every field of the recipe's
`training_summary.json` (tokens, tokens/s, GPU peak memory, losses) merged in.
"""
from __future__ import annotations

from pathlib import Path

from cruijff_kit.files import read_json, write_json
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.run.state import seconds_between

COMPUTE_FILE = layout.COMPUTE
TRAINING_SUMMARY = layout.TRAINING_SUMMARY


def compute_path(exp_dir: str | Path, job: JobSpec) -> Path:
    return layout.compute_file(Path(exp_dir) / Path(job.script).parent)


def compute_record(job: JobSpec, js: dict, output_dir: str | Path | None = None) -> dict:
    wall = js.get("wall_s")
    if wall is None:
        wall = seconds_between(js.get("started"), js.get("ended"))
    record = {
        "job": job.id, "kind": job.kind, "run": job.run, "task": job.task or None, "epoch": job.epoch,
        "executor": js.get("executor"), "native_id": js.get("native_id"), "state": js.get("state"),
        "exit_code": js.get("exit_code"), "reason": js.get("reason") or "", "attempts": js.get("attempts"),
        "submitted": js.get("submitted"), "started": js.get("started"), "ended": js.get("ended"),
        "wall_s": wall, "queue_s": seconds_between(js.get("submitted"), js.get("started")),
        "peak_rss_mb": js.get("peak_rss_mb"), "overrides": dict(js.get("env") or {}), "log": js.get("log"),
    }
    if output_dir:
        summary = read_json(layout.training_summary(output_dir), None)
        if isinstance(summary, dict):
            record["training_summary"] = str(layout.training_summary(output_dir))
            for key, value in summary.items():
                record.setdefault(key, value)
    return record


def write_compute(exp_dir: str | Path, job: JobSpec, js: dict, output_dir: str | Path | None = None) -> Path:
    return write_json(compute_path(exp_dir, job), compute_record(job, js, output_dir))

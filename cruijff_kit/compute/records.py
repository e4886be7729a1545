"""compute.json: what one finished job cost, next to its script (`{run}/compute.json` for training,
`{cell}/compute.json` for an eval cell). The estimator reads these to calibrate later estimates.

Fields: job, kind, run, task, epoch, executor, native_id, state, exit_code, reason, attempts, submitted,
started, ended, wall_s, queue_s, peak_rss_mb (sacct MaxRSS, or the local child's rusage), overrides
(CK_RESUME / CK_BATCH_SIZE of a rerun), for training every field of the recipe's
`training_summary.json` (tokens, tokens/s, GPU peak memory, losses) merged in, and, for a job on a GPU
whose node has nvidia-smi, `gpu`: {columns, samples (at most MAX_GPU_SAMPLES rows, evenly thinned),
summary (peak_memory_mib, mean_utilization_pct, mean_power_w, peak_power_w, samples, gpus, duration_s)}
from the job's gpu_samples.csv (tools/gpu_sampler.py writes it; the format is defined there).
"""
from __future__ import annotations

from pathlib import Path

from cruijff_kit.files import read_json, write_json
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.run.state import seconds_between
from cruijff_kit.tools import gpu_sampler  # standard library only: the samples' format and summary

COMPUTE_FILE = layout.COMPUTE
MAX_GPU_SAMPLES = 2000  # rows kept in compute.json (the summary uses every sample)
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


def gpu_record(job_dir: str | Path) -> dict | None:
    """{columns, samples, summary} from a job's gpu_samples.csv; None when nothing was sampled."""
    samples = gpu_sampler.read_samples(Path(job_dir) / layout.GPU_SAMPLES)
    if not samples:
        return None
    times = sorted({s["t_s"] for s in samples})
    kept = set(times[::max(1, -(-len(samples) // MAX_GPU_SAMPLES))])  # whole sampling times, every GPU's row
    return {"columns": list(gpu_sampler.COLUMNS), "query": list(gpu_sampler.QUERY),
            "samples": [[s[c] for c in gpu_sampler.COLUMNS] for s in samples if s["t_s"] in kept],
            "summary": gpu_sampler.summary(samples)}


def gpu_summary(record: dict | None) -> dict:
    """The GPU summary of a compute record ({} when the job recorded none)."""
    gpu = (record or {}).get("gpu")
    return dict(gpu.get("summary") or {}) if isinstance(gpu, dict) else {}


def read_gpu_summary(exp_dir: str | Path, job: JobSpec) -> dict:
    """The GPU summary in a finished job's compute.json ({} when absent)."""
    record = read_json(compute_path(exp_dir, job), None)
    return gpu_summary(record if isinstance(record, dict) else None)


def write_compute(exp_dir: str | Path, job: JobSpec, js: dict, output_dir: str | Path | None = None) -> Path:
    path = compute_path(exp_dir, job)
    record = compute_record(job, js, output_dir)
    gpu = gpu_record(path.parent)
    if gpu:
        record["gpu"] = gpu
    return write_json(path, record)

"""GPU metrics of one job: nvidia-smi sampled every few seconds while the job runs.

  python -m cruijff_kit.tools.gpu_sampler [--interval S] [JOB_DIR]     (writes JOB_DIR/gpu_samples.csv; 5 s)

Started in the background by every job script that asks for a GPU (templates/job.sh.j2) and stopped by the
script's exit trap. Each sample is one CSV line per GPU the job sees: seconds since the sampler started,
the GPU's position in nvidia-smi's output, utilization %, memory used MiB, power W (empty where nvidia-smi
says [N/A]). Without nvidia-smi, or when its first call fails, nothing is written and the exit status is 0:
metrics never fail the job they describe. compute/records.py, the one owner of compute.json, reads the
file with read_samples() and stores samples + summary() there. Standard library only (runs inside jobs).
"""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cruijff_kit.experiment.layout import GPU_SAMPLES

QUERY = ("utilization.gpu", "memory.used", "power.draw")
COMMAND = ("nvidia-smi", f"--query-gpu={','.join(QUERY)}", "--format=csv,noheader,nounits")
COLUMNS = ("t_s", "gpu", "utilization_pct", "memory_used_mib", "power_w")
DEFAULT_INTERVAL_S = 5.0
INTERVAL_ENV = "CK_GPU_SAMPLE_S"  # a job's environment may change the interval (tests use a short one)
MAX_FAILURES = 3  # consecutive failed nvidia-smi calls before the sampler gives up
_STOP: list[bool] = []


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def query(timeout: float = 10.0) -> list[tuple] | None:
    """(utilization %, memory MiB, power W) per GPU from one nvidia-smi call; None when it cannot be read."""
    try:
        proc = subprocess.run(COMMAND, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [tuple(_number(v) for v in line.split(",")) for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not rows or any(len(r) != len(QUERY) for r in rows):
        return None
    return rows


def _interval(given: float | None) -> float:
    if given is not None:
        return max(0.05, given)
    try:
        return max(0.05, float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _STOP.append(True)


def sample(out: Path, interval: float) -> int:
    """Sample until TERM/INT/HUP or until the job that started us is gone; returns the samples written."""
    first = query()
    if first is None:
        return 0
    parent, start, written, failures = os.getppid(), time.monotonic(), 0, 0
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        rows = first
        while True:
            if rows is None:
                failures += 1
                if failures >= MAX_FAILURES:
                    break
            else:
                failures = 0
                t = round(time.monotonic() - start, 1)
                writer.writerows([(t, i, *("" if v is None else v for v in row)) for i, row in enumerate(rows)])
                fh.flush()
                written += 1
            deadline = time.monotonic() + interval
            while not _STOP and time.monotonic() < deadline and os.getppid() == parent:
                time.sleep(min(0.1, interval))
            if _STOP or os.getppid() != parent:
                break
            rows = query()
    return written


def read_samples(path: str | Path) -> list[dict]:
    """The rows of a gpu_samples.csv as dicts of COLUMNS (numbers, None where missing); [] when absent."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return []
    out = []
    for row in rows:
        values = {key: _number(row.get(key) or "") for key in COLUMNS}
        if values["t_s"] is not None and values["gpu"] is not None:
            values["gpu"] = int(values["gpu"])
            out.append(values)
    return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def summary(samples: list[dict]) -> dict:
    """Peak memory used on any one GPU (MiB), mean utilization (%), mean and peak power per GPU (W)."""
    def column(key):
        return [s[key] for s in samples if s.get(key) is not None]

    memory, power = column("memory_used_mib"), column("power_w")
    return {"samples": len({s["t_s"] for s in samples}), "gpus": len({s["gpu"] for s in samples}),
            "duration_s": max(column("t_s"), default=0.0),
            "peak_memory_mib": max(memory) if memory else None,
            "mean_utilization_pct": _mean(column("utilization_pct")),
            "mean_power_w": _mean(power), "peak_power_w": max(power) if power else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cruijff_kit.tools.gpu_sampler", description=__doc__.split("\n")[0])
    parser.add_argument("job_dir", nargs="?", default=".", help=f"folder of the job script: writes {GPU_SAMPLES} there")
    parser.add_argument("--interval", type=float, default=None,
                        help=f"seconds between samples (default ${INTERVAL_ENV} or {DEFAULT_INTERVAL_S:g})")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        sample(Path(args.job_dir) / GPU_SAMPLES, _interval(args.interval))
    except OSError as exc:  # an unwritable directory: say so, never fail the job
        print(f"[cruijff_kit] GPU metrics not recorded: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How a torchtune training job is rerun: resume from its last epoch, retry an OOM with half the batch.

The run engine asks this module (through cruijff_kit.workers.rerun_policy) and never knows torchtune:
    rerun_env(job, js, output_dir, exp_dir) -> env   overrides for a rerun of a failed/interrupted job
    oom_retry(job, js, exp_dir) -> OomRetry          what a retry after running out of memory changes
    notes(env) -> [str]                              how the Status table names those overrides

The job script (workers/torchtune finetune.slurm) turns the overrides into torchtune overrides:
CK_RESUME=1 -> resume_from_checkpoint=True (the output dir holds epoch_N checkpoints), CK_BATCH_SIZE=N
-> batch_size=N. Imports nothing from torchtune: the CLI side uses it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec

EPOCH_DIR = layout.EPOCH_DIR
RESUME, BATCH_SIZE = "CK_RESUME", "CK_BATCH_SIZE"
OVERRIDES = (RESUME, BATCH_SIZE)  # set only by the engine: a job never inherits them from the shell
KEPT = (BATCH_SIZE,)  # overrides a rerun keeps from the attempt before (a halved batch stays halved)


def checkpoints(output_dir: Path | None) -> list[int]:
    """Epochs of saved checkpoints in a training job's output dir (epoch_N with files in it)."""
    if output_dir is None or not output_dir.is_dir():
        return []
    epochs = []
    for entry in output_dir.iterdir():
        m = EPOCH_DIR.match(entry.name)
        if m and entry.is_dir() and any(entry.iterdir()):
            epochs.append(int(m.group(1)))
    return sorted(epochs)


def batch_size(job: JobSpec, exp_dir: Path) -> int | None:
    """The job's batch size: jobs.json meta, else `batch_size` of its finetune.yaml."""
    if isinstance(job.meta.get("batch_size"), int):
        return job.meta["batch_size"]
    config = Path(exp_dir) / (job.meta.get("config") or str(Path(job.script).parent / layout.FINETUNE_CONFIG))
    try:
        from cruijff_kit.files import yaml_load

        value = (yaml_load(config.read_text()) or {}).get("batch_size")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def rerun_env(job: JobSpec, js: dict, output_dir: Path | None, exp_dir: Path) -> dict:
    """Overrides for a rerun: keep a halved batch size; resume a training job from its last epoch."""
    env = {k: v for k, v in (js.get("env") or {}).items() if k in KEPT}
    if job.kind == "train" and checkpoints(output_dir):
        env[RESUME] = "1"
    return env


@dataclass
class OomRetry:
    """env: overrides for the retry ({} = no retry); `note` says what changes, or why there is no retry."""

    env: dict = field(default_factory=dict)
    note: str = ""
    before: str = ""  # the setting that ran out of memory, for the log


def oom_retry(job: JobSpec, js: dict, exp_dir: Path) -> OomRetry:
    """Half the batch size (at least 1); no retry below batch size 2 or when the size is unknown."""
    if job.kind != "train":
        return OomRetry()
    current = int((js.get("env") or {}).get(BATCH_SIZE) or batch_size(job, exp_dir) or 0)
    if current < 2:
        return OomRetry(note=f"ran out of memory at batch size {current or '?'}: not retried")
    half = current // 2
    return OomRetry(env={BATCH_SIZE: str(half)}, note=f"batch_size {half}", before=f"batch_size {current}")


def notes(env: dict) -> list[str]:
    """How the Status table names a rerun's overrides."""
    out = []
    if env.get(RESUME):
        out.append("resumed")
    if env.get(BATCH_SIZE):
        out.append(f"batch_size {env[BATCH_SIZE]}")
    return out

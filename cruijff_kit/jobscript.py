"""What every job script shares: SBATCH resources and the environment a job runs in.

Resources resolve in this order (later wins): model registry defaults -> claude.local.md ->
the design's `compute` blocks -> the run's `slurm_overrides` (job_overrides). A GPU count of 0 (CPU clusters, the local test SLURM) drops --gres
and any constraint. Every job script extends templates/job.sh.j2.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.settings import Settings

# What may reach a job script unquoted (#SBATCH lines, comment lines). Used with fullmatch: `$` in a
# Python pattern also matches before a trailing newline, which is exactly the injection to refuse.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SAFE_PATH = re.compile(r"[A-Za-z0-9._/+@%=:,~-]+")
SAFE_SBATCH = re.compile(r"[A-Za-z0-9._:,&|!()\[\]*+=-]*")
SBATCH_TIME = re.compile(r"(\d+-)?\d{1,3}(:\d{2}){0,2}|\d+-\d{1,2}")  # what sbatch --time takes
SBATCH_MEM = re.compile(r"\d+[KMGT]?")
SBATCH_KEYS = ("time", "mem", "account", "partition", "constraint")


def control_char(text: str) -> str:
    """'' when `text` has no control character, else its name (for a one-line error)."""
    m = CONTROL.search(text)
    if not m:
        return ""
    ch = m.group()
    return {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte"}.get(
        ch, f"the control character {ch!r}")


def unsafe_path(path) -> str:
    """Why `path` cannot reach a job script unquoted ('' when it can)."""
    text = str(path)
    bad = control_char(text)
    if bad:
        return f"contains {bad}"
    if not SAFE_PATH.fullmatch(text) or ".." in Path(text).parts:
        return "has characters job scripts cannot take safely"
    return ""


def sbatch_value_problem(key: str, value) -> str:
    """Why `value` cannot be the #SBATCH --KEY value ('' when it can)."""
    text = "" if value is None else str(value)
    bad = control_char(text)
    if bad:
        return f"contains {bad}"
    if key in ("gpus", "cpus"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (1 if key == "cpus" else 0)
        return "" if ok or text.isdigit() else "is not a whole number"
    if not text:
        return "" if key != "time" else "is empty"
    if key == "time" and not SBATCH_TIME.fullmatch(text):
        return "is not a SLURM time (HH:MM:SS, MM, D-HH:MM)"
    if key == "mem" and not SBATCH_MEM.fullmatch(text):
        return "is not a SLURM memory size (e.g. 32G)"
    if not SAFE_SBATCH.fullmatch(text):
        return "cannot go into an #SBATCH line"
    return ""


def job_environment(settings: Settings, exp_dir: Path) -> dict:
    """Environment activation and caches: everything stays under the scratch / experiment dir."""
    venv = settings.venv or (sys.prefix if sys.prefix != sys.base_prefix else "")
    cache = settings.scratch / "cache"
    return {
        "module_loads": list(settings.module_loads),
        "conda_env": settings.conda_env,
        "venv": venv,
        "exports": {
            "HF_HOME": str(cache / "hf"),
            "HF_DATASETS_CACHE": str(cache / "hf" / "datasets"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TIKTOKEN_CACHE_DIR": "",  # tiktoken caches by path; torchtune reads local files anyway
            "INSPECT_DATA_DIR": str(cache / "inspect"),
            "XDG_CACHE_HOME": str(cache / "xdg"),
            "MPLCONFIGDIR": str(cache / "matplotlib"),
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        },
        "wandb_mode_default": "offline",
    }


def resources(settings: Settings, overrides: dict, defaults: dict | None = None, *, device: str = "cuda") -> dict:
    """SBATCH resources for one job: {time, mem, cpus, gpus, account, partition, constraint}.

    A job that runs on the CPU (`device: cpu`, e.g. the tiny profile) asks for no GPU and no constraint.
    """
    res = {"time": settings.slurm_time, "mem": settings.slurm_mem or "", "cpus": settings.slurm_cpus,
           "gpus": settings.slurm_gpus, "account": settings.slurm_account,
           "partition": settings.slurm_partition, "constraint": settings.slurm_constraint}
    for key, value in (defaults or {}).items():
        if key in res and not settings.sources.get(f"slurm_{key}"):
            res[key] = value
    for key, value in (overrides or {}).items():
        res[key] = value
    if device == "cpu":
        res["gpus"] = 0
    if int(res.get("gpus") or 0) == 0:
        res["gpus"] = 0
        res["constraint"] = ""
    return res


def job_overrides(run, kind: str, eval_compute: dict | None = None) -> dict:
    """SBATCH overrides of one of a run's jobs (`kind`: train | eval). A design's `compute` blocks
    (upstream's spelling: time, gpus, mem, cpus) come first: runs[].compute sizes the run's training job
    (or its eval jobs when the run does not train), evaluation.compute every eval job; the run's
    `slurm_overrides` win over both."""
    compute = {}
    if kind == "eval":
        compute.update(eval_compute or {})
    if kind == "train" or not run.trains:
        compute.update(run.compute or {})
    out = {key: compute[key] for key in ("time", "gpus", "mem", "cpus") if compute.get(key) is not None}
    if isinstance(out.get("mem"), str) and out["mem"].upper().endswith("B"):
        out["mem"] = out["mem"][:-1]  # 32GB -> 32G, the form sbatch takes
    return {**out, **(run.slurm_overrides or {})}


def tool_executable(name: str) -> str:
    """A console script of the job dependencies (`inspect`, `wandb`, `tune`): this env's first, then PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        raise UserError(f"the `{name}` command is not installed", where=name,
                        hint="install the job dependencies: pip install -e '.[train]'")
    return found

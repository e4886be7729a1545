"""What every job script shares: SBATCH resources and the environment a job runs in.

Resources resolve in this order (later wins): model registry defaults -> claude.local.md ->
the design's `compute` blocks -> the run's `slurm_overrides` (job_overrides). A model's `min_gpu_vram_gb`
adds claude.local.md's full-GPU constraint of that size. A GPU count of 0 (CPU clusters, the local test SLURM)
drops --gres and any constraint. Every job script extends templates/job.sh.j2.
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


def vram_constraint(settings: Settings, vram_gb: float) -> tuple[str, str]:
    """(constraint, why not) for a model that needs `vram_gb` GB on each GPU: the smallest full GPU of
    claude.local.md's `GPU memory constraints` (NAME=GB) that fits, else its `Full-GPU constraint` (size not
    given: taken to fit). ("", "") when nothing is needed or nothing is configured; ("", why) when no listed
    GPU is large enough."""
    table = settings.gpu_constraints() if vram_gb and vram_gb > 0 else {}
    if not table:
        return "", ""
    fits = [(gb if gb is not None else float("inf"), name) for name, gb in table.items()
            if gb is None or gb >= vram_gb]
    if fits:
        return min(fits)[1], ""
    listed = ", ".join(f"{name} {gb:g} GB" for name, gb in table.items())
    return "", f"needs {vram_gb:g} GB of GPU memory but the largest full GPU of claude.local.md is smaller ({listed})"


def _with_vram(res: dict, settings: Settings, vram_gb: float) -> None:
    """Add the full-GPU constraint a model needs, unless the job sets its own or runs on the shared partition."""
    name, _ = vram_constraint(settings, vram_gb)
    if not name or (settings.shared_partition and res.get("partition") == settings.shared_partition):
        return
    base = str(res.get("constraint") or "")
    if not base or base in settings.gpu_constraints() or "|" in base:
        res["constraint"] = name  # a GPU-size constraint of its own (or an OR list) is replaced, not ANDed
    elif name not in base.split("&"):
        res["constraint"] = f"{base}&{name}"


def vram_problem(problems, settings: Settings, spec, res: dict, overrides: dict, at: str) -> None:
    """The validate error when a job on a GPU needs more memory than any full GPU claude.local.md lists."""
    if not int(res.get("gpus") or 0) or "constraint" in (overrides or {}):
        return
    _, why = vram_constraint(settings, spec.min_gpu_vram_gb)
    if why:
        problems.error(f"{at}.model", f"{spec.key} {why}",
                       "add a larger GPU to `GPU memory constraints` in claude.local.md, or set "
                       "slurm_overrides: {constraint: ...} on this run")


def resources(settings: Settings, overrides: dict, defaults: dict | None = None, *, device: str = "cuda",
              vram_gb: float = 0) -> dict:
    """SBATCH resources for one job: {time, mem, cpus, gpus, account, partition, constraint}.

    A job that runs on the CPU (`device: cpu`, e.g. the tiny profile) asks for no GPU and no constraint.
    A model that needs `vram_gb` GB per GPU (the registry's `min_gpu_vram_gb`) gets claude.local.md's
    full-GPU constraint for that size (vram_constraint), unless the overrides name a constraint.
    """
    res = {"time": settings.slurm_time, "mem": settings.slurm_mem or "", "cpus": settings.slurm_cpus,
           "gpus": settings.slurm_gpus, "account": settings.slurm_account,
           "partition": settings.slurm_partition, "constraint": settings.slurm_constraint}
    for key, value in (defaults or {}).items():
        if key in res and not settings.sources.get(f"slurm_{key}"):
            res[key] = value
    for key, value in (overrides or {}).items():
        res[key] = value
    if "constraint" not in (overrides or {}):
        _with_vram(res, settings, vram_gb)
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

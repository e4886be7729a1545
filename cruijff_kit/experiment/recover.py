"""Rebuild what a lost or unreadable `.ck/state.json` knew, from what the jobs left on disk.

Pure functions over the experiment directory (no executor, no lock): the run engine decides when to call
them. Evidence, strongest first:
  1. the exit-code file each job script writes when it ends (`{exp}/{script}.exitcode`): 0 -> completed,
     128+N -> killed by signal N (failed), other -> failed;
  2. `compute.json` next to the script (the engine's record of a finished job: its exit_code);
  3. for a training job, its checkpoints `output_dir/epoch_N/`: all epochs complete -> completed;
     some -> failed but resumable from the last complete epoch (`resume_from`), none -> pending.
A job with no evidence is pending. Nothing here raises for a damaged file: it is evidence we do not use.

How the engine uses it (cruijff_kit/run/recovery.py, run/state.py):
  * `state_problem(exp_dir)` before reading state.json: a one-line message (file, what, fix) for an
    unreadable file, None when it is fine or absent;
  * when state.json is absent, empty or unreadable but jobs.json lists jobs:
    `recovered = recover_jobs(exp_dir, jobs)`; merge each entry into a `new_job()` record
    (state, exit_code, reason) and mark `recovered: True`; for a training job with `resume_from` set,
    submit it with CK_RESUME=1 instead of from scratch;
  * `status` can show the same rebuilt view read-only.
"""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from cruijff_kit.experiment import layout

STATE_FILE = layout.STATE
COMPUTE_FILE = layout.COMPUTE
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")
_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")
PARTIAL = (".tmp", ".ck-tmp", ".partial")


def state_problem(exp_dir: str | Path) -> str | None:
    """One line naming state.json, what is wrong and the fix; None when it is readable or absent."""
    path = Path(exp_dir) / STATE_FILE
    if not path.exists():
        return None
    fix = (f"move it aside (mv {path} {path}.bad) and run `cruijff-kit status` to rebuild it from the "
           "jobs' exit-code files and checkpoints")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror}); {fix}"
    if not raw.strip():
        return f"{path}: is empty; {fix}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{path}: is not UTF-8 text; {fix}"
    except json.JSONDecodeError as exc:
        return f"{path}: is not valid JSON (line {exc.lineno}: {exc.msg}); {fix}"
    if not isinstance(data, dict) or not isinstance(data.get("jobs", {}), dict):
        return f"{path}: does not hold a state (expected {{\"jobs\": {{...}}}}); {fix}"
    return None


def read_exit_code(path: str | Path) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except (OSError, ValueError):
        return None
    return int(text) if re.fullmatch(r"-?\d{1,4}", text) else None


def describe_exit(code: int) -> str:
    if code > 128 and code - 128 < 65:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"killed by {name} (exit {code})"
    return f"exit {code}"


def complete_epochs(output_dir: str | Path) -> list[int]:
    """Epoch numbers whose checkpoint folder holds weights and no partial (temp) file."""
    out = Path(output_dir)
    found = []
    if not out.is_dir():
        return found
    for folder in out.glob(f"{layout.EPOCH_PREFIX}*"):
        number = layout.epoch_of(folder.name)
        if number is None or not folder.is_dir():
            continue
        names = [p.name for p in folder.iterdir()]
        if any(n.endswith(PARTIAL) for n in names):
            continue
        weights = [folder / n for n in names if n in WEIGHTS or _SHARD.fullmatch(n)]
        if weights and all(w.stat().st_size > 0 for w in weights):
            found.append(number)
    return sorted(found)


def recover_job(exp_dir: str | Path, job: dict) -> dict:
    """{state, exit_code, reason, resume_from} of one jobs.json entry, from the files it left."""
    exp_dir = Path(exp_dir)
    script = exp_dir / job["script"]
    code = read_exit_code(layout.exit_code_file(script))
    source = "exit-code file"
    if code is None:
        try:
            record = json.loads((script.parent / COMPUTE_FILE).read_text())
            code = record.get("exit_code") if isinstance(record, dict) else None
            code = code if isinstance(code, int) and not isinstance(code, bool) else None
            source = COMPUTE_FILE
        except (OSError, ValueError):
            code = None
    resume_from = None
    if job.get("kind") == "train" and job.get("output_dir"):
        epochs = int((job.get("meta") or {}).get("epochs") or 0)
        done = complete_epochs(job["output_dir"])
        all_done = epochs > 0 and all(e in done for e in range(epochs))
        if code is None and all_done:
            return {"state": "completed", "exit_code": None, "reason": "recovered: every epoch's checkpoint is "
                    "complete", "resume_from": None}
        if done and not all_done and code != 0:
            resume_from = max(done)
    if code is None:
        if resume_from is not None:
            return {"state": "failed", "exit_code": None, "reason": f"recovered: checkpoints up to epoch "
                    f"{resume_from}, then no sign of the job", "resume_from": resume_from}
        return {"state": "pending", "exit_code": None, "reason": "", "resume_from": None}
    if code == 0:
        return {"state": "completed", "exit_code": 0, "reason": f"recovered from the {source}", "resume_from": None}
    return {"state": "failed", "exit_code": code, "reason": f"recovered from the {source}: {describe_exit(code)}",
            "resume_from": resume_from}


def recover_jobs(exp_dir: str | Path, jobs: list[dict]) -> dict[str, dict]:
    """recover_job for every job of jobs.json (dicts as jobs.json holds them), by job id."""
    return {job["id"]: recover_job(exp_dir, job) for job in jobs if isinstance(job, dict) and "id" in job}

"""Eval wall time per cell vs grouped (a benchmark, not a test): `python benchmarks/grouped_eval.py`.

A 2-task x 3-epoch design on the tiny model (adapter-only checkpoints, the default) is trained once; then
the same 6 cells are evaluated through `cruijff-kit run --executor local --wait` three times, each in its
own experiment dir with the same experiment name (so the same checkpoints), with evaluation.group
  cell        6 jobs, 6 model loads
  checkpoint  3 jobs (one per epoch, both tasks), 3 loads (the default)
  run         1 job, 1 base-model load, each epoch's adapter merged in memory in turn
Each variant's training job is marked done by its exit-code file (the engine rebuilds the state from it),
so `run` only evaluates. Prints wall seconds, jobs, model loads and the ratio per-cell / grouped.
Options: --limit N samples per cell (default 20), --max-parallel N (default 1), --keep DIR (keep the dirs).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TASK = REPO / "sanity_checks" / "predictable_or_not" / "predictable_or_not_task.py"
GROUPS = ("cell", "checkpoint", "run")
LOADED = "[cruijff_kit] model loaded:"


def ck(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cruijff-kit {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def dataset(path: Path, target: str, n_val: int, seed: int) -> Path:
    rng = random.Random(seed)

    def record():
        return {"input": ",".join(str(rng.randint(1, 1000)) for _ in range(5)), "output": target}

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": [record() for _ in range(64)], "validation": [record() for _ in range(n_val)]}))
    return path


def design(root: Path, folder: str, group: str, tiny: Path, limit: int) -> Path:
    data = root / "data"
    doc = {
        "experiment": {"name": "grouped_bench", "question": "How much eval time does one model load per job save?",
                       "date": "2026-01-01", "type": "experiment", "dir": str(root / folder / "exp")},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "controls": {"epochs": 3, "batch_size": 8, "max_steps_per_epoch": 4, "lr": 0.01, "max_seq_len": 64,
                     "device": "cpu", "dtype": "fp32", "prompt": "{input}", "system_prompt": "",
                     "validation_during_training": False},
        "models": {"base": [{"name": "tiny-llama", "path": str(tiny)}]},
        "data": {"training": {"path": str(data / "const.json")}},
        "runs": [{"name": "ft", "type": "fine-tuned", "model": "tiny-llama"}],
        "evaluation": {
            "scorers": [{"name": "match", "params": {"location": "exact"}}],
            "tasks": [{"name": "const", "script": str(TASK), "function": "predictable_or_not"},
                      {"name": "other", "script": str(TASK), "function": "predictable_or_not",
                       "dataset": str(data / "other.json")}],
            "matrix": [{"run": "ft", "tasks": ["const", "other"], "epochs": [0, 1, 2]}],
            "limit": limit, "max_tokens": 4, "group": group},
    }
    path = root / folder / "experiment_summary.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--max-parallel", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work in this dir and keep it")
    args = parser.parse_args(argv)
    from cruijff_kit.models.tiny import make_tiny

    root = Path(args.keep or tempfile.mkdtemp(prefix="ck-grouped-bench-")).resolve()
    settings = root / "claude.local.md"
    root.mkdir(parents=True, exist_ok=True)
    settings.write_text("# grouped eval benchmark\n")
    env = {**os.environ, "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(settings), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    try:
        tiny = make_tiny(root / "models" / "tiny-llama")
        dataset(root / "data" / "const.json", "42", args.limit, 0)
        dataset(root / "data" / "other.json", "7", args.limit, 1)
        # train once, through the first variant's own training job script
        first = design(root, "cell", "cell", tiny, args.limit)
        ck("scaffold", str(first), env=env)
        train = root / "cell" / "exp" / "ft" / "finetune.slurm"
        started = time.monotonic()
        subprocess.run(["bash", str(train)], env={**env, "CK_JOB_ID": "train"}, check=True, capture_output=True)
        print(f"trained 3 epochs in {time.monotonic() - started:.1f}s")
        rows = {}
        for group in GROUPS:
            path = first if group == "cell" else design(root, group, group, tiny, args.limit)
            if group != "cell":
                ck("scaffold", str(path), env=env)
                shutil.copy(train.with_name(train.name + ".exitcode"), root / group / "exp" / "ft")
            exp = root / group / "exp"
            started = time.monotonic()
            ck("run", str(exp), "--executor", "local", "--wait", "--max-parallel", str(args.max_parallel), env=env)
            wall = time.monotonic() - started
            jobs = [j for j in json.loads((exp / "jobs.json").read_text())["jobs"] if j["kind"] == "eval"]
            loads = sum(p.read_text().count(LOADED) for p in exp.glob("ft/**/slurm-*.out"))
            logs = len(list(exp.glob("ft/eval/*/logs/*.eval")))
            rows[group] = (wall, len(jobs), loads, logs)
            print(f"{group:<11} {wall:7.1f}s  {len(jobs)} eval jobs, {loads} model loads, {logs} .eval logs")
        base = rows["cell"][0]
        for group in GROUPS[1:]:
            print(f"ratio per-cell / {group}: {base / rows[group][0]:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

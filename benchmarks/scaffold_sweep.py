"""Scaffold speed on a 1,000-run design (a benchmark, not a test).

Builds a sweep of 4 models x 5 LoRA ranks x 10 learning rates x 5 seeds = 1,000 fine-tuned runs, each
evaluated at 2 epochs (2,000 eval cells), in a temporary directory, then times, as a user's shell sees
it (`cruijff-kit scaffold ...` in a fresh process, median of N):
  first scaffold (everything written), re-scaffold (nothing changes), --dry-run, validate
(wall seconds, and CPU seconds: on a busy shared machine the CPU figure is the steadier one);
and, in-process, where the time of a first scaffold goes (load+validate, check, render, commit).

  python benchmarks/scaffold_sweep.py [--runs-per-model 250] [--repeat 3] [--keep]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SANITY = REPO / "sanity_checks" / "predictable_or_not"
MODELS = ["Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct", "Qwen2.5-3B-Instruct", "Llama-3.1-8B-Instruct"]


def sweep_design(folder: Path, runs_per_model: int = 250) -> Path:
    """variables x models -> runs and matrix (as `design expand` would write them)."""
    ranks, lrs, seeds = [4, 8, 16, 32, 64], [1e-5 * i for i in range(1, 11)], [1, 2, 3, 4, 5]
    runs, matrix = [], []
    for model in MODELS:
        count = 0
        for rank in ranks:
            for lr in lrs:
                for seed in seeds:
                    if count == runs_per_model:
                        break
                    count += 1
                    name = f"{model}_rank{rank}_lr{lr:g}_seed{seed}"
                    runs.append({"name": name, "type": "fine-tuned", "model": model,
                                 "parameters": {"lora_rank": rank, "lr": lr, "seed": seed}})
                    matrix.append({"run": name, "tasks": ["next_value"], "epochs": [0, 1]})
    design = {
        "experiment": {"name": "scaffold_bench", "question": "How fast does scaffold render 1,000 runs?",
                       "date": "2025-11-01", "type": "experiment", "dir": str(folder / "exp")},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "variables": {"model": MODELS, "lora_rank": ranks, "lr": lrs, "seed": seeds},
        "controls": {"prompt": "{input}", "epochs": 2, "batch_size": 4, "max_seq_len": 128,
                     "run_val_every_n_steps": 20, "save_adapter_weights_only": True},
        "models": {"base": [{"name": m, "path": f"{{models_dir}}/{m}"} for m in MODELS]},
        "data": {"training": {"path": str(SANITY / "data/green/predictable_or_not/pp.json"),
                              "splits": {"train": 900, "validation": 100}}},
        "output": {"wandb_project": "scaffold_bench"},
        "runs": runs,
        "evaluation": {"scorers": [{"name": "match", "params": {"location": "exact"}}],
                       "tasks": [{"name": "next_value", "script": str(SANITY / "predictable_or_not_task.py"),
                                  "function": "predictable_or_not", "split": "validation"}],
                       "matrix": matrix, "max_tokens": 8},
    }
    path = folder / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cli(args: list[str], env: dict, cpu: list | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one CLI call; its CPU seconds (user + system) are appended to `cpu`: on a shared
    machine the wall time includes waiting for a core, the CPU time does not."""
    start, cpu_start = time.perf_counter(), _child_cpu()
    proc = subprocess.run([str(BIN / "cruijff-kit"), *args], env=env, capture_output=True, text=True)
    if cpu is not None:
        cpu.append(_child_cpu() - cpu_start)
    return time.perf_counter() - start, proc


def breakdown(design: Path, env: dict) -> dict:
    """Where a first scaffold's time goes, in-process (fresh experiment dir)."""
    os.environ.update(env)
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.errors import ProblemList
    from cruijff_kit.render import RenderSet
    from cruijff_kit.settings import load_settings
    from cruijff_kit.workers import evaluation_worker, preparation_worker

    out = {}
    t = time.perf_counter()
    settings = load_settings()
    exp = load_experiment(design, settings=settings)
    out["load + validate"] = time.perf_counter() - t
    workers = [preparation_worker("torchtune")]
    try:
        workers.append(evaluation_worker("inspect-ai"))
    except ModuleNotFoundError:
        pass
    t = time.perf_counter()
    problems = ProblemList(str(design))
    for w in workers:
        w.check(exp, settings, problems)
    out["check"] = time.perf_counter() - t
    root = Path(tempfile.mkdtemp(prefix="ck-bench-breakdown-"))
    files = RenderSet(root)
    t = time.perf_counter()
    for w in workers:
        w.render(exp, settings, files)
    out["render"] = time.perf_counter() - t
    t = time.perf_counter()
    files.commit()
    out[f"commit ({len(files.files)} files)"] = time.perf_counter() - t
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-per-model", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ck-bench-scaffold-"))
    settings = folder / "claude.local.md"
    settings.write_text("# benchmark settings\n")
    env = {**os.environ, "CK_SCRATCH": str(folder / "scratch"), "CK_SETTINGS": str(settings),
           "HF_HUB_OFFLINE": "1"}
    design = sweep_design(folder, args.runs_per_model)
    n_runs = len(yaml.safe_load(design.read_text())["runs"])
    print(f"design: {n_runs} runs x 2 eval epochs -> {design}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    results: dict[str, list[float]] = {"first scaffold": [], "re-scaffold (no change)": [], "--dry-run": [],
                                       "validate": []}
    cpu: dict[str, list[float]] = {label: [] for label in results}
    files = 0
    try:
        for _ in range(args.repeat):
            shutil.rmtree(folder / "exp", ignore_errors=True)
            seconds, proc = timed_cli(["scaffold", str(design), "--no-log"], env, cpu["first scaffold"])
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                return 1
            results["first scaffold"].append(seconds)
            files = sum(1 for p in (folder / "exp").rglob("*") if p.is_file())
            seconds, proc = timed_cli(["scaffold", str(design), "--no-log"], env, cpu["re-scaffold (no change)"])
            assert " 0 written" in proc.stdout, proc.stdout
            results["re-scaffold (no change)"].append(seconds)
            seconds, proc = timed_cli(["scaffold", str(design), "--dry-run"], env, cpu["--dry-run"])
            results["--dry-run"].append(seconds)
            seconds, proc = timed_cli(["validate", str(design)], env, cpu["validate"])
            results["validate"].append(seconds)
        print(f"files in the experiment dir: {files}")
        for label, values in results.items():
            print(f"  {label:<26} median {statistics.median(values):6.2f} s   "
                  f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)});  "
                  f"CPU median {statistics.median(cpu[label]):.2f} s")
        print(f"in-process breakdown of a first scaffold (load average {os.getloadavg()[0]:.1f}):")
        for label, seconds in breakdown(design, env).items():
            print(f"  {label:<26} {seconds:6.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

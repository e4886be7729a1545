"""CLI start-up and validation speed (a benchmark, not a test).

Times, as a user's shell sees them (fresh processes, median of N):
  cruijff-kit --help, cruijff-kit validate on a 1,000-run design, and `tune --help` for scale.
Also reports whether torch / torchtune / inspect_ai were imported by `validate`.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def thousand_run_design(folder: Path) -> Path:
    design = yaml.safe_load((REPO / "sanity_checks/predictable_or_not/experiment_summary.yaml").read_text())
    design.pop("profiles")
    design["variables"] = {"lora_rank": [4, 8, 16, 32, 64], "lr": [1e-5 * i for i in range(1, 11)],
                           "batch_size": [1, 2, 4, 8], "seed": [1, 2, 3, 4, 5]}
    runs, matrix = [], []
    for rank in design["variables"]["lora_rank"]:
        for lr in design["variables"]["lr"]:
            for bs in design["variables"]["batch_size"]:
                for seed in design["variables"]["seed"]:
                    name = f"Llama-3.2-1B-Instruct_rank{rank}_lr{lr:g}_bs{bs}_seed{seed}"
                    runs.append({"name": name, "type": "fine-tuned", "model": "Llama-3.2-1B-Instruct",
                                 "parameters": {"dataset_label": "pp", "lora_rank": rank, "lr": lr,
                                                "batch_size": bs, "seed": seed}})
                    matrix.append({"run": name, "tasks": ["next_value"], "epochs": [4, 9]})
    design["runs"], design["evaluation"]["matrix"] = runs, matrix
    path = folder / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def timed(cmd: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        design = thousand_run_design(Path(tmp))
        ck = str(BIN / "cruijff-kit")
        rows = [("cruijff-kit --help", timed([ck, "--help"], 7)),
                ("cruijff-kit validate (1,000 runs, 2,000 cells)", timed([ck, "validate", str(design)], 5)),
                ("tune --help", timed([str(BIN / "tune"), "--help"], 3))]
        probe = subprocess.run([sys.executable, "-c",
                                "import sys; from cruijff_kit.cli import main; main(['validate', sys.argv[1]]);"
                                "print(sorted(m for m in ('torch','torchtune','inspect_ai','transformers') "
                                "if m in sys.modules))", str(design)], capture_output=True, text=True)
    for name, seconds in rows:
        print(f"{name:<48} {seconds * 1000:8.0f} ms")
    print(f"heavy modules imported by validate: {probe.stdout.strip().splitlines()[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

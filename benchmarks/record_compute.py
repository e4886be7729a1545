"""Record real compute records (compute.json) from real tiny-model training runs into a test fixture.

Two experiments on the locally built tiny model, trained on CPU by the real local executor
(`cruijff-kit run --executor local --stage train`), differing in dataset size (small: 24 examples,
large: 72), epochs (1 or 2) and batch size (4 or 8). What lands in the fixture, per experiment:

  tests/fixtures/compute_records/ck-experiments/{exp}/experiment_summary.yaml   the design (relative data path)
  tests/fixtures/compute_records/ck-experiments/{exp}/data/numbers.json        its data
  tests/fixtures/compute_records/ck-experiments/{exp}/{run}/compute.json        written by `run`, as it ran

tests/test_estimate_records.py checks the estimator against these records. Re-record them (a few minutes
on two cores; the wall times depend on the machine and its load) with:

  python benchmarks/record_compute.py [--out tests/fixtures/compute_records]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "compute_records"
# experiment -> (train examples, {run: (epochs, batch size)})
EXPERIMENTS = {
    "records_small": (24, {"e1_b4": (1, 4), "e2_b4": (2, 4), "e1_b8": (1, 8)}),
    "records_large": (72, {"e1_b4": (1, 4), "e2_b8": (2, 8)}),
}


def numbers(n_train: int, n_val: int = 16) -> dict:
    """Five consecutive integers -> the next one (the sanity check's task, smaller)."""
    def rows(start, n):
        return [{"input": ",".join(str(start + i + k) for k in range(5)), "output": str(start + i + 5)}
                for i in range(n)]
    return {"train": rows(1, n_train), "validation": rows(5000, n_val)}


def design(name: str, runs: dict) -> dict:
    return {
        "experiment": {"name": name, "question": "How long does the tiny model take to train?",
                       "date": "2026-12-01", "type": "experiment"},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "controls": {"prompt": "{input}", "system_prompt": "", "epochs": 1, "batch_size": 4, "max_seq_len": 64,
                     "lr": 0.01, "device": "cpu", "dtype": "fp32", "run_val_every_n_steps": 0, "seed": 1},
        "models": {"base": [{"name": "tiny-llama", "path": "{models_dir}/tiny-llama"}]},
        "data": {"training": {"path": "data/numbers.json"}},
        "runs": [{"name": run, "type": "fine-tuned", "model": "tiny-llama",
                  "parameters": {"epochs": epochs, "batch_size": batch}} for run, (epochs, batch) in runs.items()],
    }


def ck(*args, env) -> None:
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit", *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"cruijff-kit {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def record(out: Path, work: Path) -> list[Path]:
    scratch = work / "scratch"
    scratch.mkdir(parents=True)
    settings = work / "claude.local.md"
    settings.write_text("# compute records\n")
    env = {**os.environ, "CK_SCRATCH": str(scratch), "CK_SETTINGS": str(settings), "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "offline", "PYTHONPATH": str(REPO),
           # one thread: on a shared 2-core box torch's default (a thread per core) mostly waits for the others
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    ck("models", "make-tiny", scratch / "models" / "tiny-llama", env=env)
    written = []
    for name, (n_train, runs) in EXPERIMENTS.items():
        src = work / "designs" / name
        (src / "data").mkdir(parents=True)
        (src / "data" / "numbers.json").write_text(json.dumps(numbers(n_train)))
        text = yaml.safe_dump(design(name, runs), sort_keys=False)
        (src / "experiment_summary.yaml").write_text(text)
        ck("scaffold", src / "experiment_summary.yaml", env=env)
        exp_dir = scratch / "ck-experiments" / name
        ck("run", exp_dir, "--executor", "local", "--stage", "train", env=env)
        target = out / "ck-experiments" / name
        shutil.rmtree(target, ignore_errors=True)
        (target / "data").mkdir(parents=True)
        shutil.copy(src / "data" / "numbers.json", target / "data" / "numbers.json")
        (target / "experiment_summary.yaml").write_text(
            "# written by benchmarks/record_compute.py; the compute.json files are real records of this design\n"
            + text)
        for run in runs:
            record_ = json.loads((exp_dir / run / "compute.json").read_text())
            assert record_["exit_code"] == 0 and record_["tokens"] > 0, record_
            (target / run).mkdir()
            written.append(target / run / "compute.json")
            written[-1].write_text(json.dumps(record_, indent=1) + "\n")
            print(f"{name}/{run}: wall {record_['wall_s']:.1f} s, {record_['tokens']} tokens at "
                  f"{record_['tokens_per_s']:.0f}/s, peak {record_['peak_memory_gb']:.2f} GB", flush=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the temporary scratch dir")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ck-records-"))
    try:
        written = record(args.out.resolve(), work)
        print(f"{len(written)} records under {args.out}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

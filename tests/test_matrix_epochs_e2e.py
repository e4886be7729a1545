"""`epochs: [best, last]` for real on CPU: the tiny model trains 2 epochs with validation through scaffold's
job scripts and `cruijff-kit run --executor local`; each eval cell picks its epoch when it runs, and the
epochs recorded are the epoch with the lowest recorded validation loss and the last epoch; the eval logs
name those checkpoints, and `summarize` shows `best (N)` / `last (1)`."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest_eval import design, write_dataset

pytestmark = pytest.mark.slow

CONTROLS = {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 4, "lr": 0.01, "max_seq_len": 64,
            "validation_during_training": True, "log_every_n_steps": 2}
LIMIT = 4


def _ck(*args, env):
    return subprocess.run([sys.executable, "-m", "cruijff_kit", *args], env=env, capture_output=True, text=True,
                          timeout=1500)


def test_best_and_last_cells_resolve_their_epochs_when_they_run(tmp_path):
    from inspect_ai.log import read_eval_log

    from cruijff_kit.models.tiny import make_tiny

    tiny = make_tiny(tmp_path / "models" / "tiny-llama")
    settings = tmp_path / "claude.local.md"
    settings.write_text("# e2e settings\n")
    env = {**os.environ, "CK_SCRATCH": str(tmp_path / "scratch"), "CK_SETTINGS": str(settings),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    data = write_dataset(tmp_path / "data" / "const.json", n_train=32, n_val=8, target="42")
    path = design(tmp_path, data=data, controls=CONTROLS, evaluation={"limit": LIMIT, "max_tokens": 4},
                  models=[{"name": "tiny-llama", "path": str(tiny)}],
                  runs=[{"name": "const", "type": "fine-tuned", "model": "tiny-llama"}],
                  matrix=[{"run": "const", "tasks": ["const"], "epochs": ["best", "last"]}])
    res = _ck("scaffold", str(path), env=env)
    assert res.returncode == 0, res.stderr
    exp_dir = tmp_path / "exp"
    started = time.perf_counter()
    res = _ck("run", str(exp_dir), "--executor", "local", "--wait", env=env)
    print(f"\n[epochs e2e] train + 2 eval cells: {time.perf_counter() - started:.1f}s\n{res.stdout}")
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = json.loads((exp_dir / "jobs.json").read_text())["jobs"]
    assert sorted(j["id"] for j in jobs) == ["const.eval.const_epoch_best", "const.eval.const_epoch_last",
                                             "const.train"]
    for job in jobs:
        assert (exp_dir / (job["script"] + ".exitcode")).read_text().strip() == "0", job["id"]

    out = tmp_path / "scratch" / "ck-outputs" / "evx" / "ck-out-const"
    recorded = json.loads((out / "training_summary.json").read_text())["epochs"]
    losses = {e["epoch"]: e["val_loss"] for e in recorded}
    assert sorted(losses) == [0, 1] and all(isinstance(v, float) for v in losses.values()), recorded
    lowest = min(losses, key=losses.get)
    print(f"[epochs e2e] epoch-end val losses {losses}: best = epoch {lowest}")
    for which, expected in (("best", lowest), ("last", 1)):
        cell = exp_dir / "const" / "eval" / f"const_epoch_{which}"
        record = json.loads((cell / "resolved_epoch.json").read_text())
        assert record["epoch"] == which and record["resolved_epoch"] == expected, record
        assert record["checkpoint"] == str(out / f"epoch_{expected}")
        assert record["val_loss"] == pytest.approx(losses[expected])
        [log_path] = sorted((cell / "logs").glob("*.eval"))
        log = read_eval_log(str(log_path), header_only=True)
        assert log.status == "success"
        assert log.eval.metadata["epoch"] == which and log.eval.metadata["resolved_epoch"] == expected
        # adapter-only epochs: the adapter of the picked epoch is applied to the base model
        assert log.eval.model_args.get("adapter_path") == str(out / f"epoch_{expected}")
        provenance = json.loads((cell / "provenance.json").read_text())
        assert provenance["models"]["model"]["path"] == str(out / f"epoch_{expected}")

    res = _ck("summarize", str(exp_dir), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(exp_dir / "analysis" / "summary.csv", newline="") as fh:
        rows = {r["epoch"]: r for r in csv.DictReader(fh)}
    assert rows["best"]["resolved_epoch"] == str(lowest) and rows["last"]["resolved_epoch"] == "1"
    assert rows["best"]["status"] == rows["last"]["status"] == "success"
    report = (exp_dir / "analysis" / "summary.md").read_text()
    assert f"| const | best ({lowest}) |" in report and "| const | last (1) |" in report, report
    res = _ck("status", str(exp_dir), env=env)
    assert f"best = epoch {lowest}" in res.stdout and "last = epoch 1" in res.stdout

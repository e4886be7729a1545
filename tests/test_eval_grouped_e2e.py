"""Grouped eval jobs on the real tiny model, no mocks: a 2-task x 2-epoch design with adapter-only checkpoints,
trained once and evaluated two ways that must agree sample for sample:

  A  evaluation.group: run, through `cruijff-kit run` (local executor): one job, one base-model load, each
     epoch's adapter merged in memory in turn. One task's data file is taken away at first, so its two cells
     fail while the other two finish; `status` shows that per cell; once the file exists, `resubmit --failed`
     evaluates only the two failed cells (the finished ones are not evaluated again).
  B  evaluation.group: cell, the same experiment name (so the same checkpoints), each cell's own job script.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from conftest_eval import SANITY_TASK, design, write_dataset

pytestmark = pytest.mark.slow

LIMIT = 8
CONTROLS = {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 6, "lr": 0.01, "max_seq_len": 64,
            "validation_during_training": False, "log_every_n_steps": 4}  # adapter-only checkpoints (default)
CELLS = ["const_epoch0", "const_epoch1", "other_epoch0", "other_epoch1"]
LOADED = "[cruijff_kit] model loaded:"


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    from cruijff_kit.models.tiny import make_tiny

    root = tmp_path_factory.mktemp("grouped_e2e")
    tiny = make_tiny(root / "models" / "tiny-llama")
    settings = root / "claude.local.md"
    settings.write_text("# grouped e2e settings\n")
    env = {**os.environ, "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(settings),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    data = write_dataset(root / "data" / "const.json", n_train=64, n_val=LIMIT, target="42")
    other = write_dataset(root / "data" / "other.json", n_train=4, n_val=LIMIT, target="7", seed=3)

    def make(name: str, group: str) -> Path:
        return design(root / name, data=data, controls=CONTROLS, name="evx",
                      evaluation={"limit": LIMIT, "max_tokens": 4, "group": group},
                      models=[{"name": "tiny-llama", "path": str(tiny)}],
                      runs=[{"name": "ft", "type": "fine-tuned", "model": "tiny-llama"}],
                      tasks=[{"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not"},
                             {"name": "other", "script": str(SANITY_TASK), "function": "predictable_or_not",
                              "dataset": str(other), "split": "validation"}],
                      matrix=[{"run": "ft", "tasks": ["const", "other"], "epochs": [0, 1]}])

    out = {"root": root, "env": env, "tiny": tiny}
    # A: grouped, through the engine
    design_a = make("a", "run")
    assert run_cli("scaffold", str(design_a), env=env).returncode == 0
    exp_a = root / "a" / "exp"
    other.rename(other.with_suffix(".away"))  # gone while A runs first: its two cells fail
    first = run_cli("run", str(exp_a), "--executor", "local", "--wait", env=env, timeout=1800)
    out["first_run"] = first
    out["status_failed"] = json.loads(run_cli("status", str(exp_a), "--json", env=env).stdout)
    other.with_suffix(".away").rename(other)
    out["resubmit"] = run_cli("resubmit", str(exp_a), "--failed", "--wait", env=env, timeout=1800)
    out["status_done"] = json.loads(run_cli("status", str(exp_a), "--json", env=env).stdout)
    out["status_text"] = run_cli("status", str(exp_a), env=env).stdout
    # B: per cell, each cell's own script, on the same checkpoints
    design_b = make("b", "cell")
    assert run_cli("scaffold", str(design_b), env=env).returncode == 0
    exp_b = root / "b" / "exp"
    out["cell_stdout"] = {}
    for cell in CELLS:
        proc = subprocess.run(["bash", str(exp_b / "ft" / "eval" / cell / "inspect.slurm")],
                              env={**env, "CK_JOB_ID": cell}, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out["cell_stdout"][cell] = proc.stdout
    out.update(exp_a=exp_a, exp_b=exp_b)
    return out


def samples(exp_dir: Path, cell: str) -> dict:
    """{sample id: (completion, {scorer: value})} of a cell's only .eval log."""
    from inspect_ai.log import read_eval_log

    logs = sorted((exp_dir / "ft" / "eval" / cell / "logs").glob("*.eval"))
    assert len(logs) == 1, logs
    log = read_eval_log(str(logs[0]))
    assert log.status == "success"
    return {s.id: (s.output.completion, {k: v.value for k, v in s.scores.items()}) for s in log.samples}


def job(status: dict) -> dict:
    [grouped_job] = [j for j in status["jobs"] if j["kind"] == "eval"]
    return grouped_job


def test_one_failed_task_is_reported_per_cell(grouped):
    assert grouped["first_run"].returncode != 0
    first = job(grouped["status_failed"])
    assert first["id"] == "ft.evals.all" and first["state"] == "failed"
    states = {c["id"]: c["state"] for c in first["cells"]}
    assert states == {"ft.eval.const_epoch0": "completed", "ft.eval.const_epoch1": "completed",
                      "ft.eval.other_epoch0": "failed", "ft.eval.other_epoch1": "failed"}
    log = Path(first["log"]).read_text()
    assert log.count(LOADED) == 1  # one base-model load for every cell of the run, the failing ones included
    assert "eval other_epoch0 FAILED" in log


def test_resubmit_evaluates_only_the_cells_without_a_finished_log(grouped):
    assert grouped["resubmit"].returncode == 0, grouped["resubmit"].stdout + grouped["resubmit"].stderr
    done = job(grouped["status_done"])
    assert done["state"] == "completed" and done["attempts"] == 2
    assert {c["state"] for c in done["cells"]} == {"completed"}
    log = Path(done["log"]).read_text()
    assert "eval const_epoch0: already has a successful log" in log and "eval const_epoch1: already" in log
    assert "eval other_epoch1: done in" in log and "eval const_epoch1: done in" not in log
    assert log.count(LOADED) == 1
    cells = json.loads((grouped["exp_a"] / "ft" / "eval_groups" / "all" / "cells.json").read_text())
    assert cells["loads"] == 1 and cells["cells"]["const_epoch0"]["skipped"] is True
    for cell in CELLS:  # one log each: nothing evaluated twice; provenance as a per-cell job writes it
        assert len(list((grouped["exp_a"] / "ft" / "eval" / cell / "logs").glob("*.eval"))) == 1
        assert (grouped["exp_a"] / "ft" / "eval" / cell / "provenance.json").is_file()
    assert "  ft.eval.other_epoch1" in grouped["status_text"]


def test_grouped_scores_equal_per_cell_scores_sample_for_sample(grouped):
    for cell in CELLS:
        a, b = samples(grouped["exp_a"], cell), samples(grouped["exp_b"], cell)
        assert len(a) == LIMIT and a == b, cell


def test_swapping_adapters_in_memory_equals_a_fresh_load(grouped):
    """Epoch 1's adapter applied after epoch 0's (the base weights put back in between) gives the weights a
    fresh load of base + epoch 1 gives, tensor for tensor; back to no adapter gives the base."""
    import torch
    from inspect_ai.model import get_model

    from cruijff_kit.tools.inspect.provider import register

    out = grouped["root"] / "scratch" / "ck-outputs" / "evx" / "ck-out-ft"
    tiny = str(grouped["tiny"])
    args = {"model_path": tiny, "tokenizer_path": tiny, "device": "cpu", "dtype": "float32"}

    def weights(model) -> dict:
        return {k: v.detach().clone() for k, v in model.api.model.state_dict().items()}

    shared = get_model(register(), memoize=False, **args)
    base = weights(shared)
    shared.api.use_adapter(out / "epoch_0")
    shared.api.use_adapter(out / "epoch_1")
    fresh = weights(get_model(register(), memoize=False, adapter_path=str(out / "epoch_1"), **args))
    swapped = weights(shared)
    assert swapped.keys() == fresh.keys() and all(torch.equal(swapped[k], fresh[k]) for k in fresh)
    assert any(not torch.equal(swapped[k], base[k]) for k in base)  # the adapter changed something
    shared.api.use_adapter(None)
    assert all(torch.equal(v, base[k]) for k, v in weights(shared).items())


def test_per_cell_jobs_load_the_model_once_each(grouped):
    for cell, stdout in grouped["cell_stdout"].items():
        assert stdout.count(LOADED) == 1, cell


def test_gates_read_the_cells_of_a_grouped_job(grouped):
    from cruijff_kit.experiment.jobs import read_jobs
    from cruijff_kit.experiment.model import Gate, Stage
    from cruijff_kit.run import gates

    jobs = [j for j in read_jobs(grouped["exp_a"]) if j.kind == "eval"]
    result = gates.evaluate(grouped["exp_a"], Stage("sft", "", Gate("other.match.accuracy", ">=", 0.0, "stop")), jobs)
    assert result.passed and result.cells == ["ft.eval.other_epoch0", "ft.eval.other_epoch1"]

"""End to end, no mocks: the tiny model trained for real (torchtune, our recipe, via scaffold's own
finetune.slurm) on a constant target, then eval cells run through their rendered inspect.slurm with
real inspect-ai: the base model cannot answer, the fine-tuned epochs can; logs are read back; an
adapter-only checkpoint is merged and scores the same; the prompt token ids inspect feeds the model
equal the ones the training dataset built (chat_completion and text_completion)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import cli_env, run_cli
from conftest_eval import design, read_cell, write_dataset

pytestmark = pytest.mark.slow

LIMIT = 10
CONTROLS = {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 12, "lr": 0.01, "max_seq_len": 64,
            "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True,
            "validation_during_training": False, "log_every_n_steps": 4,
            "save_adapter_weights_only": False}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from cruijff_kit.models.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, tiny):
    """Scaffold, train (2 epochs) and evaluate base + epoch 0 + epoch 1 through the job scripts."""
    root = tmp_path_factory.mktemp("eval_e2e")
    env = cli_env(root, "# e2e settings\n")
    data = write_dataset(root / "data" / "const.json", n_train=96, n_val=LIMIT, target="42")
    path = design(root, data=data, controls=CONTROLS, evaluation={"limit": LIMIT, "max_tokens": 4},
                  models=[{"name": "tiny-llama", "path": str(tiny)}],
                  runs=[{"name": "const", "type": "fine-tuned", "model": "tiny-llama"},
                        {"name": "base", "type": "control", "model": "tiny-llama"}],
                  matrix=[{"run": "const", "tasks": ["const"], "epochs": [0, 1]},
                          {"run": "base", "tasks": ["const"], "epochs": None}])
    scaffold = run_cli("scaffold", str(path), env=env)
    assert scaffold.returncode == 0, scaffold.stderr
    exp_dir = root / "exp"
    jobs = json.loads((exp_dir / "jobs.json").read_text())["jobs"]

    stdout = {}

    def run_job(job: dict) -> float:
        started = time.monotonic()
        proc = subprocess.run(["bash", str(exp_dir / job["script"])], env={**env, "CK_JOB_ID": job["id"]},
                              capture_output=True, text=True, timeout=900)
        wall = time.monotonic() - started
        stdout[job["id"]] = proc.stdout
        exit_file = exp_dir / (job["script"] + ".exitcode")
        assert proc.returncode == 0 and exit_file.read_text().strip() == "0", \
            f"{job['id']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return wall

    walls = {}
    for job in jobs:  # jobs.json order: train first, then its cells
        walls[job["id"]] = run_job(job) if job["kind"] == "train" else None
    for job in jobs:
        if job["kind"] == "eval":
            walls[job["id"]] = run_job(job)
    print("\n[eval e2e] wall seconds per job: " + ", ".join(f"{k}={v:.1f}" for k, v in walls.items()))
    return {"root": root, "env": env, "exp_dir": exp_dir, "data": data, "jobs": jobs, "walls": walls,
            "stdout": stdout,
            "output_dir": root / "scratch" / "ck-outputs" / "evx" / "ck-out-const"}


def cell_log(exp_dir: Path, run: str, cell: str):
    from inspect_ai.log import read_eval_log

    logs = sorted((exp_dir / run / "eval" / cell / "logs").glob("*.eval"))
    assert len(logs) == 1, logs
    return read_eval_log(str(logs[0]))


def accuracy(log, scorer: str) -> float:
    [score] = [s for s in log.results.scores if s.name == scorer]
    return score.metrics["accuracy"].value


def test_fine_tuned_learns_the_constant_and_the_base_does_not(e2e):
    exp_dir = e2e["exp_dir"]
    base = cell_log(exp_dir, "base", "const")
    epoch0 = cell_log(exp_dir, "const", "const_epoch0")
    epoch1 = cell_log(exp_dir, "const", "const_epoch1")
    print(f"\n[eval e2e] match accuracy: base={accuracy(base, 'match')}, epoch0={accuracy(epoch0, 'match')}, "
          f"epoch1={accuracy(epoch1, 'match')}")
    assert accuracy(base, "match") <= 0.1 and accuracy(base, "numeric") <= 0.1
    assert accuracy(epoch1, "match") >= 0.9 and accuracy(epoch1, "numeric") >= 0.9
    assert accuracy(epoch0, "match") >= 0.9
    assert all(s.output.completion.strip() == "42" for s in epoch1.samples if s.scores["match"].value == "C")


def test_eval_logs_read_back_with_the_cell_settings(e2e):
    exp_dir = e2e["exp_dir"]
    log = cell_log(exp_dir, "const", "const_epoch1")
    config = read_cell(exp_dir, "const", "const_epoch1")
    assert log.status == "success"
    assert log.eval.task == "const_const_epoch1"  # task name + vis_label
    assert log.eval.model == "cruijff_hf/local"  # inspect hf + our prompt format, stop tokens, adapter
    assert log.eval.model_args["model_path"] == str(e2e["output_dir"] / "epoch_1")
    assert log.eval.model_args["do_sample"] is False and log.eval.model_args["device"] == "cpu"
    assert log.eval.model_generate_config.max_tokens == 4 and log.eval.model_generate_config.seed == 42
    assert log.eval.model_generate_config.temperature is None
    assert log.eval.metadata["run"] == "const" and log.eval.metadata["epoch"] == 1
    assert log.eval.metadata["task_args"] == config["task_args"]
    assert len(log.samples) == LIMIT and log.eval.dataset.samples == LIMIT
    records = json.loads(e2e["data"].read_text())["validation"]
    assert len(records) >= LIMIT > 0  # zip below compares every sample
    for sample, record in zip(log.samples, records):
        assert [m.role for m in sample.input] == ["user"] and sample.input[0].content == record["input"]
        assert sample.target == "42" and sample.output.usage.output_tokens <= 4
    assert [s.name for s in log.results.scores] == ["match", "numeric"]
    base = cell_log(exp_dir, "base", "const")
    assert base.eval.task == "const_base" and base.eval.model_args["model_path"] == read_cell(
        exp_dir, "base", "const")["model_path"]


def test_adapter_only_checkpoint_is_merged_and_scores_the_same(e2e, tiny, tmp_path):
    import torch
    from safetensors.torch import load_file

    from cruijff_kit.tools.inspect.run_cell import merge_adapter

    epoch = e2e["output_dir"] / "epoch_1"
    adapter = tmp_path / "adapter_only_epoch_1"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(epoch / name, adapter / name)
    # the merged weights equal the merged checkpoint training wrote
    merged = merge_adapter(tiny, adapter, tmp_path / "merged")
    [full_file] = [p for p in epoch.glob("*.safetensors") if not p.name.startswith("adapter")]
    full, ours = load_file(str(full_file)), load_file(str(merged / "model.safetensors"))
    assert set(full) == set(ours)
    assert max((full[k] - ours[k]).abs().max().item() for k in full) < 1e-5
    assert not torch.equal(ours["model.layers.0.self_attn.q_proj.weight"],
                           load_file(str(tiny / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"])

    # and the runner evaluates an adapter-only cell by merging it into the base model, in memory
    config = read_cell(e2e["exp_dir"], "const", "const_epoch1")
    config.update(model_path=str(adapter), base_model_path=str(tiny), adapter_only=True,
                  log_dir=str(tmp_path / "logs"), vis_label="adapter_only", merge_dir=str(tmp_path / "merge"))
    (tmp_path / "eval_config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.tools.inspect.run_cell",
                           "eval_config.yaml"], cwd=tmp_path, env=e2e["env"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"[cruijff_kit] adapter {adapter} merged into base {tiny} in memory" in proc.stdout
    assert f"[cruijff_kit] eval const_epoch1: {LIMIT}/{LIMIT} samples" in proc.stdout  # progress lines
    assert not (tmp_path / "merge").exists()  # no merged copy on disk
    from inspect_ai.log import read_eval_log

    [log_file] = list((tmp_path / "logs").glob("*.eval"))
    merged_log = read_eval_log(str(log_file))
    full_log = cell_log(e2e["exp_dir"], "const", "const_epoch1")
    assert merged_log.eval.task == "const_adapter_only"
    assert [s.output.completion for s in merged_log.samples] == [s.output.completion for s in full_log.samples]


@pytest.mark.parametrize("kind", ["chat_completion", "text_completion"])
def test_prompt_token_ids_equal_training(kind, tiny, tmp_path):
    """What inspect's hf provider feeds the model is the training example minus its output."""
    from inspect_ai.model import get_model
    from torchtune.models.llama3 import llama3_tokenizer

    from cruijff_kit.tools.inspect.dataset import load_dataset
    from cruijff_kit.tools.inspect.provider import register
    from cruijff_kit.tools.inspect.run_cell import model_args
    from cruijff_kit.tools.torchtune.datasets import InputOutputDataset

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = write_dataset(tmp_path / "d.json", n_train=1, n_val=3, target="123")
    prompt = "Q: {input} {{next}}?\nA:"
    system = "Answer with one number." if kind == "chat_completion" else ""
    tt_tok = llama3_tokenizer(str(tiny / "original" / "tokenizer.model"), max_seq_len=256)
    train_view = InputOutputDataset(tt_tok, source=str(data), split="validation", dataset_type=kind,
                                    prompt=prompt, system_prompt=system)
    eval_view = load_dataset(data, "validation", prompt=prompt, system_prompt=system)
    margs = model_args({"dataset_type": kind, "device": "cpu", "generation": {}}, tiny, tiny)
    model = get_model(register(), memoize=False, **margs)
    api = model.api
    assert len(eval_view) == 3 and len(train_view) == 3  # the loop below must compare every example
    for i in range(len(eval_view)):
        text = api.hf_chat(eval_view[i].input, [])
        ids = api.tokenizer([text], return_tensors="pt", padding=True, **api.tokenizer_call_args)["input_ids"][0]
        ids = ids.tolist()
        tokens = train_view[i]["tokens"]
        assert tokens[:len(ids)] == ids, (text, ids, tokens)
        output = tt_tok.encode("123", add_bos=False, add_eos=False)
        # the rest is exactly the trained target: output <eot> <eos> (chat) or output <eos> (text)
        end = [tt_tok.eot_id, tt_tok.eos_id] if kind == "chat_completion" else [tt_tok.eos_id]
        assert tokens[len(ids):] == output + end
        assert ids.count(tt_tok.bos_id) == 1 and ids[0] == tt_tok.bos_id
        if kind == "text_completion":
            assert text == "<|begin_of_text|>" + prompt.format(input=eval_view[i].metadata["input"])
            assert not {128006, 128007, 128009} & set(ids)  # no header / eot tokens: no chat template
        else:
            assert "<|start_header_id|>system<|end_header_id|>\n\nAnswer with one number.<|eot_id|>" in text
            assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_eval_jobs_report_progress_scores_and_wall_time(e2e):
    walls = {k: v for k, v in e2e["walls"].items() if ".eval." in k}
    assert sorted(walls) == ["base.eval.const", "const.eval.const_epoch0", "const.eval.const_epoch1"]
    for job_id, wall in walls.items():
        out = e2e["stdout"][job_id]
        cell = job_id.split(".eval.")[1]
        assert f"[cruijff_kit] job {job_id} ({job_id}) started on " in out
        assert f"[cruijff_kit] eval {cell}: {LIMIT}/{LIMIT} samples" in out
        assert f"[cruijff_kit] eval {cell}: match: accuracy=" in out
        assert f"({job_id}) finished with exit status 0" in out
        assert 0 < wall < 600

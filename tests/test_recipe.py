"""cruijff_kit's torchtune LoRA recipe (with validation), its dataset builders and checkpoint helper.

Real torchtune on the locally built tiny model; no mocks. The training runs are subprocesses, as a job
would start them, and are marked slow.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RECIPE_MODULE = "cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val"
RECIPE_FILE = REPO / "cruijff_kit" / "tools" / "torchtune" / "custom_recipes" / "lora_finetune_single_device_val.py"
TOOLS_DIR = REPO / "cruijff_kit" / "tools"
IGNORE = -100

# 40 train examples / batch 4 = 10 steps an epoch; validation before training (step 0), every 4 steps
# and at epoch ends.
N_TRAIN, N_VAL, BATCH, EPOCHS, VAL_EVERY = 40, 12, 4, 2, 4
STEPS_PER_EPOCH = N_TRAIN // BATCH
EXPECTED_VAL_STEPS = [0, 4, 8, 10, 12, 16, 20]



# --------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    tik = tmp_path_factory.mktemp("tiktoken")
    return {**os.environ, "TIKTOKEN_CACHE_DIR": str(tik), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "WANDB_MODE": "offline", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, env) -> Path:
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", env["TIKTOKEN_CACHE_DIR"])
    from cruijff_kit.models.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)


def _record(rng: random.Random, output: str = "42") -> dict:
    return {"input": ",".join(str(rng.randint(1, 1000)) for _ in range(5)), "output": output}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Constant target: input 5 random ints, output always "42"."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "up.json"
    path.write_text(json.dumps({"train": [_record(rng) for _ in range(N_TRAIN)],
                                "validation": [_record(rng) for _ in range(N_VAL)],
                                "test": [_record(rng) for _ in range(3)]}))
    return path


def write_config(dir_: Path, tiny: Path, data: Path, epochs: int = EPOCHS) -> Path:
    """The tiny model's LoRA config with validation: before training, every VAL_EVERY steps, at epoch ends."""
    from cruijff_kit.models.tiny import lora_config

    dir_.mkdir(parents=True, exist_ok=True)
    cfg = lora_config(tiny, data, dir_ / "out", seed=42, batch_size=BATCH, epochs=epochs, batch_size_val=4,
                      run_val_every_n_steps=VAL_EVERY, run_val_at_start=True)
    cfg["dataset_val"] = {**cfg["dataset"], "split": "validation"}
    path = dir_ / "finetune.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_recipe(cfg: Path, *overrides: str, env: dict, how: str = "module", wrapper: Path | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    if how == "module":
        cmd = [sys.executable, "-m", RECIPE_MODULE]
    elif how == "tune":  # `tune run` takes a repo-relative path (torchtune turns it into a module name)
        cmd = [str(Path(sys.executable).parent / "tune"), "run",
               str(RECIPE_FILE.relative_to(REPO)), ]
    else:
        cmd = [sys.executable, str(wrapper)]
    proc = subprocess.run([*cmd, "--config", str(cfg), *overrides], cwd=REPO if how == "tune" else cfg.parent,
                          env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"recipe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


_LINE = re.compile(r"^Step (\d+) \| (.*)$")


def parse_log(path: Path) -> list[tuple[int, dict[str, float]]]:
    """DiskLogger lines: `Step <n> | key:value key:value `."""
    rows = []
    for line in path.read_text().splitlines():
        m = _LINE.match(line.strip())
        if m:
            rows.append((int(m.group(1)), {k: float(v) for k, v in
                                           (kv.split(":", 1) for kv in m.group(2).split())}))
    return rows


def series(rows, key: str) -> list[tuple[int, float]]:
    return [(step, d[key]) for step, d in rows if key in d]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny, data, env) -> dict:
    """One 2-epoch run with validation, started the `tune run` way."""
    base_hash = sha256(tiny / "model.safetensors")
    cfg = write_config(tmp_path_factory.mktemp("run"), tiny, data)
    proc = run_recipe(cfg, env=env, how="tune")
    out = cfg.parent / "out"
    return {"out": out, "cfg": cfg, "proc": proc, "base_hash": base_hash,
            "rows": parse_log(out / "logs" / "log.txt")}


# --------------------------------------------------------------------------- training run
@pytest.mark.slow
def test_train_loss_falls_and_val_loss_logged_every_n_steps(trained):
    rows = trained["rows"]
    loss = series(rows, "loss")
    assert [s for s, _ in loss] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    first, last = loss[0][1], loss[-1][1]
    assert last < 0.6 * first, f"train loss did not fall: {first} -> {last}"
    val = series(rows, "val_loss")
    assert [s for s, _ in val] == EXPECTED_VAL_STEPS  # start, every 4 steps, epoch ends; same step counter
    assert val[-1][1] < 0.6 * val[0][1], f"val loss did not fall: {val[0][1]} -> {val[-1][1]}"
    assert all({"lr", "tokens_per_second_per_gpu"} <= set(d) for _, d in rows if "loss" in d)


@pytest.mark.slow
def test_epoch_dirs_and_training_summary(trained):
    out = trained["out"]
    for epoch in range(EPOCHS):
        d = out / f"epoch_{epoch}"
        for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                     "original/tokenizer.model", "adapter_model.safetensors", "adapter_config.json",
                     "adapter_model.pt"):
            assert (d / name).is_file(), f"{d / name} missing"
        assert not (d / "model.safetensors.index.json").exists()
    assert not (out / f"epoch_{EPOCHS}").exists()
    s = json.loads((out / "training_summary.json").read_text())
    assert s["complete"] is True and s["epochs_completed"] == EPOCHS and s["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert s["samples"] == EPOCHS * N_TRAIN and s["tokens"] > s["trained_tokens"] > 0
    assert s["tokens_per_s"] > 0 and s["steps_per_s"] > 0 and 0 < s["train_s"] <= s["wall_s"]
    assert s["peak_rss_gb"] > 0 and s["peak_memory_gb"] == s["peak_rss_gb"] and s["gpu_peak_memory_gb"] is None
    val = series(trained["rows"], "val_loss")
    assert s["final_val_loss"] == pytest.approx(val[-1][1])
    assert s["best_val_loss"] == pytest.approx(min(v for _, v in val))
    assert s["first_train_loss"] > s["final_train_loss"]
    assert [e["epoch"] for e in s["epochs"]] == list(range(EPOCHS))


@pytest.mark.slow
def test_merged_checkpoint_equals_base_plus_adapter(trained, tiny):
    """Regression test for torchtune 0.6.1's CPU save bug (merge added into the live base weights)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    assert sha256(tiny / "model.safetensors") == trained["base_hash"], "the base model file changed"
    base = load_file(str(tiny / "model.safetensors"))
    ids = torch.tensor([[128000, 128006, 882, 128007, 271, 1660, 11, 1096, 11, 1168, 128009]])
    base_model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32).eval()
    for epoch in range(EPOCHS):
        d = trained["out"] / f"epoch_{epoch}"
        merged = load_file(str(d / "model.safetensors"))
        adapter = load_file(str(d / "adapter_model.safetensors"))
        acfg = json.loads((d / "adapter_config.json").read_text())
        scale = acfg["lora_alpha"] / acfg["r"]
        expected = dict(base)
        n_lora = 0
        for key, a in adapter.items():
            if ".lora_A." in key:
                target = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
                b = adapter[key.replace(".lora_A.", ".lora_B.")]
                delta = scale * b @ a
                assert delta.abs().max() > 0, f"epoch {epoch}: zero LoRA delta for {target}"
                expected[target] = base[target] + delta
                n_lora += 1
        assert n_lora == 2 * 7  # q, k, v, o + gate, up, down in 2 layers
        assert set(merged) == set(expected)
        worst = max((merged[k] - expected[k]).abs().max().item() for k in expected)
        assert worst < 1e-5, f"epoch {epoch}: merged != base + adapter (max abs diff {worst})"

        # Logits: base model with the adapter applied by hand vs the epoch dir loaded on its own.
        with_adapter = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32).eval()
        with torch.no_grad():
            params = dict(with_adapter.named_parameters())
            for key, a in adapter.items():
                if ".lora_A." in key:
                    target = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
                    params[target].add_(scale * adapter[key.replace(".lora_A.", ".lora_B.")] @ a)
            merged_model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
            got, want = merged_model(ids).logits, with_adapter(ids).logits
            assert (got - want).abs().max().item() < 1e-4
            assert (got - base_model(ids).logits).abs().max().item() > 1e-3  # training changed the model


# --------------------------------------------------------------------------- resume
_DIE_AFTER_EPOCH_0 = f"""\
import os
from {RECIPE_MODULE.rsplit('.', 1)[0]} import {RECIPE_MODULE.rsplit('.', 1)[1]} as r

_save = r.LoRAFinetuneRecipeSingleDeviceVal.save_checkpoint


def save_then_die(self, epoch):
    _save(self, epoch)
    if epoch == 0:
        os._exit(75)  # preempted right after the epoch-0 checkpoint


r.LoRAFinetuneRecipeSingleDeviceVal.save_checkpoint = save_then_die
r.recipe_main()
"""


@pytest.mark.slow
def test_resume_after_interruption_continues_at_epoch_1(tmp_path, trained, tiny, data, env):
    import torch

    cfg = write_config(tmp_path, tiny, data)
    wrapper = tmp_path / "die_after_epoch_0.py"
    wrapper.write_text(_DIE_AFTER_EPOCH_0)
    out = tmp_path / "out"
    proc = run_recipe(cfg, env=env, how="wrapper", wrapper=wrapper, check=False)
    assert proc.returncode == 75, proc.stderr[-3000:]
    assert (out / "epoch_0" / "adapter_model.pt").exists() and not (out / "epoch_1").exists()
    epoch0_mtime = (out / "epoch_0" / "adapter_model.pt").stat().st_mtime_ns

    run_recipe(cfg, "resume_from_checkpoint=true", env=env)  # the `python -m` entry point, with an override
    rows = parse_log(out / "logs" / "log.txt")  # one file: the resumed job appends to it
    assert [s for s, _ in series(rows, "loss")] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    assert [s for s, _ in series(rows, "val_loss")] == EXPECTED_VAL_STEPS
    assert (out / "epoch_0" / "adapter_model.pt").stat().st_mtime_ns == epoch0_mtime  # epoch 0 not redone
    s = json.loads((out / "training_summary.json").read_text())
    assert s["complete"] and s["jobs"] == 2 and s["resumed_from_epoch"] == 0 and s["steps"] == 20
    # Same result as the uninterrupted run: same data order, lr schedule and optimizer state.
    ref = torch.load(trained["out"] / "epoch_1" / "adapter_model.pt", weights_only=True)
    got = torch.load(out / "epoch_1" / "adapter_model.pt", weights_only=True)
    assert set(ref) == set(got)
    assert max((ref[k] - got[k]).abs().max().item() for k in ref) < 1e-5
    ref_loss = series(trained["rows"], "loss")
    assert [v for _, v in series(rows, "loss")] == pytest.approx([v for _, v in ref_loss], rel=1e-4)

    # Resuming a finished run trains nothing and changes nothing.
    mtime = (out / "epoch_1" / "adapter_model.pt").stat().st_mtime_ns
    proc = run_recipe(cfg, "resume_from_checkpoint=true", env=env)
    assert "nothing to train" in proc.stdout + proc.stderr
    assert (out / "epoch_1" / "adapter_model.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_adapter_only_and_no_validation(tmp_path, tiny, data, env):
    cfg = write_config(tmp_path, tiny, data, epochs=1)
    run_recipe(cfg, "save_adapter_weights_only=true", "max_steps_per_epoch=3", "dataset_val=null",
               "run_val_every_n_steps=0", env=env)
    d = tmp_path / "out" / "epoch_0"
    assert (d / "adapter_model.safetensors").is_file() and (d / "adapter_config.json").is_file()
    assert not list(d.glob("model*.safetensors"))
    rows = parse_log(tmp_path / "out" / "logs" / "log.txt")
    assert [s for s, _ in series(rows, "loss")] == [1, 2, 3] and not series(rows, "val_loss")
    s = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    assert s["steps"] == 3 and s["final_val_loss"] is None and s["val_losses"] == []


# --------------------------------------------------------------------------- checkpoint helper
def test_merged_state_dict_never_touches_live_weights():
    import torch
    from torchtune.modules.peft import LoRALinear

    from cruijff_kit.tools.torchtune.checkpoint import adapter_state_dict, merged_state_dict

    torch.manual_seed(0)
    layer = torch.nn.Module()
    layer.proj = LoRALinear(16, 8, rank=4, alpha=8.0)
    torch.nn.init.normal_(layer.proj.lora_b.weight)
    before = layer.proj.weight.detach().clone()
    sd = layer.state_dict()
    for _ in range(2):  # two "epoch saves" in a row on the CPU
        merged = merged_state_dict(sd, rank=4, alpha=8.0)
    assert torch.equal(layer.proj.weight, before), "merging changed the live base weight"
    expected = before + 2.0 * layer.proj.lora_b.weight @ layer.proj.lora_a.weight
    assert torch.allclose(merged["proj.weight"], expected.detach(), atol=1e-6)
    assert set(merged) == {"proj.weight"}
    adapter = adapter_state_dict(sd)
    assert set(adapter) == {"proj.lora_a.weight", "proj.lora_b.weight"}
    adapter["proj.lora_b.weight"].zero_()
    assert layer.proj.lora_b.weight.abs().sum() > 0  # a copy, not the live parameter


def test_tidy_epoch_dir(tmp_path):
    from cruijff_kit.tools.torchtune.checkpoint import tidy_epoch_dir

    one = tmp_path / "one"
    one.mkdir()
    (one / "model-00001-of-00001.safetensors").write_bytes(b"x")
    (one / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    tidy_epoch_dir(one)
    assert sorted(p.name for p in one.iterdir()) == ["model.safetensors"]
    two = tmp_path / "two"
    two.mkdir()
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (two / name).write_bytes(b"x")
    tidy_epoch_dir(two)
    assert not (two / "model.safetensors").exists()


# ground modules tools/ may import: stdlib-only (layout, tests/test_layout.py checks) or stdlib + PyYAML
# (files and errors: the one YAML reader); what they pull in is checked below, in a fresh process
TOOLS_MAY_IMPORT = ("cruijff_kit.experiment.layout", "cruijff_kit.files", "cruijff_kit.errors")


def test_training_side_never_imports_the_cli(tmp_path):
    """Code under cruijff_kit/tools runs inside jobs: it may import cruijff_kit.tools.* and the ground
    modules of TOOLS_MAY_IMPORT only, and those import nothing of the CLI side either."""
    for path in TOOLS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if isinstance(node, ast.ImportFrom) and node.module == "cruijff_kit.experiment":
                names = [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] == "cruijff_kit":
                    assert name.startswith("cruijff_kit.tools") or name in TOOLS_MAY_IMPORT, f"{path}: imports {name}"
    assert not any(p.name == "recipes" for p in (REPO / "cruijff_kit").rglob("*") if p.is_dir())
    # transitively: run_cell reading its eval config (files.read_yaml, errors) loads no CLI-side module
    config = tmp_path / "eval_config.yaml"
    config.write_text("task: t\ntask_script: t.py\ntask_function: t\nmodel_path: m\nlog_dir: l\n")
    code = ("import sys\nfrom cruijff_kit.tools.inspect import run_cell\n"
            f"run_cell.load_config({str(config)!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('cruijff_kit', 'jinja2', 'torch', 'inspect_ai'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    loaded = set(eval(out.stdout))  # noqa: S307 - our own printed list
    # importing experiment.layout runs experiment/__init__ (model, runtypes: stdlib only, test_layout checks)
    ground = {"cruijff_kit", "cruijff_kit.experiment", "cruijff_kit.experiment.model",
              "cruijff_kit.experiment.runtypes", *TOOLS_MAY_IMPORT}
    assert {m for m in loaded if not m.startswith("cruijff_kit.tools")} <= ground, loaded


# --------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def tt_tokenizer(tiny):
    from torchtune.models.llama3 import llama3_tokenizer

    return llama3_tokenizer(str(tiny / "original" / "tokenizer.model"), max_seq_len=128)


@pytest.fixture(scope="module")
def hf_tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny))


def _ds(tok, source, **kw):
    from cruijff_kit.tools.torchtune.datasets import input_output_dataset

    return input_output_dataset(tok, source=str(source), **kw)


def _chat_ids(hf, messages) -> list[int]:
    ids = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if not isinstance(ids, list) else ids)


@pytest.mark.parametrize("system_prompt", ["", "Reply with one number."])
@pytest.mark.parametrize("train_on_input", [False, True, "false", "true"])
def test_chat_completion_layout_matches_hf_chat_template(tt_tokenizer, hf_tokenizer, data, system_prompt,
                                                         train_on_input):
    ds = _ds(tt_tokenizer, data, split="validation", prompt="Numbers: {input}", system_prompt=system_prompt,
             train_on_input=train_on_input)
    rec = json.loads(data.read_text())["validation"][0]
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
        [{"role": "user", "content": f"Numbers: {rec['input']}"}]
    prompt = _chat_ids(hf_tokenizer, messages)
    item = ds[0]
    tokens, labels = item["tokens"], item["labels"]
    assert len(tokens) == len(labels)
    # What inspect-ai sends (HF template + generation prompt), then the answer, <|eot_id|>, <|end_of_text|>.
    assert tokens[: len(prompt)] == prompt
    assert prompt[-4:] == hf_tokenizer.encode("<|start_header_id|>assistant<|end_header_id|>\n\n",
                                              add_special_tokens=False)
    assert tokens[len(prompt):] == hf_tokenizer.encode("42", add_special_tokens=False) + [128009, 128001]
    trained = [i for i, lab in enumerate(labels) if lab != IGNORE]
    assert all(labels[i] == tokens[i] for i in trained)
    assert labels[0] == IGNORE and labels[-1] == IGNORE  # BOS and the final EOS never
    assert labels[-2] == 128009  # <|eot_id|> ends the answer and is trained
    user_start = tokens.index(128006, 1 if not system_prompt else tokens.index(128009) + 1)
    assistant_start = len(prompt) - 4
    if train_on_input in (True, "true"):
        assert trained == list(range(user_start, len(tokens) - 1))
    else:  # only the assistant turn (header, answer, eot) is trained
        assert trained == list(range(assistant_start, len(tokens) - 1))


@pytest.mark.parametrize("train_on_input", [False, True])
def test_text_completion_layout(tt_tokenizer, hf_tokenizer, data, train_on_input):
    ds = _ds(tt_tokenizer, data, split="train", dataset_type="text_completion",
             prompt="Numbers: {input}\nNext:", train_on_input=str(train_on_input).lower())
    rec = json.loads(data.read_text())["train"][0]
    item = ds[0]
    tokens, labels = item["tokens"], item["labels"]
    prompt = [128000] + hf_tokenizer.encode(f"Numbers: {rec['input']}\nNext:", add_special_tokens=False)
    answer = hf_tokenizer.encode("42", add_special_tokens=False)
    assert tokens == prompt + answer + [128001]
    assert not set(tokens) & {128006, 128007, 128009}  # no chat headers / eot
    assert labels[0] == IGNORE
    if train_on_input:
        assert labels[1:] == tokens[1:]
    else:
        assert labels == [IGNORE] * len(prompt) + answer + [128001]


def test_split_lengths_and_packing(tt_tokenizer, data):
    from torchtune.datasets import PackedDataset

    assert len(_ds(tt_tokenizer, data, split="train")) == N_TRAIN
    assert len(_ds(tt_tokenizer, data, split="validation")) == N_VAL
    assert len(_ds(tt_tokenizer, data, split="test")) == 3
    packed = _ds(tt_tokenizer, data, split="train", packed="true")
    assert isinstance(packed, PackedDataset) and 0 < len(packed) < N_TRAIN
    assert len(packed[0]["tokens"]) == tt_tokenizer.max_seq_len


@pytest.mark.parametrize("content, split, match", [
    ({"train": [{"input": "a", "output": "b"}]}, "validation", r"no 'validation' split \(top-level keys: 'train'\)"),
    ({"train": [{"input": "a"}]}, "train", r"train\[0\] lacks 'output'"),
    ({"train": [{"input": "a", "output": "b"}, {"output": "b"}]}, "train", r"train\[1\] lacks 'input'"),
    ({"train": [["a", "b"]]}, "train", r"train\[0\] must be an object"),
    ({"train": [{"input": None, "output": "b"}]}, "train", r"train\[0\]\.input must be a string"),
    ({"train": {"input": "a"}}, "train", r"'train' must be a list"),
    ({"train": []}, "train", r"'train' split is empty"),
    ([{"input": "a", "output": "b"}], "train", r"expected a JSON object"),
])
def test_bad_files_raise_clear_errors(tmp_path, tt_tokenizer, content, split, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as err:
        _ds(tt_tokenizer, path, split=split)
    assert str(path) in str(err.value)


def test_other_errors(tmp_path, tt_tokenizer, data):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        _ds(tt_tokenizer, tmp_path / "missing.json")
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        _ds(tt_tokenizer, bad)
    with pytest.raises(ValueError, match="dataset_type"):
        _ds(tt_tokenizer, data, dataset_type="instruct")
    with pytest.raises(ValueError, match="train_on_input must be a boolean"):
        _ds(tt_tokenizer, data, train_on_input="maybe")
    with pytest.raises(ValueError, match="split must be one of"):
        _ds(tt_tokenizer, data, split="val")
    with pytest.raises(ValueError, match=r"literal braces"):
        _ds(tt_tokenizer, data, prompt='{"x": {input}}')
    assert _ds(tt_tokenizer, data, prompt='{{"x": {input}}}')[0]["tokens"]

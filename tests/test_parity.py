"""What a model sees at evaluation is exactly what it learned from, on every tiny family (issue 14).

No mocks: tiny models of each family (their templates behave like the real Llama-3.x / Qwen2.5 ones:
dated system turn, default system prompt, <|im_end|> vs <|endoftext|>), scaffolded experiments checked by
`cruijff-kit prompts`, real torchtune training, real inspect-ai evaluation through run_cell.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from conftest_eval import SANITY_TASK, design, write_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("torchtune")

from cruijff_kit.models.tiny_families import FAMILIES, HAZARD_FAMILIES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPE = "cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val"
MAX_TOKENS = 12
pytestmark = pytest.mark.slow


def kind(family: str) -> str:
    return "chat_completion" if FAMILIES[family].instruct else "text_completion"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("parity_env")
    settings = root / "claude.local.md"
    settings.write_text("# parity settings\n")
    return {**os.environ, "TIKTOKEN_CACHE_DIR": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "WANDB_MODE": "offline", "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(settings),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    from cruijff_kit.models.tiny import make_tiny

    root = tmp_path_factory.mktemp("parity_models")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", "")
    return {f: make_tiny(root / f, family=f) for f in ("default", *HAZARD_FAMILIES)}


def _scaffold(root: Path, family: str, model_dir: Path, env: dict, *, system_prompt: str = "",
              assistant_prefix: str = "", scaffold_checks: bool = True) -> Path:
    key = "tiny-llama" if family == "default" else f"tiny-{family}"
    controls = {"epochs": 1, "max_seq_len": 64, "system_prompt": system_prompt, "prompt": "Continue: {input}",
                **({"assistant_prefix": assistant_prefix} if assistant_prefix else {})}
    path = design(root, models=[{"name": key, "path": str(model_dir)}], controls=controls,
                  runs=[{"name": "ft", "type": "fine-tuned", "model": key},
                        {"name": "base", "type": "control", "model": key},
                        {"name": "eo", "type": "eval-only", "model": key, "checkpoint_path": str(model_dir)}],
                  matrix=[{"run": "ft", "tasks": ["const"], "epochs": [0]},
                          {"run": "base", "tasks": ["const"], "epochs": None},
                          {"run": "eo", "tasks": ["const"], "epochs": None}])
    # scaffold_checks=False: the caller runs `prompts` itself, scaffold's own run of the check would repeat it
    proc = run_cli("scaffold", str(path), env=env if scaffold_checks else {**env, "CK_SKIP_PROMPT_CHECK": "1"})
    assert proc.returncode == 0, proc.stderr
    return root / "exp"


# --------------------------------------------------------------------------- 1 + 2: prompt parity
@pytest.mark.parametrize("family,system_prompt,assistant_prefix",
                         [(f, "", "") for f in ("default", *HAZARD_FAMILIES)]
                         + [("llama3_2_instruct", "Answer with one number.", ""),
                            ("qwen2_5_instruct", "Answer with one number.", ""),
                            ("llama3_2_instruct", "Answer with one number.", "Answer:"),
                            ("qwen2_5_instruct", "", " The answer is "),
                            ("llama3_2_base", "", "Answer: ")])
def test_prompts_identical_for_every_cell(family, system_prompt, assistant_prefix, models, env, tmp_path):
    exp = _scaffold(tmp_path, family, models[family], env, system_prompt=system_prompt,
                    assistant_prefix=assistant_prefix, scaffold_checks=False)
    proc = run_cli("prompts", str(exp), "--json", env=env)
    report = json.loads(proc.stdout)
    cells = {(c["run"], c["cell"]): c for c in report["cells"]}
    assert len(cells) == 3 and not report["skipped"], report
    for name, c in cells.items():
        assert c["identical"] is True, (name, c.get("first_difference"), c.get("error"))
        assert c["end_in_loss"] and c["end_is_stop"], (name, c["end_token"], c["stop_ids"])
        assert c["eval_prompt"] == c["train_prompt"]
        decoded = "".join(c["pieces"][str(i)] for i in c["eval_prompt"])
        assert "Today Date" not in decoded and "You are Qwen" not in decoded
        if system_prompt:
            assert system_prompt in decoded
        if assistant_prefix:  # the eval prompt ends with the prefix, as training's prompt does
            expected = assistant_prefix.strip() if FAMILIES[family].instruct and "llama" in family else assistant_prefix
            assert decoded.endswith(expected), (name, decoded[-40:])
    assert proc.returncode == 0
    if family == "llama3_2_instruct" and system_prompt and not assistant_prefix:  # the text report, once
        text = run_cli("prompts", str(exp), "--cell", "const_epoch0", env=env)
        assert text.returncode == 0 and "identical: true" in text.stdout and "1/1 cells identical" in text.stdout


def test_the_model_templates_would_not_match(models):
    """The hazard is real: the tiny models' own templates differ from torchtune's format."""
    from transformers import AutoTokenizer

    for family in ("llama3_2_instruct", "llama3_1_instruct", "qwen2_5_instruct"):
        tok = AutoTokenizer.from_pretrained(models[family])
        own = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
        assert "Today Date" in own or "You are Qwen" in own


@pytest.mark.parametrize("family", ["llama3_2_instruct", "qwen2_5_instruct"])
def test_parity_check_fails_on_a_mismatched_template(family, models, tmp_path, monkeypatch):
    """Evaluating through the model's own template (as inspect's hf provider does by default) is caught."""
    from cruijff_kit.tools.inspect import prompt_format
    from cruijff_kit.tools.torchtune.prompt_tokens import cell_tokens
    from cruijff_kit.workers.inspect.prompts import compare, describe

    own = FAMILIES[family].chat_template  # what the eval renders when it uses the model's own template
    monkeypatch.setattr(prompt_format, "eval_template", lambda fam, dataset_type, assistant_prefix="": own)
    data = write_dataset(tmp_path / "d.json", n_train=4, n_val=2)
    spec = {"cell": "c", "tokenizer_dir": str(models[family]), "source": str(data), "split": "validation",
            "dataset_type": "chat_completion", "prompt": "{input}", "system_prompt": "", "torchtune_tokenizer": None}
    result = compare(cell_tokens(spec))
    assert result["identical"] is False
    diff = result["first_difference"]
    assert diff is not None and diff["eval"]["text"] in ("system", "<|start_header_id|>")
    assert "differs from training at token" in describe(result)


def test_prompts_verb_reports_mismatch_with_exit_1(models, env, tmp_path):
    """An eval cell whose prompt differs from its run's training prompt: exit 1, the first differing token."""
    exp = _scaffold(tmp_path, "qwen2_5_instruct", models["qwen2_5_instruct"], env)
    cfg_path = exp / "ft" / "eval" / "const_epoch0" / "eval_config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["task_args"]["system_prompt"] = "Be brief."
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = run_cli("prompts", str(exp), env=env)
    assert proc.returncode == 1
    assert "MISMATCH" in proc.stdout and "2/3 cells identical" in proc.stdout
    from cruijff_kit.workers.inspect.prompts import problems

    found = problems(exp)
    assert len(found) == 1 and "const_epoch0" in found[0].line() and "token 1" in found[0].line()


# --------------------------------------------------------------------------- 4 + 5: training, stop, merge
def _train(root: Path, family: str, model_dir: Path, data: Path, env: dict, **overrides) -> Path:
    from cruijff_kit.models.tiny import lora_config

    run_dir = root / family
    run_dir.mkdir()
    cfg = lora_config(model_dir, data, run_dir / "out", family=family, seed=1, batch_size=8, batch_size_val=4,
                      dataset={"dataset_type": kind(family)}, tokenizer={"max_seq_len": 64},
                      save_adapter_weights_only=False, **overrides)
    path = run_dir / "finetune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", RECIPE, "--config", str(path)], cwd=run_dir, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run_dir / "out"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, models, env) -> dict:
    """Each family trained a few steps (merged checkpoint + adapter saved): enough for non-zero deltas."""
    root = tmp_path_factory.mktemp("parity_train")
    data = write_dataset(root / "const.json", n_train=24, n_val=4, target="42")
    return {f: _train(root, f, models[f], data, env, epochs=1, max_steps_per_epoch=3) / "epoch_0"
            for f in HAZARD_FAMILIES}


@pytest.fixture(scope="module")
def qwen_base_trained(tmp_path_factory, models, env) -> dict:
    """Qwen2.5 base trained on a constant target until it answers (24 steps)."""
    root = tmp_path_factory.mktemp("parity_qwen")
    data = write_dataset(root / "const.json", n_train=96, n_val=6, target="42")
    out = _train(root, "qwen2_5_base", models["qwen2_5_base"], data, env, epochs=2, optimizer={"lr": 0.03})
    return {"data": data, "out": out}


@pytest.mark.parametrize("family", HAZARD_FAMILIES)
def test_in_memory_adapter_equals_torchtune_merged_checkpoint(family, trained, models):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from cruijff_kit.tools.inspect.adapter import apply_in_memory

    epoch = trained[family]
    merged = load_file(str(epoch / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(str(models[family]), dtype=torch.float32)
    assert apply_in_memory(model, epoch, models[family]) == 2 * 7
    params = dict(model.named_parameters())
    worst = max((params[k].detach() - v).abs().max().item() for k, v in merged.items() if k in params)
    assert worst < 1e-5, f"{family}: in-memory merge differs from torchtune's merged checkpoint by {worst}"
    assert {k for k in merged if k in params} == {k for k in merged if k != "lm_head.weight"}


def _eval(tmp: Path, model_path: Path, base: Path | None, data: Path, family: str, env: dict) -> dict:
    cfg = {"experiment": "p", "run": "r", "run_type": "fine-tuned", "task": "const", "cell": "c",
           "model_path": str(model_path), "base_model_path": str(base) if base else None, "device": "cpu",
           "dtype": "fp32", "task_script": str(SANITY_TASK), "task_function": "predictable_or_not",
           "task_args": {"data_path": str(data), "split": "validation", "prompt": "{input}", "system_prompt": ""},
           "dataset_type": kind(family), "generation": {"do_sample": False, "max_tokens": MAX_TOKENS},
           "limit": 4, "scorers": [{"name": "match", "params": {"location": "exact"}}],
           "vis_label": "x", "log_dir": str(tmp / "logs")}
    path = tmp / "eval_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.tools.inspect.run_cell", str(path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(next((tmp / "logs").glob("*.eval"))))
    return {"stdout": proc.stdout, "samples": log.samples}


def test_qwen_base_stops_at_the_trained_end_token(qwen_base_trained, models, env, tmp_path):
    """torchtune trains Qwen2.5 to end with <|im_end|> (kept in the loss despite #2792) while the base
    model's generation_config stops only at <|endoftext|>: the eval must stop at <|im_end|> before
    max_tokens. The adapter-only checkpoint is merged in memory: no merged copy is written anywhere."""
    import shutil

    from cruijff_kit.tools.inspect import prompt_format

    model = models["qwen2_5_base"]
    assert json.loads((model / "generation_config.json").read_text())["eos_token_id"] == 151643
    assert 151645 in prompt_format.stop_token_ids(model, prompt_format.family(model))
    adapter = tmp_path / "adapter_only"
    adapter.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(qwen_base_trained["out"] / "epoch_1" / name, adapter / name)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    result = _eval(tmp_path, adapter, model, qwen_base_trained["data"], "qwen2_5_base",
                   {**env, "TMPDIR": str(tmpdir)})
    assert "in memory" in result["stdout"]
    assert not any(tmpdir.iterdir()), "a merged copy was written to $TMPDIR"
    for sample in result["samples"]:
        usage = next(iter(sample.model_usage.values()))
        assert usage.output_tokens < MAX_TOKENS, (sample.output.completion, usage.output_tokens)


def test_base_epoch_best_resolved_at_eval_as_at_training(tmp_path):
    """`epoch_best` in base_model_path is the epoch pick_epoch (what the training job uses) picks."""
    from cruijff_kit.tools.inspect.run_cell import _base_dir
    from cruijff_kit.tools.torchtune.pick_epoch import pick

    out = tmp_path / "ck-out-sft"
    for e in range(3):
        (out / f"epoch_{e}").mkdir(parents=True)
    (out / "training_summary.json").write_text(json.dumps(
        {"epochs": [{"epoch": 0, "val_loss": 2.0}, {"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.9}]}))
    assert _base_dir({"base_model_path": str(out / "epoch_best")}) == out / "epoch_1" == out / f"epoch_{pick(out, 'best')}"
    assert _base_dir({"base_model_path": str(out / "epoch_2")}) == out / "epoch_2"

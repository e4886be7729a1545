"""[science] assistant_prefix: text the assistant turn starts with (e.g. "Answer:"), the same in training and at
eval. Here: the design carries it into finetune.yaml and eval_config.yaml, a task's prefix must match training
unless the task is a prompt sweep, bad values are one-line errors, the eval template ends with it, and
`migrate` moves upstream's per-task prefix into controls. Token-level parity on the tiny model families is in
tests/test_parity.py (slow)."""
from __future__ import annotations

import json

import jinja2
import pytest
import yaml
from conftest_scaffold import ck, small_design, write_design

from cruijff_kit.tools.inspect import prompt_format


def _eval_configs(exp) -> dict:
    return {p.parent.name + "@" + p.parents[2].name: yaml.safe_load(p.read_text())
            for p in exp.glob("*/eval/*/eval_config.yaml")}


def test_controls_prefix_reaches_training_and_every_eval_cell(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    design["controls"]["assistant_prefix"] = "Answer:"
    design["runs"][1]["parameters"]["assistant_prefix"] = "The next number is "
    result = ck(capsys, "scaffold", str(write_design(tmp_path, design)))
    assert result.returncode == 0, result.stderr
    exp = tmp_path / "exp"
    llama = yaml.safe_load((exp / "llama_r4" / "finetune.yaml").read_text())
    qwen = yaml.safe_load((exp / "qwen_base_r8" / "finetune.yaml").read_text())
    assert llama["dataset"]["assistant_prefix"] == "Answer:" == llama["dataset_val"]["assistant_prefix"]
    assert qwen["dataset"]["assistant_prefix"] == "The next number is "
    configs = _eval_configs(exp)
    assert len(configs) == 4
    for name, config in configs.items():
        expected = "The next number is " if name.endswith("qwen_base_r8") else "Answer:"
        assert config["assistant_prefix"] == expected, name


def test_without_a_prefix_nothing_new_is_rendered(tmp_path, scratch, capsys):
    assert ck(capsys, "scaffold", str(write_design(tmp_path, small_design(tmp_path)))).returncode == 0
    exp = tmp_path / "exp"
    assert "assistant_prefix" not in (exp / "llama_r4" / "finetune.yaml").read_text()
    assert all("assistant_prefix" not in c for c in _eval_configs(exp).values())


def test_task_prefix_must_match_training_unless_a_prompt_sweep(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    design["evaluation"]["tasks"][0]["assistant_prefix"] = "Answer:"
    result = ck(capsys, "validate", str(write_design(tmp_path, design)))
    assert result.returncode == 2
    assert ("evaluation.tasks[0].assistant_prefix: differs from the training assistant prefix of run llama_r4 "
            "(and 1 more run): 'Answer:' vs ''") in result.stderr
    design["evaluation"]["tasks"][0]["prompt_sweep"] = True
    result = ck(capsys, "validate", str(write_design(tmp_path, design)))
    assert result.returncode == 0 and "differs from the training assistant prefix" in result.stderr + result.stdout
    design["evaluation"]["tasks"][0]["prompt_sweep"] = False
    design["controls"]["assistant_prefix"] = "Answer:"
    design["runs"][1]["parameters"]["assistant_prefix"] = "Answer:"
    assert ck(capsys, "validate", str(write_design(tmp_path, design))).returncode == 0


@pytest.mark.parametrize("where,value,message", [
    ("controls", 5, "controls.assistant_prefix: 5 has the wrong type; expected string"),
    ("controls", ["A:"], "controls.assistant_prefix: ['A:'] has the wrong type; expected string"),
    ("controls", "Answer:\n", "controls.assistant_prefix: the value 'Answer:\\n' contains"),
    ("task", "A:\x1b[31m", "evaluation.tasks[0].assistant_prefix: the value 'A:\\x1b[31m' contains"),
])
def test_bad_prefix_is_one_line(tmp_path, scratch, capsys, where, value, message):
    design = small_design(tmp_path)
    (design["controls"] if where == "controls" else design["evaluation"]["tasks"][0])["assistant_prefix"] = value
    result = ck(capsys, "validate", str(write_design(tmp_path, design)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "assistant_prefix" in ln]
    assert len(lines) == 1 and message in lines[0], result.stderr


def _render(template: str, messages: list[dict]) -> str:
    return jinja2.Environment().from_string(template).render(messages=messages, add_generation_prompt=True,
                                                             bos_token="<s>")


@pytest.mark.parametrize("fam,kind,expected_end", [
    ("llama3", "chat_completion", "<|start_header_id|>assistant<|end_header_id|>\n\nAnswer: {{x}} \"q\" \\"),
    ("qwen2_5", "chat_completion", "<|im_start|>assistant\n Answer: {{x}} \"q\" \\ "),
    ("llama3", "text_completion", "Q: 1 Answer: {{x}} \"q\" \\ "),
    (None, "text_completion", "Q: 1 Answer: {{x}} \"q\" \\ "),
])
def test_eval_template_ends_with_the_prefix(fam, kind, expected_end):
    prefix = ' Answer: {{x}} "q" \\ '  # Jinja syntax, quotes and a backslash stay literal text
    messages = [{"role": "user", "content": "Q: 1"}]
    text = _render(prompt_format.eval_template(fam, kind, prefix), messages)
    assert text.endswith(expected_end), text
    assert _render(prompt_format.eval_template(fam, kind, prefix), messages).startswith(
        _render(prompt_format.eval_template(fam, kind), messages))
    assert prompt_format.eval_template(fam, kind, "") == prompt_format.eval_template(fam, kind)


def test_unknown_chat_family_with_a_prefix_is_refused():
    assert prompt_format.eval_template(None, "chat_completion") is None
    with pytest.raises(ValueError, match="assistant_prefix needs a llama3 or qwen2_5 tokenizer"):
        prompt_format.eval_template(None, "chat_completion", "Answer:")


def test_migrate_moves_upstream_task_prefixes_into_controls(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    design["evaluation"]["tasks"][0]["assistant_prefix"] = "Answer:"
    path = write_design(tmp_path, design)
    result = ck(capsys, "migrate", str(path), "--write")
    assert result.returncode == 0 and "added controls.assistant_prefix" in result.stdout
    migrated = yaml.safe_load(path.read_text())
    assert migrated["controls"]["assistant_prefix"] == "Answer:"
    assert migrated["evaluation"]["tasks"][0]["assistant_prefix"] == "Answer:"
    result = ck(capsys, "validate", str(path))
    assert result.returncode == 0, result.stderr


def test_migrate_names_tasks_with_different_prefixes(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    design["evaluation"]["tasks"].append({**design["evaluation"]["tasks"][0], "name": "t2", "assistant_prefix": "B:"})
    design["evaluation"]["tasks"][0]["assistant_prefix"] = "A:"
    path = write_design(tmp_path, design)
    result = ck(capsys, "migrate", str(path))
    assert "the tasks do not all share one prefix" in result.stdout + result.stderr
    assert "added controls.assistant_prefix" not in result.stdout


@pytest.mark.parametrize("marker,header", [("<|im_start|>", "<|im_start|>assistant\n"),
                                           ("<|start_header_id|>", "<|end_header_id|>\n\n")])
def test_run_cell_hands_the_provider_a_template_ending_with_the_prefix(tmp_path, marker, header):
    """run_cell reads assistant_prefix from eval_config.yaml into the hf provider's chat_template."""
    from cruijff_kit.tools.inspect.run_cell import CellError, model_args

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer_config.json").write_text(
        json.dumps({"added_tokens_decoder": {"7": {"content": marker}}, "chat_template": "x"}))
    config = {"dataset_type": "chat_completion", "assistant_prefix": "Answer:"}
    args = model_args(config, tok, tok)
    text = _render(args["chat_template"], [{"role": "user", "content": "1,2"}])
    assert text.endswith(header + "Answer:"), text
    (tok / "tokenizer_config.json").write_text('{"chat_template": "x"}')  # a family torchtune formats otherwise
    with pytest.raises(CellError, match="assistant_prefix needs a llama3 or qwen2_5 tokenizer"):
        model_args(config, tok, tok)

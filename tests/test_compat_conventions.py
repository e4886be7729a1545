"""Item 6 of [compat]: upstream conventions. A task function that takes `config_path` is given the cell's
eval config (which carries the prompts at the top level); the eval split defaults to `test` when the
dataset has one, and the plan (experiment_summary.md) says which split each task uses."""
from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest_scaffold import ck, small_design, write_design

from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings

UPSTREAM_STYLE_TASK = '''
import yaml
from inspect_ai import Task, task
from inspect_ai.dataset import Sample, json_dataset
from inspect_ai.scorer import match
from inspect_ai.solver import generate, system_message


@task
def numbers(data_path: str, config_path: str = "", split: str = "test") -> Task:
    """Written the way upstream task scripts are: the prompts come from the YAML file at config_path."""
    prompt, system = "{input}", ""
    if config_path:
        with open(config_path) as fh:
            settings = yaml.safe_load(fh)
        prompt, system = settings.get("prompt", "{input}"), settings.get("system_prompt", "")
    records = __import__("json").load(open(data_path))[split]
    samples = [Sample(input=prompt.format(input=r["input"]), target=r["output"]) for r in records]
    return Task(dataset=samples, solver=[system_message(system), generate()], scorer=match())
'''


def _with_test_split(path: Path) -> Path:
    doc = json.loads(path.read_text())
    doc["test"] = [{"input": "7,8,9,10,11", "output": "12"}]
    path.write_text(json.dumps(doc))
    return path


def test_config_path_task_receives_the_cell_config(tmp_path, scratch, capsys):
    from cruijff_kit.tools.inspect.run_cell import build_task, load_config

    design = small_design(tmp_path)
    _with_test_split(tmp_path / "data" / "numbers.json")
    (tmp_path / "upstream_task.py").write_text(UPSTREAM_STYLE_TASK)
    design["evaluation"]["tasks"] = [{"name": "next_value", "script": "upstream_task.py", "function": "numbers"}]
    scaffold(write_design(tmp_path, design), settings=load_settings(), quiet=True)
    path = next((tmp_path / "exp" / "llama_r4" / "eval").rglob("eval_config.yaml"))
    config = load_config(path)
    assert config["prompt"] == "Numbers: {input}\nNext:" and config["system_prompt"] == "Continue the sequence."
    capsys.readouterr()
    task, given = build_task(config)
    assert given["config_path"] == str(path.resolve())
    assert "warning" not in capsys.readouterr().out  # prompt/system_prompt are read from config_path
    assert [s.input for s in task.dataset] == ["Numbers: 7,8,9,10,11\nNext:"]  # the test split, our prompt


def test_eval_split_defaults_to_test_when_the_dataset_has_one(tmp_path, scratch):
    design = small_design(tmp_path)
    del design["evaluation"]["tasks"][0]["split"]
    path = write_design(tmp_path, design)
    scaffold(path, settings=load_settings(), quiet=True)
    config = yaml.safe_load(next((tmp_path / "exp" / "llama_r4" / "eval").rglob("eval_config.yaml")).read_text())
    assert config["task_args"]["split"] == "validation"  # no test split in the file
    _with_test_split(tmp_path / "data" / "numbers.json")
    scaffold(path, settings=load_settings(), quiet=True, force=True)
    config = yaml.safe_load(next((tmp_path / "exp" / "llama_r4" / "eval").rglob("eval_config.yaml")).read_text())
    assert config["task_args"]["split"] == "test"


def test_explicit_split_is_kept(tmp_path, scratch):
    design = small_design(tmp_path)  # says split: validation
    _with_test_split(tmp_path / "data" / "numbers.json")
    scaffold(write_design(tmp_path, design), settings=load_settings(), quiet=True)
    config = yaml.safe_load(next((tmp_path / "exp" / "llama_r4" / "eval").rglob("eval_config.yaml")).read_text())
    assert config["task_args"]["split"] == "validation"


def test_plan_says_which_split_each_task_uses(tmp_path, scratch, capsys):
    design = small_design(tmp_path)  # writes data/numbers.json (train, validation) and the task script
    _with_test_split(tmp_path / "data" / "numbers.json")
    design["evaluation"]["tasks"].append({"name": "held_out", "script": "numbers_task.py",
                                          "function": "predictable_or_not"})
    design["evaluation"]["matrix"][0]["tasks"].append("held_out")
    out = tmp_path / "experiment_summary.md"
    assert ck(capsys, "design", "summary", str(write_design(tmp_path, design)), "--out", str(out)).returncode == 0
    rows = {line.split("|")[1].strip(): line for line in out.read_text().splitlines() if line.startswith("| ")}
    assert "| validation |" in rows["next_value"]
    assert "| test (default) |" in rows["held_out"]


def test_truncation_warning_when_examples_exceed_max_seq_len(tmp_path, scratch, capsys):
    design = small_design(tmp_path)
    doc = json.loads((tmp_path / "data" / "numbers.json").read_text())
    doc["train"][0]["input"] = "word " * 200  # about 250 tokens, max_seq_len is 128
    (tmp_path / "data" / "numbers.json").write_text(json.dumps(doc))
    result = ck(capsys, "scaffold", str(write_design(tmp_path, design)))
    assert result.returncode == 0, result.stderr
    assert "controls.max_seq_len: the longest training example" in result.stderr
    assert "longer examples are truncated; raise max_seq_len (upstream cruijff_kit's default is 2048)" in result.stderr
    design2 = small_design(tmp_path / "short")
    assert "longest training example" not in ck(capsys, "scaffold", str(write_design(tmp_path / "short", design2))).stderr


def test_eval_prompt_sweep(tmp_path, scratch, capsys):
    """A task marked prompt_sweep may evaluate with its own prompt: a warning, the cell's config carries it,
    and `cruijff-kit prompts` shows it next to what the run trained on."""
    design = small_design(tmp_path)
    design["runs"] = design["runs"][:1] + design["runs"][2:]  # llama_r4 + the control
    design["evaluation"]["tasks"].append({"name": "terse", "script": "numbers_task.py",
                                          "function": "predictable_or_not", "split": "validation",
                                          "prompt": "{input} ->", "prompt_sweep": True})
    design["evaluation"]["matrix"] = [{"run": "llama_r4", "tasks": ["next_value", "terse"], "epochs": [1]},
                                      {"run": "llama_base", "tasks": ["terse"], "epochs": None}]
    path = write_design(tmp_path, design)
    result = ck(capsys, "scaffold", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "evaluation.tasks[1].prompt: differs from the training prompt" in result.stderr
    exp = tmp_path / "exp"
    terse = yaml.safe_load((exp / "llama_r4" / "eval" / "terse_epoch1" / "eval_config.yaml").read_text())
    plain = yaml.safe_load((exp / "llama_r4" / "eval" / "next_value_epoch1" / "eval_config.yaml").read_text())
    assert terse["task_args"]["prompt"] == terse["prompt"] == "{input} ->"
    assert plain["task_args"]["prompt"] == "Numbers: {input}\nNext:"
    out = ck(capsys, "prompts", str(path)).stdout
    assert "llama_r4/terse_epoch1  (differs from training: eval prompt sweep)" in out
    assert "trained with:  'Numbers: {input}\\nNext:' / 'Continue the sequence.'" in out
    assert "llama_base/terse\n  prompt:        '{input} ->'" in out  # controls: no training to differ from
    del design["evaluation"]["tasks"][1]["prompt_sweep"]
    result = ck(capsys, "scaffold", str(write_design(tmp_path, design)), "--dry-run")
    assert result.returncode == 2 and "or mark the task prompt_sweep: true" in result.stderr

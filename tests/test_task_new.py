"""`cruijff-kit task new`: a ready @task file for our JSON format, never clobbered, inputs validated,
and the generated task really evaluates (inspect-ai on the tiny model)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff_kit.workers.inspect.taskscan import task_problem

from conftest_eval import write_dataset


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"gen_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_new_writes_an_importable_task(tmp_path, cli):
    data = write_dataset(tmp_path / "const.json", n_train=4, n_val=3)
    result = cli("task", "new", "const_check", "--dataset", str(data), "--prompt", "Q: {input}\nA:",
                 "--system-prompt", 'Answer with "one" number.', "--scorer", "match:location=exact,ignore_case=false",
                 "--scorer", "numeric:tolerance=0.5", "--out", str(tmp_path / "tasks"))
    assert result.returncode == 0, result.stderr
    path = tmp_path / "tasks" / "const_check_task.py"
    assert result.stdout.splitlines()[0] == f"wrote {path}"
    assert f"script: {path}, function: const_check, split: validation" in result.stdout
    assert task_problem(path, "const_check") == ""  # what scaffold's check() looks for

    module = load_module(path)
    assert module.DATA_PATH == str(data) and module.SPLIT == "validation"
    assert module.PROMPT == "Q: {input}\nA:" and module.SYSTEM_PROMPT == 'Answer with "one" number.'
    assert module.SCORERS == [{"name": "match", "params": {"location": "exact", "ignore_case": False}},
                              {"name": "numeric", "params": {"tolerance": 0.5}}]
    from inspect_ai import Task

    task = module.const_check()
    assert isinstance(task, Task) and task.name == "const_check"
    assert len(task.dataset) == 3
    first = task.dataset[0]
    records = json.loads(data.read_text())["validation"]
    assert [m.role for m in first.input] == ["system", "user"]
    assert first.input[1].content == f"Q: {records[0]['input']}\nA:" and first.target == "42"
    assert len(task.scorer) == 2
    # the design's arguments reach it: another split, another prompt
    other = module.const_check(split="train", prompt="{input} =", system_prompt="")
    assert len(other.dataset) == 4 and [m.role for m in other.dataset[0].input] == ["user"]


def test_new_refuses_to_overwrite_without_force(tmp_path, cli):
    data = write_dataset(tmp_path / "const.json", n_train=2, n_val=2)
    args = ("task", "new", "capitals", "--dataset", str(data), "--out", str(tmp_path))
    assert cli(*args).returncode == 0
    path = tmp_path / "capitals_task.py"
    path.write_text(path.read_text() + "# my edit\n")
    again = cli(*args)
    assert again.returncode == 2
    assert again.stderr.strip() == (f"task new: --out: {path} already exists; pass --force to overwrite it "
                                    "or choose another --out / NAME")
    assert path.read_text().endswith("# my edit\n")
    forced = cli(*args, "--force")
    assert forced.returncode == 0 and not path.read_text().endswith("# my edit\n")


def test_new_validates_dataset_split_name_prompt_and_scorers(tmp_path, cli):
    data = write_dataset(tmp_path / "const.json", n_train=2, n_val=2)
    result = cli("task", "new", "2bad", "--dataset", str(data), "--split", "test", "--prompt", "no placeholder",
                 "--scorer", "match:where=end", "--scorer", "bleu", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "task new: NAME: '2bad' is not a Python function name; use letters, digits and underscores, "
        "not starting with a digit (e.g. next_value)",
        "task new: --prompt: the prompt template has no {input} placeholder; add {input} where the "
        "example's input goes",
        f"task new: --split: {data} has no split 'test' (splits: train, validation); use --split train",
        "task new: --scorer[0].params.where: scorer 'match' takes no parameter 'where'; it accepts: "
        "location, ignore_case, numeric",
        "task new: --scorer[1].name: unknown scorer 'bleu'; known scorers: match, includes, exact, f1, "
        "pattern, numeric, calibration, continuous",
    ]
    assert not list(tmp_path.glob("*_task.py"))
    missing = cli("task", "new", "x", "--dataset", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "--dataset: dataset not found" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"validation": [{"question": "q", "answer": "a"}]}))
    result = cli("task", "new", "x", "--dataset", str(bad), "--out", str(tmp_path))
    assert result.returncode == 2 and "validation[0] needs 'input' and 'output'" in result.stderr


def test_new_dry_run_prints_and_writes_nothing(tmp_path, cli):
    data = write_dataset(tmp_path / "const.json", n_train=2, n_val=2)
    result = cli("task", "new", "dry", "--dataset", str(data), "--out", str(tmp_path), "--dry-run")
    assert result.returncode == 0 and "@task\ndef dry(" in result.stdout
    assert not (tmp_path / "dry_task.py").exists()


@pytest.mark.slow
def test_generated_task_evaluates_with_inspect_on_the_tiny_model(tmp_path, cli):
    """The standalone command in the generated docstring works: `inspect eval FILE@NAME` on hf/local."""
    from cruijff_kit.models.tiny import make_tiny
    from inspect_ai.log import read_eval_log

    model = make_tiny(tmp_path / "tiny-llama")
    data = write_dataset(tmp_path / "const.json", n_train=2, n_val=3)
    assert cli("task", "new", "const", "--dataset", str(data), "--out", str(tmp_path)).returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_DISPLAY": "none"}
    inspect_cli = Path(sys.executable).with_name("inspect")
    proc = subprocess.run([str(inspect_cli), "eval", str(tmp_path / "const_task.py") + "@const",
                           "--model", "hf/local", "-M", f"model_path={model}", "-M", "device=cpu",
                           "-M", "do_sample=false", "--max-tokens", "4", "--log-dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [log_file] = list((tmp_path / "logs").glob("*.eval"))
    log = read_eval_log(str(log_file))
    assert log.status == "success" and log.eval.task == "const"
    assert len(log.samples) == 3 and all(s.target == "42" for s in log.samples)
    assert all(s.output.usage.output_tokens <= 4 for s in log.samples)
    assert [s.name for s in log.results.scores] == ["match"]

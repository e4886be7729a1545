"""[compat] end to end (slow): an upstream-style task script (prompts read from `config_path`) evaluated by
a real eval job on the tiny model, on the `test` split the dataset has, with the design's prompts."""
from __future__ import annotations

import json
import subprocess

import pytest
from conftest import cli_env, run_cli
from conftest_eval import design, write_dataset
from test_compat_conventions import UPSTREAM_STYLE_TASK

pytestmark = pytest.mark.slow


def test_upstream_task_with_config_path_runs_on_the_test_split(tmp_path, tiny_model):
    from inspect_ai.log import read_eval_log

    tiny = tiny_model
    env = cli_env(tmp_path, "# compat e2e\n- **Partition**: (none)\n")
    data = write_dataset(tmp_path / "data" / "const.json", n_train=8, n_val=3, target="42",
                         splits=("train", "validation", "test"))
    (tmp_path / "upstream_task.py").write_text(UPSTREAM_STYLE_TASK)
    path = design(tmp_path, data=data, controls={"prompt": "Q: {input}\nA:", "system_prompt": "Say 42."},
                  tasks=[{"name": "const", "script": str(tmp_path / "upstream_task.py"), "function": "numbers"}],
                  evaluation={"max_tokens": 2, "max_connections": 2},
                  models=[{"name": "tiny-llama", "path": str(tiny)}],
                  runs=[{"name": "base", "type": "control", "model": "tiny-llama"}],
                  matrix=[{"run": "base", "tasks": ["const"], "epochs": None}])
    result = run_cli("scaffold", str(path), env=env)
    assert result.returncode == 0, result.stderr
    exp_dir = tmp_path / "exp"
    [job] = json.loads((exp_dir / "jobs.json").read_text())["jobs"]
    script = exp_dir / job["script"]
    assert "--partition" not in script.read_text()
    proc = subprocess.run(["bash", str(script)], env={**env, "CK_JOB_ID": job["id"]}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "takes no" not in proc.stdout  # no dropped-argument warning: the task reads config_path
    [log_file] = sorted((exp_dir / "base" / "eval" / "const" / "logs").glob("*.eval"))
    log = read_eval_log(str(log_file))
    test_inputs = [r["input"] for r in json.loads(data.read_text())["test"]]
    assert [s.input for s in log.samples] == [f"Q: {i}\nA:" for i in test_inputs]  # the test split, our prompt
    assert log.eval.task_args["config_path"] == str(exp_dir / "base" / "eval" / "const" / "eval_config.yaml")
    assert log.eval.task_args["split"] == "test"
    assert log.samples[0].messages[0].role == "system" and log.samples[0].messages[0].content == "Say 42."

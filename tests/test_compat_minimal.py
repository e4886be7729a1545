"""Item 2 of [compat]: what the schema accepts, scaffold renders. A scorer written `- name: match`
(no params, as upstream writes scorers) and a design with every optional key left out both scaffold."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest_scaffold import TASK_SCRIPT, ck, write_data

MINIMAL = """\
experiment:
  name: minimal
  question: Does the smallest design scaffold?
  date: "2025-11-01"
tools:
  preparation: torchtune
  evaluation: inspect-ai
controls: {}
models:
  base:
    - name: Llama-3.2-1B-Instruct
      path: "{models_dir}/Llama-3.2-1B-Instruct"
data:
  training:
    path: data/numbers.json
runs:
  - name: ft
    type: fine-tuned
    model: Llama-3.2-1B-Instruct
  - name: base
    type: control
    model: Llama-3.2-1B-Instruct
evaluation:
  scorers:
    - name: match
  tasks:
    - name: next_value
      script: numbers_task.py
      function: predictable_or_not
  matrix:
    - run: ft
      tasks: [next_value]
      epochs: [0]
    - run: base
      tasks: [next_value]
      epochs: null
"""


def _folder(tmp_path: Path, text: str = MINIMAL) -> Path:
    write_data(tmp_path / "data" / "numbers.json")
    shutil.copy(TASK_SCRIPT, tmp_path / "numbers_task.py")
    path = tmp_path / "experiment_summary.yaml"
    path.write_text(text)
    return path


def _eval_configs(exp_dir: Path) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted(exp_dir.rglob("eval_config.yaml"))]


def test_scorer_without_params_scaffolds(tmp_path, scratch, capsys):
    path = _folder(tmp_path)
    assert ck(capsys, "validate", str(path)).returncode == 0
    result = ck(capsys, "scaffold", str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "jinja2" not in result.stderr
    configs = _eval_configs(scratch / "ck-experiments" / "minimal")
    assert len(configs) == 2
    assert all(c["scorers"] == [{"name": "match", "params": {}}] for c in configs)


def test_no_scorers_no_data_keys_no_output(tmp_path, scratch, capsys):
    """evaluation without scorers (the task's own), no experiment.type, no output, no controls values."""
    text = MINIMAL.replace("  scorers:\n    - name: match\n", "")
    path = _folder(tmp_path, text)
    result = ck(capsys, "scaffold", str(path))
    assert result.returncode == 0, result.stderr
    exp_dir = scratch / "ck-experiments" / "minimal"
    assert all(c["scorers"] == [] for c in _eval_configs(exp_dir))
    assert (exp_dir / "ft" / "finetune.yaml").is_file() and (exp_dir / "ft" / "finetune.slurm").is_file()

"""design expand / verify / summary: runs from variables, logged checks, the rendered plan parsed back."""
from __future__ import annotations

import json
import re

import yaml

from cruijff_kit import logbook
from cruijff_kit.cli import main as cli_main
from cruijff_kit.experiment.load import load_experiment

from conftest import SANITY

SWEEP = {
    "experiment": {"name": "cap_rank_2025-11-01", "question": "Does rank matter?", "date": "2025-11-01",
                   "type": "experiment"},
    "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
    "variables": {"lora_rank": [4, 8], "lr": [0.0001, 0.001]},
    "controls": {"epochs": 2, "prompt": "Q: {input}\nA:"},
    "models": {"base": [{"name": "Llama-3.2-1B-Instruct", "path": "/m/1b", "size_gb": 2.5},
                        {"name": "Llama-3.2-3B-Instruct", "path": "/m/3b", "size_gb": 6.4}]},
    "data": {"training": {"path": "data.json", "splits": {"train": 3, "validation": 2}}},
    "evaluation": {"tasks": [{"name": "capitals", "script": "task.py"}], "scorers": [{"name": "match"}]},
}


def write(tmp_path, data, name="experiment_summary.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_expand_names_and_matrix(tmp_path, capsys, scratch):
    path = write(tmp_path, SWEEP)
    assert cli_main(["design", "expand", str(path), "--controls"]) == 0
    exp = load_experiment(path)
    names = [r.name for r in exp.runs]
    assert names[:4] == ["Llama-3.2-1B-Instruct_rank4_lr0.0001", "Llama-3.2-1B-Instruct_rank4_lr0.001",
                         "Llama-3.2-1B-Instruct_rank8_lr0.0001", "Llama-3.2-1B-Instruct_rank8_lr0.001"]
    assert "Llama-3.2-1B-Instruct_base" in names and "Llama-3.2-3B-Instruct_base" in names and len(names) == 10
    assert exp.run("Llama-3.2-3B-Instruct_rank8_lr0.001").controls.lora_rank == 8
    assert exp.run("Llama-3.2-3B-Instruct_rank8_lr0.001").controls.lora_alpha == 16
    cells = exp.cells()
    assert {(c.run, c.epoch) for c in cells if c.run.endswith("_base")} == {
        ("Llama-3.2-1B-Instruct_base", None), ("Llama-3.2-3B-Instruct_base", None)}
    assert all(c.epoch == 1 for c in cells if not c.run.endswith("_base"))


def test_expand_refuses_existing_runs_and_huge_sweeps(tmp_path, capsys, scratch):
    path = write(tmp_path, SWEEP)
    assert cli_main(["design", "expand", str(path)]) == 0
    assert cli_main(["design", "expand", str(path)]) == 2
    assert "runs already defined (8)" in capsys.readouterr().err
    huge = {**SWEEP, "variables": {"lora_rank": list(range(1, 41)), "lr": [0.001 * i for i in range(1, 14)]}}
    path2 = write(tmp_path, huge, "huge.yaml")
    before = path2.read_text()
    assert cli_main(["design", "expand", str(path2)]) == 2
    assert "1040 runs (over 1000)" in capsys.readouterr().err and path2.read_text() == before
    assert cli_main(["design", "expand", str(path2), "--yes", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "warning: 1040 runs" in captured.err and path2.read_text() == before


def test_verify_logs_every_check(tmp_path, capsys, scratch):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"0" * 100)
    (tmp_path / "data.json").write_text(json.dumps({"train": [{"input": "a", "output": "b"}] * 3,
                                                     "validation": [{"input": "a", "output": "b"}] * 1}))
    (tmp_path / "task.py").write_text("from inspect_ai import task\n\n@task\ndef capitals():\n    pass\n")
    data = {**SWEEP, "variables": {"lora_rank": [4]},
            "models": {"base": [{"name": "Llama-3.2-1B-Instruct", "path": str(model), "size_gb": 0.1}]},
            "experiment": {**SWEEP["experiment"], "dir": str(tmp_path / "exp")}}
    path = write(tmp_path, data)
    assert cli_main(["design", "expand", str(path)]) == 0
    assert cli_main(["design", "verify", str(path)]) == 2  # validation has 1 example, design says 2
    err = capsys.readouterr().err
    assert "split 'validation' has 1 examples, design says 2" in err
    entries = logbook.read(tmp_path / "exp" / "design-experiment.log")
    actions = [e.action for e in entries]
    assert actions == ["VERIFY_MODEL", "VERIFY_DATASET", "VERIFY_EVAL_TASK", "CHECK_DISK"]
    assert "train=3" in entries[1].result and "validation=1" in entries[1].result
    (tmp_path / "data.json").write_text(json.dumps({"train": [{"input": "a", "output": "b"}] * 3,
                                                     "validation": [{"input": "a", "output": "b"}] * 2}))
    assert cli_main(["design", "verify", str(path)]) == 0
    assert "all 4 checks passed" in capsys.readouterr().out


def test_verify_missing_task_function(tmp_path, capsys, scratch):
    (tmp_path / "task.py").write_text("def capitals():\n    pass\n")
    data = {**SWEEP, "variables": {}, "runs": [{"name": "r", "type": "control", "model": "Llama-3.2-1B-Instruct"}],
            "experiment": {**SWEEP["experiment"], "dir": str(tmp_path / "exp")}}
    path = write(tmp_path, data)
    assert cli_main(["design", "verify", str(path), "--no-log"]) == 2
    err = capsys.readouterr().err
    assert "is not decorated with @task" in err and "model directory not found: /m/1b" in err


def test_summary_sections_parse_back(tmp_path, capsys, scratch):
    out = tmp_path / "experiment_summary.md"
    assert cli_main(["design", "summary", str(SANITY), "--profile", "tiny", "--out", str(out)]) == 0
    text = out.read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections == ["Overview", "Variables", "All Runs", "Resources", "Evaluation Plan", "Configuration",
                        "Compute Estimates", "Notes", "Naming Conventions", "Status", "Quick Reference"]
    runs_table = text.split("## All Runs")[1].split("##")[0]
    rows = [line for line in runs_table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == [r.name for r in load_experiment(SANITY).runs]
    status = text.split("<!-- ck:status:start -->")[1].split("<!-- ck:status:end -->")[0]
    assert status.count("| pending |") == 8 + 10
    assert "| dataset_label | \"pp\", \"pu\", \"up\", \"uu\" |" in text
    # re-rendering keeps the Status block that `run` filled in
    out.write_text(text.replace("| pp_output_only | pending |", "| pp_output_only | completed |"))
    assert cli_main(["design", "summary", str(SANITY), "--profile", "tiny", "--out", str(out)]) == 0
    assert "| pp_output_only | completed |" in out.read_text()

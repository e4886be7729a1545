"""The matrix follows the runs: `design expand --force` after a variable changed adds matrix rows for the new
runs, keeps the researcher's rows and run entries for the runs that stay, drops the rows of removed runs;
`validate` warns about any run that trains and has no eval cell."""
from __future__ import annotations

import copy

import yaml

from cruijff_kit.cli import main as cli_main
from cruijff_kit.experiment.load import load_experiment

from test_design import SWEEP, write


def _load(path):
    return yaml.safe_load(path.read_text())


def test_force_adds_rows_for_new_runs_and_keeps_edited_rows(tmp_path, capsys, scratch):
    data = copy.deepcopy(SWEEP)
    data["variables"] = {"lora_rank": [4, 8]}
    data["models"]["base"] = data["models"]["base"][:1]
    path = write(tmp_path, data)
    assert cli_main(["design", "expand", str(path), "--controls"]) == 0
    design = _load(path)
    # the researcher edits: rank4 evaluated at both epochs with a label; rank8 gets slurm_overrides
    for row in design["evaluation"]["matrix"]:
        if row["run"].endswith("_rank4"):
            row.update(epochs=[0, 1], vis_label="r4")
    for run in design["runs"]:
        if run["name"].endswith("_rank8"):
            run["slurm_overrides"] = {"time": "02:00:00"}
    design["variables"]["lora_rank"] = [8, 16]  # rank4 goes, rank16 comes
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    capsys.readouterr()
    assert cli_main(["design", "expand", str(path), "--controls", "--force"]) == 0
    out = capsys.readouterr().out
    assert "Llama-3.2-1B-Instruct_rank16  (fine-tuned)  (new)" in out
    assert "Llama-3.2-1B-Instruct_rank4  (removed" in out
    after = _load(path)
    runs = {r["name"]: r for r in after["runs"]}
    assert set(runs) == {"Llama-3.2-1B-Instruct_rank8", "Llama-3.2-1B-Instruct_rank16", "Llama-3.2-1B-Instruct_base"}
    assert runs["Llama-3.2-1B-Instruct_rank8"]["slurm_overrides"] == {"time": "02:00:00"}
    rows = {r["run"]: r for r in after["evaluation"]["matrix"]}
    assert set(rows) == set(runs)
    assert rows["Llama-3.2-1B-Instruct_rank16"]["epochs"] == [1]  # the default: the last of 2 epochs
    assert rows["Llama-3.2-1B-Instruct_base"]["epochs"] is None
    exp = load_experiment(path)
    assert {c.run for c in exp.cells()} == set(runs)


def test_force_keeps_runs_the_expansion_never_makes(tmp_path, scratch):
    data = copy.deepcopy(SWEEP)
    data["variables"] = {"lora_rank": [4]}
    data["models"]["base"] = data["models"]["base"][:1]
    data["data"]["preference"] = {"path": "prefs.json"}
    path = write(tmp_path, data)
    assert cli_main(["design", "expand", str(path)]) == 0
    design = _load(path)
    design["runs"].append({"name": "dpo", "type": "dpo", "model": "Llama-3.2-1B-Instruct",
                           "base_run": "Llama-3.2-1B-Instruct_rank4", "base_epoch": "last"})
    design["evaluation"]["matrix"].append({"run": "dpo", "tasks": ["capitals"], "epochs": [0]})
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    assert cli_main(["design", "expand", str(path), "--force"]) == 0
    after = _load(path)
    assert [r["name"] for r in after["runs"]] == ["Llama-3.2-1B-Instruct_rank4", "dpo"]
    assert {"run": "dpo", "tasks": ["capitals"], "epochs": [0]} in after["evaluation"]["matrix"]


def test_validate_warns_about_a_trained_run_without_eval_cell(tmp_path, capsys, scratch):
    data = copy.deepcopy(SWEEP)
    data["variables"] = {"lora_rank": [4, 8]}
    data["models"]["base"] = data["models"]["base"][:1]
    path = write(tmp_path, data)
    assert cli_main(["design", "expand", str(path)]) == 0
    assert cli_main(["validate", str(path)]) == 0
    assert "no eval cell" not in capsys.readouterr().err
    design = _load(path)
    design["evaluation"]["matrix"] = [r for r in design["evaluation"]["matrix"] if not r["run"].endswith("_rank8")]
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    assert cli_main(["validate", str(path)]) == 0  # a warning, not an error
    err = capsys.readouterr().err
    assert "evaluation.matrix: run 'Llama-3.2-1B-Instruct_rank8' trains but has no eval cell" in err
    assert "design expand" in err

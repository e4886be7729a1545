"""Files written after approval, and what the plan shows: `design save` writes the approved draft into the
experiment directory (relative paths made absolute, nothing there before); experiment_summary.md carries the
✓/✗ marks of `design verify`, the dataset size and a Notes section (prerequisites, notes, decisions)."""
from __future__ import annotations

import json
import re

import yaml

from cruijff_kit import logbook
from cruijff_kit.cli import main as cli_main
from cruijff_kit.experiment.load import load_experiment

from test_design import SWEEP, write


def _draft(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"0" * 100)
    records = [{"input": "a", "output": "b"}]
    (tmp_path / "data.json").write_text(json.dumps({"train": records * 3, "validation": records * 2}))
    (tmp_path / "task.py").write_text("from inspect_ai import task\n\n@task\ndef capitals():\n    pass\n")
    data = {**SWEEP, "variables": {"lora_rank": [4]},
            "models": {"base": [{"name": "Llama-3.2-1B-Instruct", "path": str(model), "size_gb": 0.1}]}}
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    # relative paths, as a researcher writes them next to the data
    data = {**data, "data": {"training": {"path": "../data.json", "splits": {"train": 3, "validation": 2}}},
            "evaluation": {**data["evaluation"], "tasks": [{"name": "capitals", "script": "../task.py"}]}}
    return write(drafts, data)


def test_nothing_is_written_to_the_experiment_dir_before_save(tmp_path, capsys, scratch):
    draft = _draft(tmp_path)
    exp_dir = scratch / "ck-experiments" / SWEEP["experiment"]["name"]
    assert cli_main(["design", "expand", str(draft), "--controls"]) == 0
    assert cli_main(["design", "verify", str(draft), "--no-log"]) == 0
    assert cli_main(["estimate", str(draft), "--no-log"]) == 0
    assert cli_main(["validate", str(draft)]) == 0
    assert cli_main(["design", "summary", str(draft), "--dry-run"]) == 0
    # only the estimate's own record (for `estimate --check` later); no design, plan or log
    written = sorted(str(p.relative_to(exp_dir)) for p in exp_dir.rglob("*") if p.is_file())
    assert written == [".ck/estimate.json"], written
    # the researcher approved: save, and the saved design reads the same files from its new place
    assert cli_main(["design", "save", str(draft)]) == 0
    saved = exp_dir / "experiment_summary.yaml"
    data = yaml.safe_load(saved.read_text())
    assert data["data"]["training"]["path"] == str(tmp_path / "data.json")
    assert data["evaluation"]["tasks"][0]["script"] == str(tmp_path / "task.py")
    assert len(load_experiment(saved).cells()) == len(load_experiment(draft).cells())
    assert cli_main(["design", "save", str(draft)]) == 0  # the same design again: fine
    draft.write_text(draft.read_text().replace("Does rank matter?", "Does rank matter at all?"))
    capsys.readouterr()
    assert cli_main(["design", "save", str(draft)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_main(["design", "save", str(draft), "--force"]) == 0


def test_summary_has_marks_dataset_size_and_notes(tmp_path, capsys, scratch):
    draft = _draft(tmp_path)
    assert cli_main(["design", "expand", str(draft), "--controls"]) == 0
    assert cli_main(["design", "save", str(draft)]) == 0
    exp = load_experiment(scratch / "ck-experiments" / SWEEP["experiment"]["name"])
    design_file = str(exp.dir / "experiment_summary.yaml")
    assert cli_main(["design", "summary", design_file, "--dry-run"]) == 0
    before = capsys.readouterr().out
    assert "Not verified yet" in before and "No notes, prerequisites or decisions logged yet." in before
    log = exp.dir / "design-experiment.log"
    logbook.log(log, "PREREQUISITE", "Llama-3.2-3B-Instruct is not downloaded yet", decision="download before scaffold")
    logbook.log(log, "DECIDE_GPU", "one full GPU per job", decision="full GPU: nvidia-smi reports complete metrics")
    assert cli_main(["design", "verify", design_file]) == 0
    assert cli_main(["design", "summary", design_file]) == 0
    text = (exp.dir / "experiment_summary.md").read_text()
    resources = text.split("## Resources")[1].split("\n## ")[0]
    assert re.search(r"\| Llama-3\.2-1B-Instruct \| `[^`]+` \| 0\.1 \| ✓ \|", resources), resources
    size = (tmp_path / "data.json").stat().st_size
    assert f"{size / 1e3:.1f} kB) ✓" in resources
    assert "| ✓ | VERIFY_EVAL_TASK | capitals |" in resources and "| ✓ | CHECK_DISK |" in resources
    notes = text.split("## Notes")[1].split("\n## ")[0]
    assert "- **Prerequisite**: Llama-3.2-3B-Instruct is not downloaded yet — download before scaffold" in notes
    assert "- **Decision**: one full GPU per job — full GPU: nvidia-smi reports complete metrics" in notes
    # a failed check shows ✗ (the model directory disappeared)
    for f in (tmp_path / "m").iterdir():
        f.unlink()
    assert cli_main(["design", "verify", design_file]) == 2
    assert cli_main(["design", "summary", design_file]) == 0
    assert "| ✗ | VERIFY_MODEL | Llama-3.2-1B-Instruct |" in (exp.dir / "experiment_summary.md").read_text()

"""`summarize` warns when the runs it compares were made from different data, models or software.

provenance.json files are written with the real tools/provenance.py (hashing real files) into the
summarize fixture experiment (real DiskLogger and inspect-ai logs: tests/test_summarize.py)."""
from __future__ import annotations

import json

from test_summarize import cell_dir, experiment  # noqa: F401  (the fixture)

from cruijff_kit.summarize.collect import SATURATION, collect
from cruijff_kit.summarize.report import render_files
from cruijff_kit.tools import provenance


def write_record(folder, files: dict, models: dict, **changes) -> dict:
    record = provenance.collect(files, models)
    for key, value in changes.items():
        record[key] = {**record[key], **value}
    provenance.write(folder / "provenance.json", record)
    return record


def inputs(tmp_path):
    data, model, task = tmp_path / "data.json", tmp_path / "base", tmp_path / "task.py"
    data.write_text('[{"input": "1", "output": "2"}]')
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    (model / "model.safetensors").write_bytes(b"w" * 32)
    task.write_text("def task(): pass\n")
    return data, model, task


def summary_md(c) -> str:
    return render_files(c, [], saturation=SATURATION)["analysis/summary.md"]


def test_agreeing_provenance_gives_no_flag_and_one_summary_line(experiment, tmp_path):  # noqa: F811
    data, model, task = inputs(tmp_path)
    for run in ("pp_output_only", "up_output_only"):
        write_record(experiment / run, {"dataset": str(data)}, {"base_model": str(model)})
    for run, epoch in (("pp_output_only", 0), ("up_output_only", 0)):
        write_record(cell_dir(experiment, run, epoch), {"task_script": str(task), "dataset": str(data)}, {})
    c = collect(experiment, progress=lambda _m: None)
    assert [f for f in c.flags if f.kind == "provenance"] == []
    assert "Provenance: the 4 job(s) with a provenance.json agree on data, base model" in summary_md(c)


def test_different_data_model_and_software_are_flagged(experiment, tmp_path, capsys):  # noqa: F811
    data, model, task = inputs(tmp_path)
    write_record(experiment / "pp_output_only", {"dataset": str(data)}, {"base_model": str(model)})
    write_record(cell_dir(experiment, "pp_output_only", 0), {"task_script": str(task)}, {})
    # between the runs the data file, the base model's config and the task script changed, torch was upgraded
    data.write_text('[{"input": "1", "output": "3"}]')
    (model / "config.json").write_text('{"hidden_size": 128}')
    task.write_text("def task(): return 1\n")
    write_record(experiment / "up_output_only", {"dataset": str(data)}, {"base_model": str(model)},
                 packages={"torch": "9.9.9"})
    write_record(cell_dir(experiment, "up_output_only", 0), {"task_script": str(task)}, {})

    c = collect(experiment, progress=lambda _m: None)
    lines = [f.line() for f in c.flags if f.kind == "provenance"]
    assert any(f"dataset {data} differs" in line for line in lines), lines
    assert any(f"base model {model} differs" in line for line in lines), lines
    assert any("task_script of task next_value differs" in line for line in lines), lines
    torch = [line for line in lines if "package torch differs" in line]
    assert len(torch) == 1 and "9.9.9 (up_output_only)" in torch[0], lines
    assert all(line.startswith("provenance: ") for line in lines)
    text = summary_md(c)
    assert f"Provenance: {len(lines)} difference(s) in what the 4 job(s) were made from" in text
    assert torch[0] in text  # every flag is listed in summary.md

    # a damaged provenance.json is left out, never a traceback
    (experiment / "up_output_only" / "provenance.json").write_text("{not json")
    c = collect(experiment, progress=lambda _m: None)
    assert not any("package torch" in f.line() for f in c.flags)
    json.loads((experiment / "pp_output_only" / "provenance.json").read_text())  # untouched

"""Grouped eval jobs (`evaluation.group`): which cells share a job, what scaffold renders for them, how
status and the rerun policy see their cells. The real-model runs are in test_eval_grouped_e2e.py."""
from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import jobs_payload, read_jobs
from cruijff_kit.files import write_json
from cruijff_kit.workers import rerun_overrides, rerun_policy
from cruijff_kit.workers.inspect import evaluator, groups

from conftest import run_cli
from conftest_eval import SANITY_TASK, design, write_dataset
from test_eval_worker import rendered

FT = {"name": "ft", "type": "fine-tuned", "model": "tiny-llama"}
CTL = {"name": "ctl", "type": "control", "model": "tiny-llama"}


def two_by_two(tmp_path, **evaluation):
    """ft: 2 tasks x 2 epochs; ctl: the same 2 tasks once."""
    data = write_dataset(tmp_path / "data" / "const.json")
    other = write_dataset(tmp_path / "data" / "other.json", target="7")
    return design(tmp_path, data=data, runs=[FT, CTL],
                  tasks=[{"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not"},
                         {"name": "other", "script": str(SANITY_TASK), "function": "predictable_or_not",
                          "dataset": str(other)}],
                  matrix=[{"run": "ft", "tasks": ["const", "other"], "epochs": [0, 1]},
                          {"run": "ctl", "tasks": ["const", "other"], "epochs": None}],
                  evaluation={"limit": 5, **evaluation})


@pytest.mark.parametrize("by, expected", [
    ("checkpoint", {"ft.evals.epoch0": ["ft.eval.const_epoch0", "ft.eval.other_epoch0"],
                    "ft.evals.epoch1": ["ft.eval.const_epoch1", "ft.eval.other_epoch1"],
                    "ctl.evals.all": ["ctl.eval.const", "ctl.eval.other"]}),
    ("run", {"ft.evals.all": ["ft.eval.const_epoch0", "ft.eval.const_epoch1", "ft.eval.other_epoch0",
                              "ft.eval.other_epoch1"],  # the design's order; the job orders them by epoch
             "ctl.evals.all": ["ctl.eval.const", "ctl.eval.other"]}),
    ("cell", {i: [i] for i in ["ft.eval.const_epoch0", "ft.eval.other_epoch0", "ft.eval.const_epoch1",
                               "ft.eval.other_epoch1", "ctl.eval.const", "ctl.eval.other"]}),
])
def test_cells_share_a_job_per_checkpoint_run_or_none(tmp_path, scratch, by, expected):
    exp, _settings, jobs = rendered(two_by_two(tmp_path, group=by))
    assert {j.id: [c.id for c in j.cells()] for j in jobs} == expected
    for job in jobs:
        assert job.kind == "eval" and job.after == (["ft.train"] if job.run == "ft" else [])
        for cell in job.cells():  # every cell keeps its own config and log dir, as a per-cell job has them
            config = yaml.safe_load((exp.dir / layout.cell_relpath(cell.run, cell.meta["cell"])
                                     / layout.EVAL_CONFIG).read_text())
            assert config["job_id"] == cell.id and config["log_dir"] == cell.output_dir
            assert cell.output_dir == str(layout.cell_logs(exp.dir, cell.run, cell.meta["cell"]))
    # jobs.json carries the cells: run and status read them back
    write_json(layout.jobs_file(exp.dir), jobs_payload(exp.name, jobs))
    assert {j.id: [c.id for c in j.cells()] for j in read_jobs(exp.dir)} == expected


def test_default_is_one_job_per_checkpoint_and_its_files(tmp_path, scratch):
    exp, settings, jobs = rendered(two_by_two(tmp_path))
    assert exp.evaluation.group == "checkpoint"
    job = next(j for j in jobs if j.id == "ft.evals.epoch1")
    assert job.script == "ft/eval_groups/epoch1/inspect.slurm" and job.meta["group"] == "checkpoint"
    assert [c.epoch for c in job.cells()] == [1, 1] and [c.task for c in job.cells()] == ["const", "other"]
    group_dir = exp.dir / "ft" / "eval_groups" / "epoch1"
    spec = yaml.safe_load((group_dir / layout.EVAL_GROUP_CONFIG).read_text())
    assert spec["job_id"] == "ft.evals.epoch1" and spec["state_file"] == layout.EVAL_GROUP_STATE
    assert [c["config"] for c in spec["cells"]] == [
        str(exp.dir / "ft" / "eval" / f"{t}_epoch1" / layout.EVAL_CONFIG) for t in ("const", "other")]
    assert spec["cells"][1]["provenance"]["files"]["dataset"].endswith("other.json")
    script = (group_dir / layout.EVAL_SCRIPT).read_text()
    assert "-m cruijff_kit.tools.inspect.run_group eval_group.yaml" in script
    assert f"cd {group_dir}" in script and "# Evaluate 2 cells with inspect-ai, one model load" in script
    assert subprocess.run(["bash", "-n", str(group_dir / layout.EVAL_SCRIPT)]).returncode == 0
    # the per-cell scripts are not rendered: jobs.json lists what runs
    assert not (exp.dir / "ft" / "eval" / "const_epoch1" / layout.EVAL_SCRIPT).exists()
    # two cells: twice the time of one cell's job
    one = evaluator.cell_resources(exp, settings, exp.run("ft"))["time"]
    assert f"#SBATCH --time={groups.scaled_time(one, 2)}" in script and groups.scaled_time(one, 2) != one


def test_a_run_with_one_task_keeps_its_per_cell_job(tmp_path, scratch):
    """A group of one cell is a per-cell job: designs with one task per checkpoint render as before."""
    path = design(tmp_path, runs=[FT], matrix=[{"run": "ft", "tasks": ["const"], "epochs": [0, 1]}])
    exp, _settings, jobs = rendered(path)
    assert [j.id for j in jobs] == ["ft.eval.const_epoch0", "ft.eval.const_epoch1"]
    assert all(j.cells() == [j] and j.script.endswith("/eval/const_epoch0/inspect.slurm") == (j.epoch == 0)
               for j in jobs)
    assert not (exp.dir / "ft" / "eval_groups").exists()


def test_an_unknown_group_is_one_line_exit_2(tmp_path, scratch):
    proc = run_cli("validate", str(two_by_two(tmp_path, group="epoch")))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "evaluation.group" in ln)
    assert "cell" in line and "checkpoint" in line and "run" in line


@pytest.mark.parametrize("text, factor, out", [
    ("01:00:00", 3, "03:00:00"), ("30", 2, "01:00:00"), ("10:30", 2, "00:21:00"), ("0-12:00", 3, "1-12:00:00"),
    ("1-00:00:00", 2, "2-00:00:00"), ("02:00:00", 1, "02:00:00"), ("infinite", 4, "infinite")])
def test_time_scales_with_the_cells_of_a_job(text, factor, out):
    assert groups.scaled_time(text, factor) == out


def group_job(tmp_path, scratch):
    exp, _settings, jobs = rendered(two_by_two(tmp_path))
    return exp, next(j for j in jobs if j.id == "ft.evals.epoch0")


def write_outcomes(exp_dir, job, cells: dict) -> None:
    path = exp_dir / job.script.replace(layout.EVAL_SCRIPT, layout.EVAL_GROUP_STATE)
    path.write_text(json.dumps({"job": job.id, "cells": cells}))


def test_status_shows_each_cell_of_a_group(tmp_path, scratch):
    exp, job = group_job(tmp_path, scratch)

    def states(js):
        return [(c["id"], c["state"], c["reason"]) for c in groups.cell_states(exp.dir, job, js)]

    # before the job ran: every cell is what the job is
    assert states({"state": "pending"}) == [("ft.eval.const_epoch0", "pending", ""),
                                            ("ft.eval.other_epoch0", "pending", "")]
    # as it goes, and when one cell failed: per cell
    write_outcomes(exp.dir, job, {"const_epoch0": {"status": "completed", "log": "x.eval"},
                                  "other_epoch0": {"status": "running"}})
    assert states({"state": "running"}) == [("ft.eval.const_epoch0", "completed", ""),
                                            ("ft.eval.other_epoch0", "running", "")]
    write_outcomes(exp.dir, job, {"const_epoch0": {"status": "completed"},
                                  "other_epoch0": {"status": "failed", "error": "FileNotFoundError: other.json"}})
    assert states({"state": "failed", "reason": "exit code 1"}) == [
        ("ft.eval.const_epoch0", "completed", ""), ("ft.eval.other_epoch0", "failed", "FileNotFoundError: other.json")]
    # resubmitted: the finished cell stays done, the failed one waits again
    assert states({"state": "pending"})[1] == ("ft.eval.other_epoch0", "pending", "")
    # killed while a cell ran: that cell (and any not reached) ends as the job did
    write_outcomes(exp.dir, job, {"const_epoch0": {"status": "running"}})
    assert states({"state": "cancelled", "reason": "cancelled by user"}) == [
        ("ft.eval.const_epoch0", "cancelled", "cancelled by user"), ("ft.eval.other_epoch0", "cancelled",
                                                                     "cancelled by user")]


def test_status_table_lists_the_cells_under_their_job(tmp_path, scratch):
    from cruijff_kit.run.status import format_text

    exp, job = group_job(tmp_path, scratch)
    write_outcomes(exp.dir, job, {"const_epoch0": {"status": "completed", "wall_s": 3.0},
                                  "other_epoch0": {"status": "failed", "error": "boom"}})
    js = {"state": "failed", "reason": "exit code 1", "log": "/x/slurm-1.out"}
    data = {"experiment": "evx", "dir": str(exp.dir), "counts": {"failed": 1}, "gates": [], "cost": None,
            "jobs": [{"id": job.id, **js, "cells": groups.cell_states(exp.dir, job, js)}]}
    text = format_text(data)
    assert "  ft.eval.const_epoch0" in text and "  ft.eval.other_epoch0" in text
    assert "ft.eval.other_epoch0 failed in ft.evals.epoch0: boom; log: /x/slurm-1.out" in text


def test_a_rerun_of_a_group_skips_its_finished_cells(tmp_path, scratch):
    from cruijff_kit.tools.inspect import run_group

    exp, job = group_job(tmp_path, scratch)
    policy = rerun_policy(job)
    assert policy.rerun_env(job, {}, None, exp.dir) == {groups.SKIP_DONE: "1"}
    assert policy.notes({groups.SKIP_DONE: "1"}) == ["finished cells not evaluated again"]
    assert not policy.oom_retry(job, {}, exp.dir).env
    assert groups.SKIP_DONE == run_group.SKIP_DONE and groups.SKIP_DONE in rerun_overrides()
    _exp, _settings, cells = rendered(two_by_two(tmp_path / "cells", group="cell"))
    assert all(rerun_policy(j) is None for j in cells)  # a per-cell job reruns as it is

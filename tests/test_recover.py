"""experiment/recover.py: a lost or damaged state.json is rebuilt from what the jobs left on disk."""
from __future__ import annotations

import json

import pytest

from cruijff_kit.experiment.recover import complete_epochs, recover_jobs, state_problem


def _train(tmp_path, epochs=3):
    return {"id": "r.train", "kind": "train", "run": "r", "script": "r/finetune.slurm",
            "output_dir": str(tmp_path / "out"), "meta": {"epochs": epochs}}


def _epoch(tmp_path, n, *, partial=False, empty=False):
    folder = tmp_path / "out" / f"epoch_{n}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"" if empty else b"w" * 16)
    if partial:
        (folder / "model.safetensors.tmp").write_bytes(b"half")


def test_exit_code_files_and_compute_records(tmp_path):
    jobs = [{"id": f"j{i}.eval", "kind": "eval", "run": f"j{i}", "script": f"j{i}/eval/t/inspect.slurm"}
            for i in range(5)]
    for job, content in zip(jobs, ["0\n", "1\n", "143\n", None, None]):
        (tmp_path / job["script"]).parent.mkdir(parents=True)
        if content is not None:
            (tmp_path / (job["script"] + ".exitcode")).write_text(content)
    (tmp_path / "j3/eval/t/compute.json").write_text(json.dumps({"exit_code": 0}))
    got = recover_jobs(tmp_path, jobs)
    assert [got[j["id"]]["state"] for j in jobs] == ["completed", "failed", "failed", "completed", "pending"]
    assert got["j2.eval"]["exit_code"] == 143 and "killed by SIGTERM" in got["j2.eval"]["reason"]
    assert "compute.json" in got["j3.eval"]["reason"]


def test_training_resumes_from_complete_checkpoints(tmp_path):
    job = _train(tmp_path)
    (tmp_path / "r").mkdir()
    assert recover_jobs(tmp_path, [job])["r.train"]["state"] == "pending"
    _epoch(tmp_path, 0)
    _epoch(tmp_path, 1)
    _epoch(tmp_path, 2, partial=True)  # a crash mid-write: not a checkpoint
    assert complete_epochs(tmp_path / "out") == [0, 1]
    got = recover_jobs(tmp_path, [job])["r.train"]
    assert got["state"] == "failed" and got["resume_from"] == 1
    (tmp_path / "r" / "finetune.slurm.exitcode").write_text("137")
    got = recover_jobs(tmp_path, [job])["r.train"]
    assert got["exit_code"] == 137 and got["resume_from"] == 1 and "SIGKILL" in got["reason"]


def test_all_epochs_without_exit_file_is_completed(tmp_path):
    job = _train(tmp_path, epochs=2)
    (tmp_path / "r").mkdir()
    _epoch(tmp_path, 0)
    _epoch(tmp_path, 1)
    got = recover_jobs(tmp_path, [job])["r.train"]
    assert got["state"] == "completed" and got["resume_from"] is None


def test_empty_weights_are_not_a_checkpoint(tmp_path):
    _epoch(tmp_path, 0, empty=True)
    assert complete_epochs(tmp_path / "out") == []


@pytest.mark.parametrize("content,what", [(b"", "is empty"), (b"{\"jobs\": ", "is not valid JSON"),
                                          (b"\xff", "is not UTF-8"), (b"[]", "does not hold a state"),
                                          (b'{"jobs": []}', "does not hold a state")])
def test_state_problem_names_file_and_fix(tmp_path, content, what):
    path = tmp_path / ".ck" / "state.json"
    path.parent.mkdir()
    assert state_problem(tmp_path) is None  # absent: fine
    path.write_bytes(content)
    line = state_problem(tmp_path)
    assert line.startswith(f"{path}: {what}") and "; move it aside" in line and "\n" not in line
    path.write_text('{"jobs": {}}')
    assert state_problem(tmp_path) is None

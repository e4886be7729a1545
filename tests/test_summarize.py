"""`cruijff-kit summarize`, `view` and `wandb sync` on an experiment assembled from REAL artifacts:
the recorded DiskLogger logs of four tiny-model training runs (cruijff_kit's recipe) and the inspect-ai
.eval logs of their checkpoints and of the base model (tests/fixtures/summarize/make_fixtures.py)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cruijff_kit import logbook
from cruijff_kit.cli import main as cli_main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "summarize"
EXP_NAME = "summarize_fixture"
RUNS = ["pp_output_only", "pp_input_and_output", "up_output_only", "up_input_and_output", "base_pp", "base_up"]
TRAINED = RUNS[:4]
CELLS = [("pp_output_only", 0), ("pp_output_only", 1), ("pp_input_and_output", 1), ("up_output_only", 0),
         ("up_output_only", 1), ("up_input_and_output", 1), ("base_pp", None), ("base_up", None)]
COLUMNS = ["run", "type", "model", "dataset_label", "train_on_input", "task", "epoch", "resolved_epoch", "status", "samples",
           "completed_samples", "match_accuracy", "match_stderr", "numeric_accuracy", "numeric_stderr",
           "base_run", "match_accuracy_delta", "numeric_accuracy_delta",
           "final_train_loss", "final_train_step", "best_train_loss", "best_train_step",
           "final_val_loss", "final_val_step", "best_val_loss", "best_val_step",
           "train_wall_s", "eval_wall_s", "train_state", "eval_state", "log"]
BEFORE = "# summarize_fixture\n\n## Overview\nA plan.\n\n## Status\n<!-- ck:status:start -->\n| job | state |\n" \
         "<!-- ck:status:end -->\n\n"
OLD_BLOCK = "<!-- ck:results:start -->\nold results that summarize must replace\n<!-- ck:results:end -->"
AFTER = "\n\n## Notes\nWritten by hand after the results block; must survive.\n"


def cell_dir(exp: Path, run: str, epoch) -> Path:
    return exp / run / "eval" / ("next_value" if epoch is None else f"next_value_epoch{epoch}")


def recipe_record(run: str) -> dict:
    return json.loads((FIXTURES / "outputs" / f"ck-out-{run}" / "training_summary.json").read_text())


@pytest.fixture
def experiment(tmp_path, scratch) -> Path:
    """An experiment dir as scaffold + run leave it, built from the recorded real artifacts."""
    exp = tmp_path / "exp"
    shutil.copytree(FIXTURES / "experiment", exp)
    outputs = scratch / "ck-outputs" / EXP_NAME
    shutil.copytree(FIXTURES / "outputs", outputs)
    # two runs name their output dir in finetune.yaml (as scaffold renders it); the other two are
    # found through jobs.json and through the settings' scratch layout
    for run in ("pp_output_only", "up_output_only"):
        (exp / run / "finetune.yaml").write_text(f"# rendered\noutput_dir: {outputs / f'ck-out-{run}'}\nepochs: 2\n")
    jobs = [{"id": "pp_input_and_output.train", "kind": "train", "run": "pp_input_and_output",
             "script": "pp_input_and_output/finetune.slurm", "output_dir": str(outputs / "ck-out-pp_input_and_output")}]
    (exp / "jobs.json").write_text(json.dumps({"experiment": EXP_NAME, "version": 1, "jobs": jobs}))
    state = {"jobs": {f"{r}.train": {"state": "completed", "started": "2025-10-27T10:00:00", "ended": 0}
                      for r in TRAINED}}
    state["jobs"]["up_input_and_output.eval.next_value_epoch1"] = {"state": "failed"}
    (exp / ".ck").mkdir()
    (exp / ".ck" / "state.json").write_text(json.dumps(state))
    (exp / "experiment_summary.md").write_text(BEFORE + OLD_BLOCK + AFTER)
    return exp


def eval_truth(exp: Path, run: str, epoch) -> dict:
    """Accuracy per scorer computed from the samples of the cell's .eval log (not its header)."""
    from inspect_ai.log import read_eval_log

    (path,) = sorted((cell_dir(exp, run, epoch) / "logs").glob("*.eval"))
    log = read_eval_log(str(path))
    out = {"samples": len(log.samples)}
    for scorer in ("match", "numeric"):
        values = [s.scores[scorer].value for s in log.samples]
        out[scorer] = sum(v == "C" for v in values) / len(values)
    return out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def png_ok(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(str(path))
    assert image.shape[:2] == (800, 1200), image.shape
    colours = {tuple(px) for px in image.reshape(-1, image.shape[2])[::97].tolist()}
    assert len(colours) > 10, f"{path.name} looks blank ({len(colours)} colours)"


# -- summarize -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_summarize_end_to_end(experiment, capsys):
    assert cli_main(["summarize", str(experiment)]) == 0
    out = capsys.readouterr()
    analysis = experiment / "analysis"

    rows = read_csv(analysis / "summary.csv")
    assert [(r["run"], r["epoch"]) for r in rows] == [(r, "" if e is None else str(e)) for r, e in CELLS]
    for row, (run, epoch) in zip(rows, CELLS):
        truth = eval_truth(experiment, run, epoch)
        assert row["status"] == "success" and row["task"] == "next_value"
        assert int(row["samples"]) == int(row["completed_samples"]) == truth["samples"] == 10
        assert float(row["match_accuracy"]) == pytest.approx(truth["match"])
        assert float(row["numeric_accuracy"]) == pytest.approx(truth["numeric"])
        assert row["dataset_label"] == (run[-2:] if run.startswith("base") else run[:2])
        if run.startswith("base"):
            assert row["type"] == "control" and row["train_on_input"] == "" and row["final_train_loss"] == ""
            assert row["base_run"] == "" and row["match_accuracy_delta"] == ""
            continue
        assert row["train_on_input"] == ("true" if "input_and" in run else "false")
        base = f"base_{run[:2]}"
        assert row["base_run"] == base
        base_truth = eval_truth(experiment, base, None)
        assert float(row["match_accuracy_delta"]) == pytest.approx(truth["match"] - base_truth["match"])
        record = recipe_record(run)
        assert float(row["final_train_loss"]) == pytest.approx(record["final_train_loss"])
        assert float(row["best_val_loss"]) == pytest.approx(record["best_val_loss"])
        assert int(row["best_val_step"]) == record["best_val_step"]
        assert float(row["train_wall_s"]) == pytest.approx(record["wall_s"])
        assert row["train_state"] == "completed" and float(row["eval_wall_s"]) > 0
        assert row["log"].startswith(f"{run}/eval/next_value_epoch{epoch}/logs/") and row["log"].endswith(".eval")

    data = json.loads((analysis / "summary.json").read_text())
    assert data["columns"] == COLUMNS and len(data["rows"]) == len(CELLS)
    assert [r["name"] for r in data["runs"]] == RUNS
    assert data["rows"][0]["match_accuracy"] == pytest.approx(float(rows[0]["match_accuracy"]))

    report = (analysis / "summary.md").read_text()
    for run in RUNS:
        assert f"| {run} |" in report
    assert "Δ match accuracy vs base" in report and "## Training loss" in report

    text = (experiment / "experiment_summary.md").read_text()
    assert text.startswith(BEFORE) and text.endswith(AFTER)
    block = text[len(BEFORE):-len(AFTER)]
    assert block.startswith("<!-- ck:results:start -->") and block.endswith("<!-- ck:results:end -->")
    assert "old results" not in block and "## Results" in block
    assert all(f"| {run} |" in block for run in RUNS)
    assert "![Loss, dataset_label = pp](analysis/loss_dataset_label-pp.png)" in block

    figures = sorted(p.name for p in analysis.glob("*.png"))
    assert figures == ["comparisons_next_value.png", "loss_dataset_label-pp.png", "loss_dataset_label-up.png",
                       "scores_next_value.png"]
    for name in figures:
        png_ok(analysis / name)
    html = (analysis / "scores.html").read_text()
    assert "<svg" in html and "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")
    assert all(run in html for run in RUNS)
    assert "inspect-viz" not in html and not (analysis / "scores_inspect_viz.html").exists()  # opt-in
    viz = (analysis / "scores_viz.html").read_text()  # offline interactive page, written by default
    assert "cdn" not in viz and all(run in viz for run in RUNS)

    (entry,) = logbook.read(experiment / "summarize-experiment.log")
    assert entry.action == "SUMMARIZE" and "8/8 eval cells logged" in entry.result
    assert "reading eval logs of 8 of 8 cells" in out.out and "8/8 eval logs read" in out.out

    # summarizing again replaces the block rather than adding another
    assert cli_main(["summarize", str(experiment), "--quiet", "--no-plots"]) == 0
    again = (experiment / "experiment_summary.md").read_text()
    assert again.count("<!-- ck:results:start -->") == 1 and again.startswith(BEFORE) and again.endswith(AFTER)
    assert len(logbook.read(experiment / "summarize-experiment.log")) == 2


@pytest.mark.slow
def test_flags_for_missing_failed_overfitting_and_saturated_cells(experiment, capsys):
    from inspect_ai.log import read_eval_log, write_eval_log

    from cruijff_kit.summarize.collect import collect

    # missing: the failed eval job left no log
    for log in (cell_dir(experiment, "up_input_and_output", 1) / "logs").glob("*.eval"):
        log.unlink()
    # failed: a real eval whose solver raised replaces this cell's log
    logs = cell_dir(experiment, "pp_input_and_output", 1) / "logs"
    shutil.rmtree(logs)
    logs.mkdir()
    (failed,) = sorted((FIXTURES / "failed").glob("*.eval"))
    shutil.copy2(failed, logs / failed.name)
    # overfitting: validation loss climbs after its best
    out_dir = experiment.parent / "scratch" / "ck-outputs" / EXP_NAME / "ck-out-pp_output_only"
    (log_file,) = sorted((out_dir / "logs").glob("log_*.txt"))
    record = recipe_record("pp_output_only")
    with open(log_file, "a") as fh:
        fh.write(f"Step {record['steps'] + 5} | val_loss:{record['best_val_loss'] * 1.3} \n")
    # saturated: the base model's log rewritten with a perfect match accuracy (inspect-ai's own writer)
    (base_log,) = sorted((cell_dir(experiment, "base_up", None) / "logs").glob("*.eval"))
    log = read_eval_log(str(base_log))
    for score in log.results.scores:
        if score.name == "match":
            score.metrics["accuracy"].value = 1.0
    write_eval_log(log, str(base_log))

    c = collect(experiment, progress=lambda _m: None)
    kinds = {(f.kind, f.run, f.cell) for f in c.flags}
    assert ("missing", "up_input_and_output", "next_value_epoch1") in kinds
    assert ("failed", "pp_input_and_output", "next_value_epoch1") in kinds
    assert ("overfitting", "pp_output_only", "") in kinds
    assert ("saturated", "base_up", "next_value") in kinds
    missing = next(f for f in c.flags if f.kind == "missing")
    assert "(eval job failed)" in missing.message
    failed_flag = next(f for f in c.flags if f.kind == "failed")
    assert "eval error" in failed_flag.message and "deliberate failure" in failed_flag.message

    assert cli_main(["summarize", str(experiment), "--no-plots"]) == 0
    captured = capsys.readouterr()
    for line in (f.line() for f in c.flags):
        assert f"warning: {line}" in captured.err
    report = (experiment / "analysis" / "summary.md").read_text()
    flags_section = report.split("## Flags", 1)[1]
    for kind in ("missing:", "failed:", "overfitting:", "saturated:"):
        assert kind in flags_section
    rows = {(r["run"], r["epoch"]): r for r in read_csv(experiment / "analysis" / "summary.csv")}
    assert rows[("up_input_and_output", "1")]["status"] == "missing"
    assert rows[("up_input_and_output", "1")]["eval_state"] == "failed"
    assert rows[("pp_input_and_output", "1")]["status"] == "error"
    assert rows[("pp_input_and_output", "1")]["match_accuracy"] == ""
    assert float(rows[("base_up", "")]["match_accuracy"]) == 1.0


@pytest.mark.slow
def test_dry_run_writes_nothing_and_missing_block_is_appended(experiment, capsys):
    before = (experiment / "experiment_summary.md").read_text()
    assert cli_main(["summarize", str(experiment), "--dry-run", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "would write" in out and "summary.csv" in out and "loss_dataset_label-pp.png" in out
    assert not (experiment / "analysis").exists()
    assert (experiment / "experiment_summary.md").read_text() == before
    assert not (experiment / "summarize-experiment.log").exists()

    (experiment / "experiment_summary.md").write_text("# plan without a results block\n")
    assert cli_main(["summarize", str(experiment), "--quiet", "--no-plots"]) == 0
    text = (experiment / "experiment_summary.md").read_text()
    assert text.startswith("# plan without a results block\n\n<!-- ck:results:start -->")
    assert text.rstrip().endswith("<!-- ck:results:end -->")
    assert not list((experiment / "analysis").glob("*.png"))


def test_summarize_user_errors_are_one_line(tmp_path, scratch, capsys):
    assert cli_main(["summarize", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope'}: no such directory; pass the experiment " \
                                             "directory (it holds experiment_summary.yaml)"
    assert cli_main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no experiment_summary.yaml here" in err[0]
    assert cli_main(["summarize", str(tmp_path), "--saturation", "2"]) == 2
    assert "--saturation: 2.0 is out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_summarize_runs_as_a_real_command(experiment):
    """What a user's shell sees: exit 0, a results table on stdout, no traceback (no plots: fast)."""
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit", "summarize", str(experiment), "--no-plots"],
                          capture_output=True, text=True, timeout=600, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "next_value" in proc.stdout and "training loss" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (experiment / "analysis" / "summary.csv").is_file()


# -- view --------------------------------------------------------------------------------------------
def test_view_dry_run_prints_the_command(experiment, capsys):
    assert cli_main(["view", str(experiment), "--port", "7601", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 eval log(s) in 8 cell(s)" in out
    command = out.strip().splitlines()[-1]
    assert f"view start --log-dir {experiment} --recursive --port 7601" in command
    empty = experiment.parent / "empty"
    empty.mkdir()
    assert cli_main(["view", str(empty), "--dry-run"]) == 2
    assert "no eval logs yet" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_inspect_view_lists_every_cell_log(experiment):
    """The real viewer, pointed where `cruijff-kit view` points it, lists every cell's log."""
    from cruijff_kit.workers.inspect.view import view_command

    port = _free_port()
    proc = subprocess.Popen(view_command(experiment, port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        listing, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline and listing is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/log-files", timeout=5) as resp:
                    listing = json.loads(resp.read())
            except OSError:
                time.sleep(1)
        assert listing is not None, "inspect view did not answer"
        paths = [Path(f["name"].removeprefix("file://").removeprefix("file:")) for f in listing["files"]]
        names = sorted(p.relative_to(experiment).parts[0] for p in paths)
        assert names == sorted(run for run, _ in CELLS)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- wandb ---------------------------------------------------------------------------------------------
@pytest.fixture
def offline_run(experiment) -> Path:
    (recorded,) = sorted((FIXTURES / "wandb").glob("offline-run-*"))
    out_dir = experiment.parent / "scratch" / "ck-outputs" / EXP_NAME / "ck-out-up_output_only"
    dest = out_dir / "logs" / "wandb" / recorded.name
    shutil.copytree(recorded, dest)
    return dest


def test_wandb_sync_dry_run_finds_the_offline_runs(experiment, offline_run, capsys):
    assert cli_main(["wandb", "sync", str(experiment), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"1 offline W&B run(s) of {EXP_NAME}" in out
    assert "[1/1] up_output_only: " in out and f"sync {offline_run}" in out
    assert "dry run: 1 run(s) would be synced" in out


def test_wandb_sync_without_runs_is_a_user_error(experiment, capsys):
    assert cli_main(["wandb", "sync", str(experiment)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no offline W&B runs" in err[0]


@pytest.mark.slow
def test_wandb_sync_reports_failures_without_waiting_on_a_prompt(experiment, offline_run, tmp_path, monkeypatch,
                                                                 capsys):
    """The real `wandb sync`, with no credentials: a clear failure, not a login prompt; then an
    unreachable server: the per-run timeout ends it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc credentials
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # wandb's debug-cli log goes to the temp dir
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert cli_main(["wandb", "sync", str(experiment)]) == 1
    out = capsys.readouterr().out
    assert "[1/1] up_output_only: syncing offline-run-" in out
    assert "FAILED (exit 1): Error: No API key configured" in out
    assert "0 synced, 1 failed, 0 skipped" in out
    assert time.monotonic() - started < 120

    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert cli_main(["wandb", "sync", str(experiment), "--timeout", "8"]) == 1
    assert "FAILED (exit 124): timed out after 8s" in capsys.readouterr().out

"""`cruijff-kit losses`: parsing real torchtune DiskLogger files (recorded from a real tiny training run
with cruijff_kit's recipe, see tests/fixtures/summarize/make_fixtures.py) and exporting them."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from cruijff_kit.cli import main as cli_main
from cruijff_kit.errors import UserError
from cruijff_kit.workers.torchtune.losses import LossCurve, parse_log_text, read_losses, resolve_output_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "summarize"
OUTPUTS = FIXTURES / "outputs"
RUN = "pp_output_only"


def real_log() -> Path:
    logs = sorted((OUTPUTS / f"ck-out-{RUN}" / "logs").glob("log_*.txt"))
    assert len(logs) == 1, logs
    return logs[0]


def recipe_record() -> dict:
    """What the recipe itself recorded about the same run (an independent source of truth)."""
    return json.loads((OUTPUTS / f"ck-out-{RUN}" / "training_summary.json").read_text())


@pytest.fixture
def output_dir(tmp_path) -> Path:
    out = tmp_path / "ck-out-run"
    shutil.copytree(OUTPUTS / f"ck-out-{RUN}", out)
    return out


def test_parse_real_disklogger_file_train_and_val():
    steps = parse_log_text(real_log().read_text())
    record = recipe_record()
    assert sorted(steps) == list(range(1, record["steps"] + 1))
    assert all({"loss", "lr", "tokens_per_second_per_gpu"} <= set(v) for v in steps.values())
    val = {s: v["val_loss"] for s, v in steps.items() if "val_loss" in v}
    # the recipe's own record of every validation pass: same steps, same values
    assert val == {v["step"]: pytest.approx(v["val_loss"]) for v in record["val_losses"]}
    assert steps[record["steps"]]["loss"] == pytest.approx(record["final_train_loss"])


def test_read_losses_summary_matches_the_recipe_record(output_dir):
    curve = read_losses(output_dir)
    record = recipe_record()
    s = curve.summary()
    assert s["steps"] == record["steps"]
    assert s["final_train_loss"] == pytest.approx(record["final_train_loss"])
    assert s["best_train_loss"] == pytest.approx(record["best_train_loss"])
    assert s["final_val_loss"] == pytest.approx(record["final_val_loss"])
    assert (s["best_val_step"], s["best_val_loss"]) == (record["best_val_step"], pytest.approx(record["best_val_loss"]))
    assert s["best_train_loss"] == min(v for _, v in curve.train)
    assert len(curve.val) == len(record["val_losses"]) >= 2
    assert curve.files == [output_dir / "logs" / real_log().name]


@pytest.mark.slow
def test_real_torchtune_disklogger_output_parses(tmp_path):
    """Write with torchtune's DiskLogger itself (log_dict and the single-metric log) and read it back."""
    from torchtune.training.metric_logging import DiskLogger

    logger = DiskLogger(log_dir=str(tmp_path / "logs"))
    logger.log_dict({"loss": 2.5, "lr": 3e-4, "tokens_per_second_per_gpu": 812.25}, step=1)
    logger.log_dict({"loss": 2.25, "lr": 2e-4}, step=2)
    logger.log("val_loss", 2.75, step=2)
    logger.close()
    curve = read_losses(tmp_path)
    assert curve.train == [(1, 2.5), (2, 2.25)]
    assert curve.val == [(2, 2.75)]
    assert curve.steps[1]["lr"] == pytest.approx(3e-4)


def test_resumed_job_files_merge_and_a_fresh_start_replaces(output_dir):
    log = output_dir / "logs" / real_log().name
    lines = log.read_text().splitlines(keepends=True)
    first = [ln for ln in lines if int(ln.split()[1]) <= 25]
    log.unlink()
    (output_dir / "logs" / "log_100.txt").write_text("".join(first))
    (output_dir / "logs" / "log_200.txt").write_text("".join(ln for ln in lines if ln not in first))
    merged = read_losses(output_dir)
    assert merged.steps == parse_log_text("".join(lines))
    assert [p.name for p in merged.files] == ["log_100.txt", "log_200.txt"]
    # a later file starting at step 1 is a fresh start: the older attempt is dropped
    (output_dir / "logs" / "log_300.txt").write_text("Step 1 | loss:9.5 lr:0.01 \nStep 2 | loss:9.0 lr:0.01 \n")
    fresh = read_losses(output_dir)
    assert fresh.train == [(1, 9.5), (2, 9.0)] and fresh.val == []
    assert [p.name for p in fresh.files] == ["log_300.txt"]


def test_overfitting_detected_only_when_val_loss_rises_at_the_end(output_dir):
    curve = read_losses(output_dir)
    best = LossCurve.best(curve.val)
    assert curve.val[-1] == best and curve.overfitting() == ""  # the real run improved to the end
    last = max(curve.steps)
    with open(output_dir / "logs" / real_log().name, "a") as fh:
        fh.write(f"Step {last + 10} | val_loss:{best[1] * 1.5} \n")
    finding = read_losses(output_dir).overfitting()
    assert f"best, step {best[0]}" in finding and f"last, step {last + 10}" in finding


def test_cli_prints_and_exports_csv_and_json_from_a_run_dir(output_dir, tmp_path, capsys):
    run_dir = tmp_path / "exp" / RUN
    run_dir.mkdir(parents=True)
    (run_dir / "finetune.yaml").write_text(f"output_dir: {output_dir}\nepochs: 2\n")
    assert resolve_output_dir(run_dir) == output_dir
    csv_path, json_path = tmp_path / "l.csv", tmp_path / "l.json"
    assert cli_main(["losses", str(run_dir), "--csv", str(csv_path), "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    record = recipe_record()
    assert f"final {record['final_train_loss']:.4f}" in out
    assert f"best {record['best_val_loss']:.4f} (step {record['best_val_step']})" in out

    with open(csv_path, newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["step", "loss", "val_loss", "lr"]
    body = table[1:]
    assert [int(r[0]) for r in body] == list(range(1, record["steps"] + 1))
    val_rows = {int(r[0]): float(r[2]) for r in body if r[2]}
    assert val_rows == {v["step"]: pytest.approx(v["val_loss"]) for v in record["val_losses"]}
    assert float(body[-1][1]) == pytest.approx(record["final_train_loss"])

    data = json.loads(json_path.read_text())
    assert data["summary"]["best_val_step"] == record["best_val_step"]
    assert len(data["steps"]) == record["steps"] and data["overfitting"] == ""
    assert data["steps"][0]["val_loss"] is None


def test_output_dir_logs_dir_and_relative_config_are_accepted(output_dir, tmp_path):
    assert resolve_output_dir(output_dir) == output_dir
    assert resolve_output_dir(output_dir / "logs") == output_dir
    run_dir = output_dir.parent / "run"
    run_dir.mkdir()
    (run_dir / "finetune.yaml").write_text(f"output_dir: ../{output_dir.name}\n")
    assert resolve_output_dir(run_dir) == output_dir


def test_missing_logs_is_a_one_line_user_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["losses", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no training logs" in err[0] and "does not exist" in err[0]
    (tmp_path / "empty" / "logs").mkdir()
    (tmp_path / "empty" / "logs" / "log_1.txt").write_text("not a metric line\n")
    with pytest.raises(UserError, match="holds no `Step N"):
        read_losses(tmp_path / "empty")
    assert read_losses(tmp_path / "empty", required=False) is None
    assert cli_main(["losses", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "finetune.yaml").write_text("epochs: 1\n")
    assert cli_main(["losses", str(run_dir)]) == 2
    assert "finetune.yaml: output_dir: no usable output_dir" in capsys.readouterr().err

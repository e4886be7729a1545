"""Skill logs: the exact entry format, parse-back, and concurrent appends that never interleave."""
from __future__ import annotations

import multiprocessing
import re

import pytest

from cruijff_kit import logbook
from cruijff_kit.cli import main as cli_main
from cruijff_kit.errors import UserError

GOLDEN = """[2025-10-27 14:03:05] VERIFY_MODEL: Llama-3.2-1B-Instruct: ok
Command: ls /models/Llama-3.2-1B-Instruct
Result: config.json + 1 weight file(s), 2.47 GB
Explanation: the base weights the runs start from
Decision: proceed

"""


def test_golden_format(tmp_path):
    path = tmp_path / "design-experiment.log"
    logbook.append(path, logbook.Entry("VERIFY_MODEL", "Llama-3.2-1B-Instruct: ok",
                                       "ls /models/Llama-3.2-1B-Instruct", "config.json + 1 weight file(s), 2.47 GB",
                                       "the base weights the runs start from", {"Decision": "proceed"},
                                       timestamp="2025-10-27 14:03:05"))
    assert path.read_text() == GOLDEN
    [entry] = logbook.read(path)
    assert entry.action == "VERIFY_MODEL" and entry.extra == {"Decision": "proceed"}
    assert entry.result == "config.json + 1 weight file(s), 2.47 GB"


def test_multiline_values_are_folded(tmp_path):
    path = tmp_path / "x.log"
    logbook.log(path, "NOTE", "two\nlines", result="a\n\nb")
    text = path.read_text()
    assert text.count("\n\n") == 1 and "Result: a b" in text


def test_cli_log_appends(tmp_path, capsys):
    assert cli_main(["log", "DECIDE_NAMING", "chose names", "--dir", str(tmp_path), "--command", "none",
                     "--result", "cap_rank_2025-10-27", "--explanation", "task_factor_date",
                     "--reasoning", "house convention"]) == 0
    [entry] = logbook.read(tmp_path / "design-experiment.log")
    assert entry.extra["Reasoning"] == "house convention"
    assert re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", entry.timestamp)


def test_bad_action_rejected(tmp_path, capsys):
    with pytest.raises(UserError):
        logbook.log(tmp_path / "x.log", "verify model", "x")
    assert cli_main(["log", "lower", "x", "--dir", str(tmp_path)]) == 2
    assert "UPPER_SNAKE_CASE" in capsys.readouterr().err
    assert not (tmp_path / "design-experiment.log").exists()


def _writer(args):
    path, worker = args
    for i in range(200):
        logbook.log(path, "STATE_CHANGE", f"worker {worker} entry {i} " + "x" * 300,
                    command="c" * 500, result=f"{worker}-{i}", explanation="e" * 200)


def test_concurrent_appends_never_interleave(tmp_path):
    # spawn, not fork: a fork of a pytest process whose earlier tests started threads (torch) can deadlock
    path = tmp_path / "run-experiment.log"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_writer, [(path, w) for w in range(4)])
    entries = logbook.read(path)
    assert len(entries) == 800
    assert sorted(e.result for e in entries) == sorted(f"{w}-{i}" for w in range(4) for i in range(200))
    for e in entries:
        worker, i = e.result.split("-")
        assert e.description.startswith(f"worker {worker} entry {i} ")
        assert e.command == "c" * 500 and e.explanation == "e" * 200

"""`cruijff-kit prefs generate`: sampling from a real checkpoint (the tiny model), judging, pairing.

Fast tests cover the pairing rules, the judges (inspect-ai's scorers as evaluation uses them, and user
Python functions) and the one-line errors; the slow test samples for real with transformers and reads the
pairs back through the DPO dataset builder.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cruijff_kit.cli import main
from cruijff_kit.tools.prefs.pairs import Judge, PrefsError, make_pairs

pytest.register_assert_rewrite("conftest_dpo")  # it is also a plugin (pytest_plugins below)
from conftest_dpo import io_records, job_env, write_json  # noqa: E402

pytest_plugins = ["conftest_dpo"]  # fixtures: tiny_model, tt_tokenizer

HASH_SCORER = textwrap.dedent("""
    def score(completion, target):
        # deterministic and roughly half correct on random text: parity of the code points' sum
        return float(sum(map(ord, completion)) % 2 == 0)
""")


# -- pairing -----------------------------------------------------------------------------------------
def test_pairs_best_correct_vs_worst_incorrect():
    cands = [("a", 0.0), ("b", 1.0), ("c", 0.2), ("d", 0.9), ("b", 1.0)]
    pairs, reason = make_pairs(cands, threshold=0.5, reference=None, pairs_per_prompt=1)
    assert reason is None and len(pairs) == 1
    assert pairs[0] == {"chosen": "b", "rejected": "a", "chosen_score": 1.0, "rejected_score": 0.0,
                        "chosen_source": "sample"}
    pairs, _ = make_pairs(cands, threshold=0.5, reference=None, pairs_per_prompt=5)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("b", "a"), ("d", "c")]  # distinct texts only


@pytest.mark.parametrize("cands, reference, reason", [
    ([("a", 1.0), ("b", 1.0)], None, "all_correct"),
    ([("a", 0.0), ("b", 0.0)], None, "none_correct"),
    ([("x ", 0.0)], "x", "duplicate"),  # the reference equals the only (incorrect) sample
])
def test_pairs_skip_reasons(cands, reference, reason):
    assert make_pairs(cands, threshold=0.5, reference=reference, pairs_per_prompt=1) == ([], reason)


def test_reference_is_chosen_when_nothing_is_correct():
    pairs, reason = make_pairs([("12", 0.0), ("13", 0.0)], threshold=0.5, reference="47", pairs_per_prompt=1)
    assert reason is None
    assert pairs == [{"chosen": "47", "rejected": "12", "chosen_score": None, "rejected_score": 0.0,
                      "chosen_source": "reference"}]


# -- judges ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, completion, target, expected", [
    ({"name": "match", "params": {}}, "The answer is 47", "47", 1.0),
    ({"name": "match", "params": {"location": "exact"}}, "The answer is 47", "47", 0.0),
    ({"name": "includes", "params": {}}, "it is 47, surely", "47", 1.0),
    ({"name": "exact", "params": {}}, "47.", "47", 1.0),  # inspect normalises punctuation
    ({"name": "exact", "params": {}}, "47 apples", "47", 0.0),
    ({"name": "numeric", "params": {"tolerance": 0.5}}, "about 47.3", "47", 1.0),
    ({"name": "numeric", "params": {}}, "about 47.3", "47", 0.0),
    ({"name": "pattern", "params": {"pattern": r"ANSWER: (\d+)"}}, "ANSWER: 47", "47", 1.0),
    ({"name": "match", "params": {}}, "48", ["47", "48"], 1.0),
])
def test_inspect_scorers_judge_as_in_evaluation(spec, completion, target, expected):
    judge = Judge(spec)
    try:
        assert judge.score(completion, target) == expected
    finally:
        judge.close()


def test_python_scorer_from_file_and_module(tmp_path, monkeypatch):
    (tmp_path / "my_judge.py").write_text(HASH_SCORER + "\ndef bad(c, t):\n    return 'yes'\n")
    assert Judge(f"python:{tmp_path / 'my_judge.py'}:score").score("ab", "x") == float((97 + 98) % 2 == 0)
    monkeypatch.chdir(tmp_path)
    assert Judge("python:my_judge:score").score("b", "x") == 1.0
    with pytest.raises(PrefsError, match="returned 'yes', not a number"):
        Judge("python:my_judge:bad").score("b", "x")
    with pytest.raises(PrefsError, match="has no function 'nope'"):
        Judge("python:my_judge:nope")


# -- one-line errors, exit 2 ---------------------------------------------------------------------------
@pytest.fixture
def data_file(tmp_path):
    return write_json(tmp_path / "data.json", {"train": io_records(4, 0), "validation": io_records(2, 1)})


def _errors(capsys, *args):
    code = main(["prefs", "generate", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_missing_checkpoint(capsys, tmp_path, data_file):
    code, err = _errors(capsys, "--checkpoint", str(tmp_path / "nope"), "--dataset", str(data_file),
                        "--out", str(tmp_path / "p.json"))
    assert code == 2
    assert err == [f"cruijff-kit prefs generate: --checkpoint: {tmp_path / 'nope'} not found; "
                   "point --checkpoint at a model directory such as an epoch_N/ dir"]


def test_dataset_without_split_and_unknown_scorer(capsys, tiny_model, tmp_path, data_file):
    code, err = _errors(capsys, "--checkpoint", str(tiny_model), "--dataset", str(data_file), "--split", "test",
                        "--scorer", "mach", "--out", str(tmp_path / "p.json"))
    assert code == 2 and len(err) == 2, err
    assert err[0] == (f"cruijff-kit prefs generate: --split: {data_file} has no split 'test' "
                      "(splits: train, validation); use one of train, validation")
    assert err[1].startswith("cruijff-kit prefs generate: --scorer: unknown scorer 'mach'; did you mean match? "
                             "known scorers: match, includes")
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("args, line", [
    (["--scorer", "numeric", "--scorer-param", "tolerance=-1"],
     "--scorer-param tolerance: -1 is below 0; use tolerance >= 0"),
    (["--scorer", "match", "--scorer-param", "ignore_case=maybe"],
     "--scorer-param ignore_case: 'maybe' is not true/false; give ignore_case a bool value"),
    (["--scorer", "pattern"], "--scorer: scorer 'pattern' needs parameter 'pattern'; add params: {pattern: ...}"),
    (["--scorer", "python:no_such_module_xyz:score"],
     "--scorer: module 'no_such_module_xyz' cannot be imported (not on sys.path / the current directory); "
     "write python:module:function (module importable) or python:path/to/file.py:function"),
    (["--k", "1"], "--k: 1 is not a whole number >= 2; give k >= 2"),
    (["--temperature", "0"], "--temperature: 0.0 must be > 0 (sampling); use e.g. 0.8; k greedy samples would "
                             "all be the same"),
])
def test_bad_arguments_one_line_each(capsys, tiny_model, tmp_path, data_file, args, line):
    code, err = _errors(capsys, "--checkpoint", str(tiny_model), "--dataset", str(data_file),
                        "--out", str(tmp_path / "p.json"), *args)
    assert code == 2
    assert err == [f"cruijff-kit prefs generate: {line}"]


def test_subprocess_exit_code_and_no_traceback(tmp_path, data_file):
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit", "prefs", "generate", "--checkpoint",
                           str(tmp_path / "missing"), "--dataset", str(tmp_path / "nodata.json"),
                           "--out", str(tmp_path / "p.json")], capture_output=True, text=True, env=job_env())
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr
    assert lines[0].endswith(f"--dataset: {tmp_path / 'nodata.json'} not found; give the path of a JSON data file")
    assert "--checkpoint:" in lines[1]


def test_dry_run_writes_nothing(capsys, tiny_model, tmp_path, data_file):
    code = main(["prefs", "generate", "--checkpoint", str(tiny_model), "--dataset", str(data_file),
                 "--out", str(tmp_path / "p.json"), "--dry-run", "--limit", "2"])
    assert code == 0 and "would sample 4 x first 2 record(s)" in capsys.readouterr().out
    assert not (tmp_path / "p.json").exists()


# -- for real ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_pairs_from_the_tiny_model(capsys, tiny_model, tmp_path, data_file, monkeypatch, tt_tokenizer):
    import time

    from cruijff_kit.tools.torchtune.preference import preference_dataset

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    (tmp_path / "judge.py").write_text(HASH_SCORER)
    data = write_json(tmp_path / "six.json", {"train": io_records(6, 5), "validation": io_records(3, 6)})
    out = tmp_path / "prefs" / "prefs.json"
    common = ["prefs", "generate", "--checkpoint", str(tiny_model), "--dataset", str(data), "--k", "4",
              "--max-tokens", "4", "--seed", "3", "--temperature", "2.0", "--out", str(out)]  # random weights: T 0.8 repeats one token
    started = time.monotonic()
    assert main([*common, "--scorer", f"python:{tmp_path / 'judge.py'}:score"]) == 0
    seconds = time.monotonic() - started
    printed = capsys.readouterr().out
    assert "prefs: 6/6 prompts" in printed and "prompts 6, pairs" in printed

    pairs = json.loads(out.read_text())["train"]
    report = json.loads((tmp_path / "prefs" / "prefs.json.report.json").read_text())
    print(f"prefs: {seconds:.1f}s, report {json.dumps({k: report[k] for k in ('prompts', 'pairs', 'skipped')})}",
          file=sys.stderr)
    judge = Judge(f"python:{tmp_path / 'judge.py'}:score")
    assert pairs, "no pairs from 6 prompts x 4 samples"
    for p in pairs:
        assert judge.score(p["chosen"], p["target"]) == 1.0 == p["chosen_score"]
        assert judge.score(p["rejected"], p["target"]) == 0.0 == p["rejected_score"]
        assert p["chosen_source"] == "sample" and p["prompt"] == io_records(6, 5)[p["index"]]["input"]
    assert report["prompts"] == 6 and report["pairs"] == len(pairs)
    assert report["prompts_with_pairs"] + sum(report["skipped"].values()) == 6
    assert set(report["skipped"]) == {"all_correct", "none_correct", "duplicate"}
    assert report["candidates"] == 24 and report["settings"]["dataset_type"] == "chat_completion"
    assert {s["index"] for s in report["skipped_prompts"]}.isdisjoint({p["index"] for p in pairs})

    # the pairs are what the DPO dataset reads
    ds = preference_dataset(tt_tokenizer, source=str(out), split="train")
    assert len(ds) == len(pairs) and ds[0]["chosen_input_ids"] != ds[0]["rejected_input_ids"]

    # the validation split into the same file (train is kept), judged by inspect's match scorer with the
    # reference as the fallback chosen response
    assert main([*common, "--split", "validation", "--use-reference", "--scorer", "match"]) == 0
    both = json.loads(out.read_text())
    assert both["train"] == pairs and len(both["validation"]) == 3  # random text never matches: all reference
    assert all(p["chosen"] == p["target"] and p["chosen_source"] == "reference" for p in both["validation"])
    report = json.loads((tmp_path / "prefs" / "prefs.json.report.json").read_text())
    assert report["split"] == "validation" and report["chosen_from_reference"] == 3
    assert set(report["splits"]) == {"train", "validation"} and report["splits"]["train"]["pairs"] == len(pairs)

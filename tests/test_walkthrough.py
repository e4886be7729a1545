"""A staged design through the skills: examples/sft_then_dpo driven by the exact CLI calls the skills show.

Each step names a skill (or agent) file and the call it shows there; the test takes that call's text from the
file, substitutes the placeholders and runs it, in order: ck-setup builds the tiny model; scaffold-experiment
validates and scaffolds with the `tiny` profile; run-experiment previews (status, run --dry-run, estimate),
records the yes, and runs ONE `cruijff-kit run` that drives every stage and gate (verify -> sft -> prefs ->
dpo); the observer agents read status and losses; summarize-experiment compares the stages. Real training
on the locally built tiny model with the local executor.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_skills import AGENTS, SKILLS, block_commands, cli_call, fenced_blocks, placeholders, split_commands, \
    substitute

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sft_then_dpo"

# (file, verb, the words its arguments must start with or contain) in the order a session runs them
WALK = [
    (SKILLS / "ck-setup" / "SKILL.md", "models", ["make-tiny"]),
    (SKILLS / "scaffold-experiment" / "SKILL.md", "validate", ["--profile", "--json"]),
    (SKILLS / "scaffold-experiment" / "SKILL.md", "scaffold", ["--profile"]),
    (SKILLS / "run-experiment" / "SKILL.md", "status", ["!--json"]),
    (SKILLS / "run-experiment" / "SKILL.md", "run", ["--dry-run"]),
    (SKILLS / "run-experiment" / "SKILL.md", "estimate", ["--no-log"]),
    (SKILLS / "run-experiment" / "SKILL.md", "log", ["RUN_PLAN"]),
    (SKILLS / "run-experiment" / "SKILL.md", "run", ["!--dry-run"]),
    (AGENTS / "run-torchtune.md", "status", ["--json"]),
    (AGENTS / "run-torchtune.md", "losses", ["--quiet"]),
    (AGENTS / "run-inspect.md", "status", ["--json"]),
    (SKILLS / "check-experiment" / "SKILL.md", "status", ["!--json"]),
    (SKILLS / "run-experiment" / "SKILL.md", "log", ["COMPLETE"]),
    (SKILLS / "summarize-experiment" / "SKILL.md", "summarize", []),
]


def shown_call(path: Path, verb: str, words: list[str]) -> str:
    """The one shell line of PATH calling `cruijff-kit VERB` whose arguments have WORDS (`!w`: lack w)."""
    found = []
    for block in fenced_blocks(path):
        for _, line in block_commands(block):
            for tokens in split_commands(line):
                if tokens[:2] != ["cruijff-kit", verb]:
                    continue
                args = tokens[2:]
                if all((w[1:] not in args) if w.startswith("!") else (w in args) for w in words):
                    found.append(line)
    assert found, f"{path.name} shows no `cruijff-kit {verb}` with {words}"
    return found[0]


def test_walk_steps_are_shown_by_the_skills():
    """Cheap: every step of the walk is a call the skills show (the slow test runs them)."""
    for path, verb, words in WALK:
        shown_call(path, verb, words)


@pytest.mark.slow
def test_staged_design_through_the_skills(scratch, tmp_path):
    src = tmp_path / "src" / "sft_then_dpo"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("answer42_prefs*", "__pycache__"))
    exp_dir = scratch / "ck-experiments" / "sft_then_dpo"
    values = {**placeholders(), "design_file": str(src / "experiment_summary.yaml"), "experiment_dir": str(exp_dir),
              "experiment_name": "sft_then_dpo", "models_dir": str(scratch / "models"), "profile": "tiny",
              "scratch_dir": str(scratch), "executor": "local"}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    transcript, outputs = [], {}
    start = time.perf_counter()
    for path, verb, words in WALK:
        line = shown_call(path, verb, words)
        runs = ["sft", "dpo"] if verb == "losses" else [None]
        for run in runs:
            text, unknown = substitute(line, {**values, "run_dir": str(exp_dir / (run or "sft")), "run_name": run or ""})
            assert not unknown, unknown
            (tokens,) = split_commands(text)
            call = cli_call(tokens)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "cruijff_kit", call[0], *call[1]], env=env,
                                  capture_output=True, text=True, timeout=1800)
            transcript.append(f"[{time.perf_counter() - t0:6.1f}s] {path.name}: {text[:110]}  -> {proc.returncode}")
            assert proc.returncode == 0, f"{path.name}: `{text}`\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            outputs.setdefault((verb, tuple(words)), []).append(proc.stdout)
            if verb == "run" and "--dry-run" in words:  # the preview submitted nothing
                state = exp_dir / ".ck" / "state.json"
                assert not state.exists() or not any(
                    j.get("native_id") for j in json.loads(state.read_text()).get("jobs", {}).values())
    print(f"walkthrough wall time {time.perf_counter() - start:.1f}s\n" + "\n".join(transcript))

    from cruijff_kit import logbook

    # the estimate showed GPU-hours before anything ran; the yes was logged before the first submission
    assert "GPU" in outputs[("estimate", ("--no-log",))][0]
    run_log = [e.action for e in logbook.read(exp_dir / "run-experiment.log")]
    first_submit = min(i for i, a in enumerate(run_log) if a.startswith("SUBMIT"))
    assert run_log.index("RUN_PLAN") < first_submit, run_log
    # one run drove every stage: the gate passed and every job completed
    assert [a for a in run_log if a.startswith("GATE_")] == ["GATE_PASSED"], run_log
    status = json.loads(outputs[("status", ("--json",))][-1])
    assert status["done"] and status["counts"]["completed"] == len(status["jobs"]) == 6, status["counts"]
    # the observers read the losses with the CLI: a final train loss per trained run
    for out in outputs[("losses", ("--quiet",))]:
        assert "train loss: final" in out, out
    # summarize compared the stages base -> SFT -> DPO
    summary = json.loads((exp_dir / "analysis" / "summary.json").read_text())
    table = next(t for t in summary["stages"] if t["metric"] == "match.accuracy")
    rows = {r["stage"]: r for r in table["rows"]}
    assert [r["stage"] for r in table["rows"] if r["stage"] in ("verify", "sft", "dpo")] == ["verify", "sft", "dpo"]
    assert rows["verify"]["best"] <= 0.3 < rows["sft"]["best"], rows  # the gate's reason, then SFT learned it
    assert "COMPLETE" in run_log

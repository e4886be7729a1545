"""Skill evals: skills/<name>/evals.yaml lists user requests with the calls a correct session makes.

The conversation itself cannot run here; what can be checked is checked: every call parses with the real CLI
parser; every call is one the skill shows (verb and flags); the permission each call gets from
.claude/settings.json fits its place (nothing that spends before the researcher's yes, nothing written to the
experiment directory before the design is approved, nothing that spends in the read-only skills).
"""
from __future__ import annotations

import shlex

import pytest
import yaml

from test_plugin import decide, expected
from test_skills import SKILLS, cli_call, cli_commands, parse_cli, placeholders, skill_dirs, substitute

SHARED = SKILLS / "shared"
READ_ONLY_SKILLS = {"check-experiment", "summarize-experiment", "ck-setup", "create-inspect-task",
                    "scaffold-experiment"}


def evals(skill) -> dict:
    path = skill / "evals.yaml"
    assert path.is_file(), f"skills/{skill.name}/evals.yaml is missing"
    data = yaml.safe_load(path.read_text())
    assert data.get("skill") == skill.name, f"{path}: skill must be '{skill.name}'"
    assert data.get("cases"), f"{path}: no cases"
    for case in data["cases"]:
        assert case.get("request") and case.get("calls"), f"{path}: every case has a request and calls"
    return data


def tokens_of(call: str) -> list[str]:
    text, unknown = substitute(call, placeholders())
    assert not unknown, f"`{call}`: unknown placeholders {unknown}"
    return shlex.split(text)


def shown_flags(skill) -> dict[str, set[str]]:
    """verb -> every --flag (and sub-command) the skill's files and the shared conventions show for it."""
    out: dict[str, set[str]] = {}
    for path in [*skill.glob("*.md"), *SHARED.glob("*.md")]:
        for _, tokens, _ in cli_commands(path):
            call = cli_call(tokens) if tokens[0] != "__unknown_placeholder__" else None
            if call:
                out.setdefault(call[0], set()).update(a for a in call[1] if a.startswith("--") or a.isalpha())
    return out


@pytest.mark.parametrize("skill", skill_dirs(), ids=lambda p: p.name)
def test_eval_calls_parse_and_are_shown_by_the_skill(skill):
    data, shown = evals(skill), shown_flags(skill)
    problems = []
    for case in data["cases"]:
        for call in case["calls"]:
            tokens = tokens_of(call)
            cli = cli_call(tokens)
            if cli is None:  # a read-only shell command (command -v, sinfo, squeue, sacct)
                if decide(shlex.join(tokens)) != "allow":
                    problems.append(f"{case['request']!r}: `{call}` is not an allowed read-only command")
                continue
            reason = parse_cli(*cli)
            if reason:
                problems.append(f"{case['request']!r}: `{call}`: {reason}")
                continue
            verb, args = cli
            if verb not in shown:
                problems.append(f"{case['request']!r}: `{call}`: skills/{skill.name} never shows `cruijff-kit {verb}`")
                continue
            extra = {a for a in args if a.startswith("--")} - shown[verb]
            if extra:
                problems.append(f"{case['request']!r}: `{call}`: skills/{skill.name} never shows {sorted(extra)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("skill", skill_dirs(), ids=lambda p: p.name)
def test_eval_calls_respect_the_yes(skill):
    """Before the case's approval point every call runs unasked and writes nothing the design step forbids."""
    problems = []
    for case in evals(skill)["cases"]:
        calls = case["calls"]
        cut = calls.index(case["after_approval_from"]) if case.get("after_approval_from") else len(calls)
        seen: list[tuple[str, list[str]]] = []
        for i, call in enumerate(calls):
            tokens = tokens_of(call)
            cli = cli_call(tokens)
            if cli is None:
                continue
            verb, args = cli
            spends = expected(verb, args) != "allow"
            if spends and (i < cut or skill.name in READ_ONLY_SKILLS):
                problems.append(f"{case['request']!r}: `{call}` spends before the researcher's yes")
            if spends and verb in ("run", "resubmit"):
                if (verb, True) not in [(v, a[:1] == ["--dry-run"]) for v, a in seen]:
                    problems.append(f"{case['request']!r}: `{call}` without its --dry-run preview first")
                if verb == "run" and "estimate" not in [v for v, _ in seen]:
                    problems.append(f"{case['request']!r}: `{call}` without the estimate (GPU-hours, cost) first")
            if skill.name == "design-experiment" and i < cut:
                writes = (verb == "log" or [verb, *args[:1]] == ["design", "save"]
                          or (verb in ("estimate",) and "--no-log" not in args)
                          or ([verb, *args[:1]] == ["design", "verify"] and "--no-log" not in args)
                          or ([verb, *args[:1]] == ["design", "summary"] and "--dry-run" not in args))
                if writes and case.get("after_approval_from"):
                    problems.append(f"{case['request']!r}: `{call}` writes to the experiment dir before approval")
            seen.append((verb, args))
    assert not problems, "\n".join(problems)


def test_every_skill_has_evals():
    assert {p.name for p in skill_dirs()} == {p.parent.name for p in SKILLS.glob("*/evals.yaml")}

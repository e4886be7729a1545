"""Judging sampled completions and pairing them: the half of ``prefs generate`` that needs no model.

``Judge`` scores a completion against a record's target (inspect-ai's scorers, as evaluation uses them, or
a ``python:`` function); ``make_pairs`` turns one prompt's scored completions into chosen/rejected pairs
or a skip reason; ``write_pairs`` writes the pairs file (other splits kept) and its ``.report.json``.
``generate`` (the sampling half) drives them. Only the standard library at import; inspect-ai inside Judge.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SKIP_REASONS = ("all_correct", "none_correct", "duplicate")
REPORT_SUFFIX = ".report.json"


class PrefsError(Exception):
    """A problem with the inputs: ``key`` names the argument, ``hint`` the fix (one line, exit 2)."""

    def __init__(self, key: str, message: str, hint: str = ""):
        super().__init__(message)
        self.key, self.message, self.hint = key, message, hint

    def line(self) -> str:
        return f"{self.key}: {self.message}" + (f"; {self.hint}" if self.hint else "")


def report_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + REPORT_SUFFIX)


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- scoring ---------------------------------------------------------------------------------------
def parse_python_scorer(spec: str) -> tuple[str, str]:
    """``python:module:function`` or ``python:path/file.py:function`` -> (module or path, function)."""
    body = spec[len("python:"):]
    target, sep, function = body.rpartition(":")
    if not sep or not target or not function.isidentifier():
        raise PrefsError("scorer", f"{spec!r} is not python:module:function",
                         "write e.g. python:my_scorers:score or python:scorers.py:score")
    return target, function


def python_scorer_problem(spec: str) -> str | None:
    try:
        target, _ = parse_python_scorer(spec)
    except PrefsError as exc:
        return exc.message
    if target.endswith(".py"):
        return None if Path(target).is_file() else f"scorer file {target} not found"
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    return None if found else f"module {target!r} cannot be imported (not on sys.path / the current directory)"


def load_python_scorer(spec: str) -> Callable[[str, str], Any]:
    target, function = parse_python_scorer(spec)
    if target.endswith(".py"):
        path = Path(target).resolve()
        mod_spec = importlib.util.spec_from_file_location(f"ck_prefs_scorer_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.path.insert(0, str(path.parent))
        mod_spec.loader.exec_module(module)
    else:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(target)
    fn = getattr(module, function, None)
    if not callable(fn):
        raise PrefsError("scorer", f"{target} has no function {function!r}", "check the name after the last ':'")
    return fn


class Judge:
    """Scores a completion against a target: an inspect-ai scorer (as in evaluation) or a Python function."""

    def __init__(self, scorer: dict | str):
        self.label = scorer if isinstance(scorer, str) else scorer["name"]
        if isinstance(scorer, str) and scorer.startswith("python:"):
            self._fn = load_python_scorer(scorer)
            self._inspect = None
        else:
            import asyncio

            from cruijff_kit.tools.inspect.scorers import build_scorer

            try:
                self._inspect = build_scorer(scorer)
            except ValueError as exc:
                raise PrefsError("scorer", str(exc)) from None
            self._loop = asyncio.new_event_loop()

    def score(self, completion: str, target) -> float:
        if self._inspect is None:
            value = self._fn(completion, target if isinstance(target, str) else list(target))
            try:
                out = float(value)
            except (TypeError, ValueError):
                raise PrefsError("scorer", f"{self.label} returned {value!r}, not a number",
                                 "return a float (1.0 correct, 0.0 incorrect) or a bool") from None
            if math.isnan(out):
                raise PrefsError("scorer", f"{self.label} returned NaN", "return a float or a bool")
            return out
        from inspect_ai.model import ModelName, ModelOutput
        from inspect_ai.scorer import Target, value_to_float
        from inspect_ai.solver import TaskState

        tgt = Target(target)
        state = TaskState(model=ModelName("hf/local"), sample_id=0, epoch=1, input="", messages=[],
                          target=tgt, output=ModelOutput.from_content("hf/local", completion))
        result = self._loop.run_until_complete(self._inspect(state, tgt))
        return float(value_to_float()(result.value))

    def close(self) -> None:
        if self._inspect is not None:
            self._loop.close()


# -- pairing ---------------------------------------------------------------------------------------
def make_pairs(candidates: list[tuple[str, float]], *, threshold: float, reference: str | None,
               pairs_per_prompt: int) -> tuple[list[dict], str | None]:
    """(pairs, skip reason) for one prompt from its scored candidates [(text, score), ...].

    Distinct texts only; correct ones ordered best first, incorrect ones worst first (stable for ties).
    """
    def distinct(items):
        seen, out = set(), []
        for text, score in items:
            if text.strip() not in seen:
                seen.add(text.strip())
                out.append((text, score))
        return out

    order = list(enumerate(candidates))
    good = distinct([c for _, c in sorted((x for x in order if x[1][1] >= threshold), key=lambda x: (-x[1][1], x[0]))])
    bad = distinct([c for _, c in sorted((x for x in order if x[1][1] < threshold), key=lambda x: (x[1][1], x[0]))])
    source = "sample"
    if not bad:
        return [], "all_correct"
    if not good:
        if reference is None:
            return [], "none_correct"
        good, source = [(reference, None)], "reference"
    pairs = []
    for j in range(min(pairs_per_prompt, max(len(good), len(bad)))):
        (chosen, cs), (rejected, rs) = good[j % len(good)], bad[j % len(bad)]
        if chosen.strip() == rejected.strip():
            continue
        pairs.append({"chosen": chosen, "rejected": rejected, "chosen_score": cs, "rejected_score": rs,
                      "chosen_source": source})
    return pairs, (None if pairs else "duplicate")


def reference_text(target) -> str:
    return str(target[0]) if isinstance(target, list) and target else str(target)


# -- the pairs file and its report ------------------------------------------------------------------
def write_pairs(out_path: Path, split: str, pairs: list[dict], *, counts: dict, skipped: list[dict],
                settings: dict, seconds: float) -> dict:
    """Write `split`'s pairs into ``out_path`` (other splits kept) and the report next to it; return the report.

    ``counts`` are this split's numbers (prompts, pairs, skipped by reason, ...); the report holds them at
    the top level and under ``splits`` beside those of the other splits still in the file."""
    existing = _read_json(out_path)
    data = existing if isinstance(existing, dict) else {}
    data[split] = pairs
    _write_json_atomic(out_path, data)
    old_report = _read_json(report_path(out_path))
    splits = dict(old_report.get("splits", {})) if isinstance(old_report, dict) else {}
    splits = {s: v for s, v in splits.items() if s in data}
    splits[split] = counts
    report = {"out": str(out_path), "split": split, **counts, "skipped_prompts": skipped,
              "seconds": round(seconds, 3), "settings": settings, "splits": splits}
    _write_json_atomic(report_path(out_path), report)
    return report

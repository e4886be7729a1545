"""Scorer specs from the design (`evaluation.scorers: [{name, params}]`) -> inspect-ai scorers.

Known: inspect's `match`, `includes`, `exact`, `f1`, `pattern`, and our `numeric` (the first number
in the completion is correct when |x - target| <= tolerance). The CLI side validates names and
params against the plain-data table `SCORERS` in cruijff_kit/workers/inspect.py (no inspect import
there); tests keep that table and BUILDERS below in step.
"""
from __future__ import annotations

import inspect as pyinspect
import math
import re

from inspect_ai.scorer import (
    CORRECT, INCORRECT, Score, Scorer, Target, accuracy, exact, f1, includes, match, pattern, scorer, stderr,
)
from inspect_ai.solver import TaskState

# A number as people write answers: optional sign, digits, optional decimals and exponent.
# No thousands separators: "42,43,44" is three numbers, the first being 42.
NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def first_number(text: str) -> float | None:
    """The first number in `text`, or None when there is none."""
    m = NUMBER_RE.search(text or "")
    if not m:
        return None
    try:
        value = float(m.group(0))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@scorer(metrics=[accuracy(), stderr()])
def numeric(tolerance: float = 0.0) -> Scorer:
    """Correct when the first number in the completion is within `tolerance` of the target number.

    The target is parsed the same way (first number in it); with several targets any one may match.
    """
    if tolerance < 0:
        raise ValueError(f"numeric: tolerance must be >= 0, got {tolerance}")

    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        answer = first_number(completion)
        wanted = [v for v in (first_number(t) for t in target.target) if v is not None]
        if not wanted:
            return Score(value=INCORRECT, answer=completion,
                         explanation=f"target {target.text!r} holds no number")
        if answer is None:
            return Score(value=INCORRECT, answer=completion, explanation="no number in the completion")
        ok = any(abs(answer - w) <= tolerance for w in wanted)
        shown = f"{answer:g}"
        return Score(value=CORRECT if ok else INCORRECT, answer=shown,
                     explanation=f"{shown} vs target {', '.join(f'{w:g}' for w in wanted)} "
                                 f"(tolerance {tolerance:g})")

    return score


# name -> factory. Keep in step with cruijff_kit.workers.inspect.evaluator.SCORERS (a test checks both).
BUILDERS = {
    "match": match,
    "includes": includes,
    "exact": exact,
    "f1": f1,
    "pattern": pattern,
    "numeric": numeric,
}


def accepted_params(name: str) -> list[str]:
    """The keyword parameters the scorer factory `name` accepts (from its signature)."""
    return [p for p in pyinspect.signature(BUILDERS[name]).parameters if p != "answer_fn"]


def build_scorer(spec: dict | str) -> Scorer:
    """One scorer from `{"name": ..., "params": {...}}` (or just a name)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    name, params = spec.get("name"), dict(spec.get("params") or {})
    if name not in BUILDERS:
        raise ValueError(f"unknown scorer {name!r}; known scorers: {', '.join(BUILDERS)}")
    unknown = sorted(set(params) - set(accepted_params(name)))
    if unknown:
        raise ValueError(f"scorer {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
                         f"it accepts: {', '.join(accepted_params(name)) or 'none'}")
    return BUILDERS[name](**params)


def build_scorers(specs) -> list[Scorer]:
    """Every scorer of a list of specs, in order."""
    return [build_scorer(spec) for spec in specs]

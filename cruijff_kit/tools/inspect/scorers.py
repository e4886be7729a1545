"""Scorer specs from the design (`evaluation.scorers: [{name, params}]`) -> inspect-ai scorers.

Known: inspect's `match`, `includes`, `exact`, `f1`, `pattern`, and ours:

* `numeric`: the first number in the completion is correct when |x - target| <= tolerance;
* `calibration`: classification with the model's token probabilities (the eval requests logprobs and
  top_logprobs, see `generate_config`): correct when the most probable label is the target; metrics
  accuracy, stderr, ece, brier, auc; per-sample confidence in the score's metadata;
* `continuous`: the first number in the completion against a numeric target; the per-sample value is the
  absolute error (NaN when no number was parsed); metrics mae, rmse, r2, parse_rate.

The statistics are plain functions in calibration.py. The CLI side validates names and
params against the plain-data table `SCORERS` in cruijff_kit/workers/inspect/evaluator.py (no inspect import
there); tests keep that table and BUILDERS below in step.
"""
from __future__ import annotations

import inspect as pyinspect
import math
import re

from inspect_ai.scorer import (
    CORRECT, INCORRECT, Metric, SampleScore, Score, Scorer, Target, accuracy, exact, f1, includes, match, metric,
    pattern, scorer, stderr,
)
from inspect_ai.solver import TaskState

from cruijff_kit.tools.inspect import calibration as cal

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


# -- calibration: token probabilities of the answer ----------------------------------------------------
TOP_LOGPROBS = 20


def _points(scores: list[SampleScore]) -> tuple[list[float], list[float]]:
    meta = [s.score.metadata or {} for s in scores]
    kept = [m for m in meta if m.get("confidence") is not None]
    return [float(m["confidence"]) for m in kept], [float(m["correct"]) for m in kept]


@metric
def ece() -> Metric:
    """Expected calibration error over 10 equal-width confidence bins."""
    def compute(scores: list[SampleScore]) -> float:
        return cal.ece(*_points(scores))

    return compute


@metric
def brier() -> Metric:
    """Mean squared gap between the confidence in the chosen label and correctness."""
    def compute(scores: list[SampleScore]) -> float:
        return cal.brier(*_points(scores))

    return compute


@metric
def auc() -> Metric:
    """ROC AUC of p(positive) for target == positive when a positive label is set, else of the confidence
    for correctness; NaN when only one class occurs."""
    def compute(scores: list[SampleScore]) -> float:
        meta = [s.score.metadata or {} for s in scores]
        if meta and all(m.get("p_positive") is not None for m in meta):
            value = cal.auc([m["p_positive"] for m in meta], [float(m["is_positive"]) for m in meta])
        else:
            value = cal.auc(*_points(scores))
        return float("nan") if value is None else value

    return compute


def first_token_top(state: TaskState) -> list[tuple[str, float]]:
    """(token, logprob) alternatives at the first non-blank generated token; [] without logprobs."""
    choices = state.output.choices if state.output else []
    logprobs = choices[0].logprobs if choices else None
    for item in (logprobs.content if logprobs else []):
        if cal.token_text(item.token).strip():
            return [(t.token, t.logprob) for t in (item.top_logprobs or [])] or [(item.token, item.logprob)]
    return []


@scorer(metrics=[accuracy(), stderr(), ece(), brier(), auc()])
def calibration(labels: list | None = None, positive: str | None = None, top_logprobs: int = TOP_LOGPROBS) -> Scorer:
    """Classification scored from the token probabilities of the first answer token.

    labels: the classes (their first tokens must differ); default: the sample's targets and the first word
    of the completion. positive: for two-class tasks, the class whose probability AUC ranks.
    top_logprobs: how many alternatives the model returns per token (requested by run_cell).
    """
    if positive is not None and (not labels or positive not in labels):
        raise ValueError(f"calibration: positive {positive!r} must be one of labels {labels!r}")

    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        classes = [str(x) for x in labels] if labels else list(dict.fromkeys(
            [*target.target, *(completion.split()[:1])]))
        probs = cal.label_probs(first_token_top(state), classes)
        wanted = {t.strip().lower() for t in target.target}
        if not probs:
            has_logprobs = bool(state.output and state.output.choices and state.output.choices[0].logprobs)
            why = "no label among the top tokens" if has_logprobs else \
                "no token probabilities: evaluate with logprobs=True and top_logprobs=k (run_cell does)"
            return Score(value=INCORRECT, answer=completion.strip(), explanation=why,
                         metadata={"confidence": None, "correct": 0})
        predicted = max(probs, key=probs.get)
        correct = predicted.strip().lower() in wanted
        meta = {"confidence": probs[predicted], "correct": int(correct), "predicted": predicted, "probs": probs}
        if positive is not None:
            meta.update(p_positive=probs.get(positive, 0.0), is_positive=int(positive.strip().lower() in wanted))
        return Score(value=CORRECT if correct else INCORRECT, answer=predicted, metadata=meta,
                     explanation=f"p({predicted}) = {probs[predicted]:.3f}; target {target.text!r}")

    return score


# -- continuous: numbers against numeric targets -----------------------------------------------------
def _regression(scores: list[SampleScore]) -> dict:
    meta = [s.score.metadata or {} for s in scores]
    kept = [m for m in meta if m.get("target") is not None]
    return cal.regression([m.get("prediction") for m in kept], [m["target"] for m in kept])


def _regression_metric(key: str):
    def compute(scores: list[SampleScore]) -> float:
        value = _regression(scores)[key]
        return float("nan") if value is None else value

    return compute


@metric
def mae() -> Metric:
    """Mean absolute error over the parsed predictions."""
    return _regression_metric("mae")


@metric
def rmse() -> Metric:
    """Root mean squared error over the parsed predictions."""
    return _regression_metric("rmse")


@metric
def r2() -> Metric:
    """Coefficient of determination over the parsed predictions."""
    return _regression_metric("r2")


@metric
def parse_rate() -> Metric:
    """Share of samples whose completion held a number."""
    return _regression_metric("parse_rate")


@scorer(metrics=[mae(), rmse(), r2(), parse_rate()])
def continuous() -> Scorer:
    """The first number in the completion against the target number; value: the absolute error."""
    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        wanted = first_number(target.text)
        answer = first_number(completion)
        meta = {"prediction": answer, "target": wanted}
        if wanted is None:
            return Score(value=float("nan"), answer=completion, metadata={"prediction": answer, "target": None},
                         explanation=f"target {target.text!r} holds no number")
        if answer is None:
            return Score(value=float("nan"), answer=completion, metadata=meta,
                         explanation="no number in the completion")
        return Score(value=abs(answer - wanted), answer=f"{answer:g}", metadata=meta,
                     explanation=f"{answer:g} vs target {wanted:g}")

    return score


def generate_config(specs) -> dict:
    """GenerateConfig fields the scorers need: logprobs and top_logprobs for `calibration`."""
    top = [int((s.get("params") or {}).get("top_logprobs", TOP_LOGPROBS))
           for s in specs or [] if isinstance(s, dict) and s.get("name") == "calibration"]
    return {"logprobs": True, "top_logprobs": max(top)} if top else {}


# name -> factory. Keep in step with cruijff_kit.workers.inspect.evaluator.SCORERS (a test checks both).
BUILDERS = {
    "match": match,
    "includes": includes,
    "exact": exact,
    "f1": f1,
    "pattern": pattern,
    "numeric": numeric,
    "calibration": calibration,
    "continuous": continuous,
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

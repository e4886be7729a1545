"""Plain-Python calibration and regression statistics behind the `calibration` and `continuous` scorers.

No inspect-ai import: the scorers (scorers.py) wrap these as inspect metrics, summarize's reliability
diagram bins with `reliability_bins`, and tests check them against hand-computed values.

* `token_text`: a token as the provider spells it (hf: byte-level BPE, 'Ġyes') -> text (' yes').
* `label_probs`: from the top_logprobs at the first non-blank generated token, the probability of each
  candidate label (a top token that, stripped and lower-cased, is a non-empty prefix of exactly one label
  counts for that label), renormalised over the labels.
* `ece`: expected calibration error, equal-width confidence bins: sum over bins of |bin| / n x
  |accuracy(bin) - mean confidence(bin)|.
* `brier`: mean (confidence - correct)^2 (for two labels this equals the usual Brier score of p(positive)).
* `auc`: area under the ROC curve of `scores` for `labels` (1 = positive), ties counted half
  (Mann-Whitney); None when one class is absent.
* `regression`: MAE, RMSE and R^2 over parsed predictions, and the parse rate.
"""
from __future__ import annotations

import math

BINS = 10


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character -> byte (the GPT-2 byte-to-unicode table, inverted)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = dict(zip(printable, printable)), 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


BYTE_DECODER = _byte_decoder()


def token_text(token: str) -> str:
    """A logprob token as text: byte-level BPE ('Ġyes', 'ĊĊ') and SentencePiece ('▁yes') spellings decoded."""
    if "\u2581" in token:
        return token.replace("\u2581", " ")
    if token and all(ch in BYTE_DECODER for ch in token):
        return bytes(BYTE_DECODER[ch] for ch in token).decode("utf-8", errors="replace")
    return token


def label_probs(top_logprobs: list[tuple[str, float]], labels: list[str]) -> dict[str, float]:
    """{label: probability} renormalised over the labels; {} when no top token names a label."""
    mass = {label: 0.0 for label in labels}
    for token, logprob in top_logprobs:
        text = token_text(token).strip().lower()
        if not text:
            continue
        hits = [label for label in labels if label.strip().lower().startswith(text)]
        if len(hits) == 1:
            mass[hits[0]] += math.exp(logprob)
    total = sum(mass.values())
    return {label: p / total for label, p in mass.items()} if total > 0 else {}


def reliability_bins(confidences: list[float], correct: list[float], bins: int = BINS) -> list[dict]:
    """Per equal-width bin: {"low", "high", "count", "confidence", "accuracy"} (None means when empty)."""
    out = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidences) if (low <= c < high) or (b == bins - 1 and c == 1.0)]
        n = len(members)
        out.append({"low": low, "high": high, "count": n,
                    "confidence": sum(confidences[i] for i in members) / n if n else None,
                    "accuracy": sum(correct[i] for i in members) / n if n else None})
    return out


def ece(confidences: list[float], correct: list[float], bins: int = BINS) -> float:
    n = len(confidences)
    if n == 0:
        return 0.0
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
               for b in reliability_bins(confidences, correct, bins) if b["count"])


def brier(confidences: list[float], correct: list[float]) -> float:
    n = len(confidences)
    return sum((c - y) ** 2 for c, y in zip(confidences, correct)) / n if n else 0.0


def auc(scores: list[float], labels: list[float]) -> float | None:
    pos = [s for s, y in zip(scores, labels) if y >= 0.5]
    neg = [s for s, y in zip(scores, labels) if y < 0.5]
    if not pos or not neg:
        return None
    ordered = sorted(scores)
    rank: dict[float, float] = {}  # value -> average 1-based rank among all scores (ties share)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[i]:
            j += 1
        rank[ordered[i]] = (i + j) / 2 + 1
        i = j + 1
    u = sum(rank[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def regression(predictions: list[float | None], targets: list[float]) -> dict[str, float | None]:
    """{"mae", "rmse", "r2", "parse_rate"}; the error metrics over parsed predictions only."""
    pairs = [(p, t) for p, t in zip(predictions, targets) if p is not None]
    out: dict[str, float | None] = {"parse_rate": len(pairs) / len(targets) if targets else 0.0,
                                    "mae": None, "rmse": None, "r2": None}
    if not pairs:
        return out
    errors = [p - t for p, t in pairs]
    out["mae"] = sum(abs(e) for e in errors) / len(errors)
    out["rmse"] = math.sqrt(sum(e * e for e in errors) / len(errors))
    mean_t = sum(t for _, t in pairs) / len(pairs)
    total = sum((t - mean_t) ** 2 for _, t in pairs)
    out["r2"] = 1 - sum(e * e for e in errors) / total if total > 0 else None
    return out

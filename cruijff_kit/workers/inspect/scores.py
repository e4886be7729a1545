"""Reading scores out of inspect-ai logs (ground floor: the run engine's gates and `summarize` both use it).

An eval cell keeps its logs in `{cell}/logs/`; `cell_logs` lists them oldest first, `read_log` reads one
header-only (inspect-ai imported inside, so the CLI stays fast) and `log_metrics` flattens its scores to
`{"scorer.metric": value}`. `cell_scores` picks the newest successful log of a cell (else the newest).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def cell_logs(log_dir: Path) -> list[Path]:
    """inspect-ai logs of one cell, oldest first (.eval, and timestamped .json logs)."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    found = [p for p in log_dir.iterdir() if p.is_file() and (
        p.suffix == ".eval" or (p.suffix == ".json" and p.name[:4].isdigit()))]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def first_line(text) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def read_log(path: Path):
    """The log's header (no samples)."""
    from inspect_ai.log import read_eval_log

    return read_eval_log(str(path), header_only=True)


def log_metrics(log) -> dict[str, float]:
    """{"scorer.metric": value} of every numeric metric in a log header."""
    out: dict[str, float] = {}
    results = getattr(log, "results", None)
    for score in (results.scores if results is not None else None) or []:
        for name, metric in (score.metrics or {}).items():
            value = metric.value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{score.name}.{name}"] = float(value)
    return out


@dataclass
class CellScores:
    logs_found: int = 0
    path: Path | None = None  # the log used
    log: object = None  # its header
    status: str = "missing"  # success | error | cancelled | started | missing | unreadable
    error: str = ""
    metrics: dict = field(default_factory=dict)


def cell_scores(paths: list[Path]) -> CellScores:
    """Scores of one cell from its newest successful log (else its newest log); never raises on a bad log."""
    out = CellScores(logs_found=len(paths))
    headers = []
    for path in paths:
        try:
            headers.append((path, read_log(path)))
        except Exception as exc:  # noqa: BLE001 - a corrupt or half-written log is reported, not fatal
            out.error = f"{path.name}: {first_line(exc) or type(exc).__name__}"
    if not headers:
        out.status = "unreadable" if paths else "missing"
        return out
    ok = [h for h in headers if h[1].status == "success"]
    out.path, out.log = (ok or headers)[-1]
    out.status = str(out.log.status)
    if out.log.error is not None:
        out.error = first_line(out.log.error.message)
    out.metrics = log_metrics(out.log)
    return out

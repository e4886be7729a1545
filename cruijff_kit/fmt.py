"""Human-readable durations and timestamps (ground floor: run, status and summarize print them alike)."""
from __future__ import annotations


def fmt_seconds(seconds) -> str:
    """12.3s, 4m 05s, 2h 07m; '-' for None."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_time(stamp) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS'; '-' when missing."""
    return str(stamp).replace("T", " ") if stamp else "-"

"""Tables of the paired comparisons and replicate aggregates (stats.py computes them, this shapes them).

`comparison_tables` / `replicate_table` feed summary.md and the results block; `files` adds
analysis/comparisons.csv and analysis/replicates.csv (one row per comparison / per aggregate) when the
experiment has any.
"""
from __future__ import annotations

from cruijff_kit.render import render
from cruijff_kit.workers.torchtune.losses import csv_cell

COMPARISON_COLUMNS = ["task", "scorer", "kind", "a", "b", "n", "seeds_a", "seeds_b", "mean_a", "mean_b", "diff",
                      "ci_low", "ci_high", "test", "p", "p_holm", "significant", "comparisons_in_table"]
REPLICATE_COLUMNS = ["config", "task", "epoch", "metric", "seeds", "mean", "ci_low", "ci_high", "sd", "min", "max",
                     "runs"]


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    return "-" if value is None else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _md(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def comparison_tables(comparisons: list[dict]) -> list[dict]:
    """Per (task, scorer): {"task", "header", "rows"} with Δ = b - a, its bootstrap CI and the p-values."""
    tables: dict[tuple, list[dict]] = {}
    for row in comparisons:
        tables.setdefault((row["task"], row["scorer"]), []).append(row)
    out = []
    for (task, scorer), rows in tables.items():
        header = ["Comparison", "A", "B", "n", "Seeds A/B", "Mean A", "Mean B", "Δ (B − A)", "95% CI", "Test",
                  "p", "p (Holm)", ""]
        body = [[_md(r["kind"]), _md(r["a"]), _md(r["b"]), str(r["n"]), f"{r['seeds_a']}/{r['seeds_b']}",
                 _num(r["mean_a"]), _num(r["mean_b"]), f"{r['diff']:+.3f}",
                 f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", r["test"].replace("_", " "), _p(r["p"]),
                 _p(r["p_holm"]), "*" if r["significant"] else ""] for r in rows]
        out.append({"task": f"{task} ({scorer})", "header": header, "rows": body})
    return out


def replicate_table(replicates: list[dict]) -> dict | None:
    if not replicates:
        return None
    header = ["Configuration", "Task", "Epoch", "Metric", "Seeds", "Mean", "95% CI across seeds", "SD", "Min", "Max"]
    body = [[_md(r["config"]), _md(r["task"]), "base" if r["epoch"] is None else str(r["epoch"]),
             _md(r["metric"].replace(".", " ")), str(r["seeds"]), _num(r["mean"]),
             "-" if r["ci_low"] is None else f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", _num(r["sd"]),
             _num(r["min"]), _num(r["max"])] for r in replicates]
    return {"header": header, "rows": body}


def files(collected, analysis: str) -> dict[str, str]:
    """{relative path: text} of comparisons.csv and replicates.csv (only those with rows)."""
    out = {}
    if collected.comparisons:
        out[f"{analysis}/comparisons.csv"] = render(
            "summary/table.csv.j2", header=COMPARISON_COLUMNS,
            rows=[[csv_cell(r.get(k)) for k in COMPARISON_COLUMNS] for r in collected.comparisons])
    if collected.replicates:
        out[f"{analysis}/replicates.csv"] = render(
            "summary/table.csv.j2", header=REPLICATE_COLUMNS,
            rows=[[csv_cell(" ".join(r[k]) if k == "runs" else r.get(k)) for k in REPLICATE_COLUMNS]
                  for r in collected.replicates])
    return out

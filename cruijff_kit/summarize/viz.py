"""The interactive score pages under `{exp}/analysis/`.

* `scores_viz.html` (always, with the figures): the inspect-viz comparison (bars per cell, one panel per task
  and metric, the value on hover) as one offline file: the data inline as JSON and a short inline script
  that draws it as SVG. Nothing is fetched, so it renders on a cluster node without internet.
* `scores_inspect_viz.html` (only with `summarize --inspect-viz`): the same chart built by inspect-viz
  itself. The installed inspect_viz (0.4.2) inlines only its 95 KB widget glue (`_widgets/mosaic.js`);
  that script imports Mosaic, Observable Plot (through mosaic-spec) and DuckDB-WASM from cdn.jsdelivr.net,
  and DuckDB runs a ~35 MB WebAssembly build in a Worker. Chromium refuses `fetch()` and Workers from
  `file://` pages, so writing those files beside the page would not help; inlining them would make each
  page ~50 MB. That page is therefore opt-in and blank offline.

inspect-viz and pandas are imported inside the function that uses them.
"""
from __future__ import annotations

import json
from pathlib import Path

from cruijff_kit.files import atomic_write
from cruijff_kit.render import render
from cruijff_kit.summarize.plots import WIDTH_PX, cell_label, metric_label, score_groups

OFFLINE_PAGE = "scores_viz.html"
INSPECT_VIZ_PAGE = "scores_inspect_viz.html"
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]


def records(collected) -> list[dict]:
    """One row per (task, cell, metric) with a score: the data both pages draw."""
    return [{"task": c.task, "cell": cell_label(c), "metric": metric_label(m), "score": float(c.metrics[m])}
            for _, _, cells, metrics in score_groups(collected) for c in cells for m in metrics
            if m in c.metrics and c.metrics[m] == c.metrics[m]]


def planned(collected, *, inspect_viz: bool = False) -> list[str]:
    if not records(collected):
        return []
    return [OFFLINE_PAGE] + ([INSPECT_VIZ_PAGE] if inspect_viz else [])


def _script_json(value) -> str:
    """JSON safe inside a <script> element: no '</script>' or '<!--' can end or bend it."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def offline_page(collected, path: Path) -> Path | None:
    rows = records(collected)
    if not rows:
        return None
    spec = {"records": rows, "palette": PALETTE, "width": WIDTH_PX,
            "y_max": max(1.0, max(r["score"] for r in rows))}
    return atomic_write(path, render("summary/scores_viz.html.j2", title=f"{collected.exp.name}: eval scores",
                                     generated=collected.generated, data=_script_json(spec)))


def inspect_viz_page(collected, path: Path) -> Path | None:
    """The chart built by inspect-viz (needs internet when opened); None if inspect-viz is unavailable."""
    try:
        import pandas as pd
        from inspect_viz import Data
        from inspect_viz.mark import bar_y
        from inspect_viz.plot import plot, to_html
    except ImportError:
        return None
    rows = records(collected)
    if not rows:
        return None
    data = Data.from_dataframe(pd.DataFrame.from_records(rows))
    component = plot(bar_y(data, x="cell", y="score", fill="metric", fx="metric", fy="task", tip=True),
                     title=f"{collected.exp.name}: eval scores", width=WIDTH_PX, height=800,
                     x_tick_rotate=-30, y_domain=[0, 1] if max(r["score"] for r in rows) <= 1 else None)
    return atomic_write(path, to_html(component))


def write(collected, out_dir: Path, *, inspect_viz: bool = False) -> list[Path]:
    pages = [offline_page(collected, out_dir / OFFLINE_PAGE)]
    if inspect_viz:
        pages.append(inspect_viz_page(collected, out_dir / INSPECT_VIZ_PAGE))
    return [p for p in pages if p]

"""Tables and reports from collected results: analysis/summary.{csv,json,md}, analysis/scores.html and
the results block of experiment_summary.md (between the ck:results markers; the rest is untouched).

Everything is rendered from templates/summary/*.j2; report.py only shapes the numbers into rows.
"""
from __future__ import annotations

import math
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.files import atomic_write, replace_block
from cruijff_kit.fmt import fmt_seconds
from cruijff_kit.workers.torchtune.losses import csv_cell
from cruijff_kit.render import RESULTS_BLOCK, render
from cruijff_kit.summarize import comparisons as comparisons_mod
from cruijff_kit.summarize.collect import Collected, columns, rows
from cruijff_kit.summarize.plots import cell_label, figure_title, metric_label, value_text

ANALYSIS = layout.ANALYSIS
SUMMARY_MD = layout.SUMMARY_MD
START, END = RESULTS_BLOCK


# -- number formatting -----------------------------------------------------------------------------
def finite(value):
    """JSON-safe: non-finite floats -> None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def signed(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def md(text) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return " ".join(str(text).split()).replace("|", "\\|")


def with_step(value, step) -> str:
    return "-" if value is None else f"{num(value, 4)} (step {step})"


# -- table models ----------------------------------------------------------------------------------
def score_tables(c: Collected) -> list[dict]:
    """Per task: {"task", "header", "rows"} of the paper table (score ± stderr, delta vs base, n)."""
    tables = []
    for task in c.tasks:
        cells = [x for x in c.cells if x.task == task]
        metrics = [m for m in c.score_metrics if any(m in x.metrics for x in cells)]
        deltas = [m for m in metrics if any(m in x.deltas for x in cells)]
        header = ["Run", *c.variables, "Epoch", *[metric_label(m) for m in metrics],
                  *[f"Δ {metric_label(m)} vs base" for m in deltas], "n"]
        body = []
        for cell in cells:
            run = c.run(cell.run)
            scores = []
            for m in metrics:
                if cell.status != "success":
                    scores.append(cell.status if m == metrics[0] else "")
                    continue
                err = cell.metrics.get(m.rsplit(".", 1)[0] + ".stderr")
                value = cell.metrics.get(m)
                scores.append(num(value) + (f" ± {num(err)}" if err is not None and value is not None else ""))
            body.append([md(cell.run), *[md(value_text(run.values.get(v, ""))) or "-" for v in c.variables],
                         cell.epoch_text, *[md(s) for s in scores],
                         *[signed(cell.deltas.get(m)) for m in deltas],
                         "-" if cell.completed_samples is None else str(cell.completed_samples)])
        tables.append({"task": task, "header": header, "rows": body})
    return tables


def stage_tables(c: Collected) -> list[dict]:
    """Per task/metric: the stage progression (base -> SFT -> DPO ...) with deltas, as a markdown table."""
    tables = []
    for t in c.stages:
        header = ["Stage", "Runs", "Cells", f"Best {metric_label(t['metric'])}", "Mean", "Δ best vs previous",
                  "Δ best vs first", "Δ mean vs previous", "Δ mean vs first"]
        body = [[md(r["stage"]), md(", ".join(r["runs"])) or "-", str(r["cells"]), num(r["best"]), num(r["mean"]),
                 signed(r["delta_prev"]), signed(r["delta_first"]), signed(r["delta_prev_mean"]),
                 signed(r["delta_first_mean"])] for r in t["rows"]]
        tables.append({"task": f"{t['task']} ({metric_label(t['metric'])})", "header": header, "rows": body})
    return tables


def cost_table(c: Collected) -> dict | None:
    """Estimated vs actual GPU-hours (and cost when an hourly cost is set) per stage and in total."""
    cost = c.cost
    if not cost:
        return None
    money = bool(cost.get("hourly_cost"))
    measured = any("gpu_peak_memory_mib" in r or "gpu_mean_utilization_pct" in r for r in cost["stages"])
    header = (["Stage", "Estimated GPU-hours", "Actual GPU-hours"] + (["Estimated cost", "Actual cost"] if money else [])
              + (["GPU peak memory (GiB)", "GPU utilization"] if measured else []))

    def hours(v):
        return "-" if v is None else f"{v:.3f}"

    def dollars(v):
        return "-" if v is None else f"${v:,.2f}"

    body = []
    for r in cost["stages"] + [cost["total"]]:
        row = [md(r["stage"]), hours(r["estimated_gpu_hours"]), hours(r["actual_gpu_hours"])]
        if money:
            row += [dollars(r["estimated_cost"]), dollars(r["actual_cost"])]
        if measured:  # nvidia-smi samples of the stage's jobs (compute.json), where there were any
            peak, util = r.get("gpu_peak_memory_mib"), r.get("gpu_mean_utilization_pct")
            row += ["-" if peak is None else f"{peak / 1024:.1f}", "-" if util is None else f"{util:.0f}%"]
        body.append(row)
    note = cost.get("note") or ("" if money else "No `gpu hourly cost` in claude.local.md: GPU-hours only.")
    return {"header": header, "rows": body, "note": note}


def loss_table(c: Collected) -> dict:
    header = ["Run", *c.variables, "Final train loss", "Best train loss", "Final val loss", "Best val loss",
              "Train time"]
    body = []
    for run in c.runs:
        if not run.trains:
            continue
        s = run.losses
        body.append([md(run.name), *[md(value_text(run.values.get(v, ""))) or "-" for v in c.variables],
                     num(s.get("final_train_loss"), 4), with_step(s.get("best_train_loss"), s.get("best_train_step")),
                     num(s.get("final_val_loss"), 4), with_step(s.get("best_val_loss"), s.get("best_val_step")),
                     fmt_seconds(run.wall_s)])
    return {"header": header, "rows": body}


def figure_links(figures: list[Path], base: Path) -> list[dict]:
    out = []
    for path in figures:
        if path.suffix != ".png":
            continue
        out.append({"title": figure_title(path), "path": str(path.relative_to(base))})
    return out


HTML_NOTES = {"scores_viz.html": "interactive score chart (value on hover), self-contained, works offline",
              "scores_inspect_viz.html": "inspect-viz; needs internet (its widget loads from cdn.jsdelivr.net)"}


def context(c: Collected, figures: list[Path], base: Path) -> dict:
    """What summary.md and the results block share; figure paths relative to `base`."""
    n_logs = sum(1 for x in c.cells if x.log)
    return {"exp": c.exp, "generated": c.generated, "tables": score_tables(c), "losses": loss_table(c),
            "stages": stage_tables(c), "cost": cost_table(c),
            "comparisons": comparisons_mod.comparison_tables(c.comparisons),
            "replicates": comparisons_mod.replicate_table(c.replicates),
            "flags": [f.line() for f in c.flags], "figures": figure_links(figures, base), "provenance": c.provenance,
            "n_cells": len(c.cells), "n_logs": n_logs, "n_runs": len(c.runs),
            "html": [{"path": str((c.exp_dir / ANALYSIS / "scores.html").relative_to(base)),
                      "note": "score charts and tables, self-contained, works offline"}]
            + [{"path": str(p.relative_to(base)), "note": HTML_NOTES.get(p.name, "")}
               for p in figures if p.suffix == ".html"]}


# -- offline HTML ----------------------------------------------------------------------------------
def html_bars(c: Collected, saturation: float) -> list[dict]:
    """Per task an inline-SVG bar chart (geometry computed here, drawn by scores.html.j2)."""
    charts = []
    palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]
    for task in c.tasks:
        cells = [x for x in c.cells if x.task == task and x.status == "success" and x.metrics]
        metrics = [m for m in c.score_metrics if any(m in x.metrics for x in cells)]
        if not cells or not metrics:
            continue
        top = max([1.0] + [x.metrics.get(m, 0.0) for x in cells for m in metrics])
        # x labels are rotated -30 degrees and end at their group's centre: the first one reaches left of it
        # by its length x cos 30 (about 6.5 px a character at 11 px), so the margins grow to fit it
        longest = max(len(cell_label(x)) for x in cells) * 6.5
        plot_w, plot_h = 820, 220
        left = max(60, round(longest * 0.87 - plot_w / len(cells) * 0.4 + 12))
        bottom = max(110, round(longest * 0.5 + 30))
        width, height = left + plot_w + 20, bottom + plot_h + 30
        group_w = plot_w / len(cells)
        bar_w = group_w * 0.8 / len(metrics)
        bars, labels = [], []
        for i, cell in enumerate(cells):
            x0 = left + i * group_w + group_w * 0.1
            labels.append({"x": round(x0 + group_w * 0.4, 1), "y": height - bottom + 14, "text": cell_label(cell)})
            for j, m in enumerate(metrics):
                value = cell.metrics.get(m)
                if value is None:
                    continue
                h = max(0.0, value) / top * plot_h
                bars.append({"x": round(x0 + j * bar_w, 1), "y": round(height - bottom - h, 1),
                             "w": round(bar_w * 0.92, 1), "h": round(h, 1), "color": palette[j % len(palette)],
                             "title": f"{cell_label(cell)}: {metric_label(m)} = {value:.3f}"})
        ticks = [{"y": round(height - bottom - t / top * plot_h, 1), "text": f"{t:g}"}
                 for t in (0, 0.25, 0.5, 0.75, 1.0) if t <= top]
        sat_y = round(height - bottom - saturation / top * plot_h, 1) if saturation <= top else None
        charts.append({"task": task, "width": width, "height": height, "left": left, "base_y": height - bottom,
                       "bars": bars, "labels": labels, "ticks": ticks, "saturation_y": sat_y,
                       "legend": [{"text": metric_label(m), "color": palette[j % len(palette)]}
                                  for j, m in enumerate(metrics)]})
    return charts


# -- files -----------------------------------------------------------------------------------------
def render_files(c: Collected, figures: list[Path], *, saturation: float) -> dict[str, str]:
    """{path relative to the experiment dir: text} of every report file."""
    exp_dir = c.exp_dir
    analysis = exp_dir / ANALYSIS
    cols = columns(c)
    table = rows(c)
    runs = [finite({"name": r.name, "type": r.type, "model": r.model, "values": r.values,
                    "output_dir": r.output_dir, "losses": r.losses, "overfitting": r.overfitting,
                    "train_state": r.train_state, "wall_s": r.wall_s, "tokens_per_s": r.tokens_per_s,
                    "peak_memory_gb": r.peak_memory_gb,
                    "log_files": [str(p) for p in (r.curve.files if r.curve else [])]}) for r in c.runs]
    files = {
        f"{ANALYSIS}/summary.csv": render("summary/table.csv.j2", header=cols,
                                          rows=[[csv_cell(r[k]) for k in cols] for r in table]),
        f"{ANALYSIS}/summary.json": render(
            "summary/summary.json.j2", experiment=c.exp.name, question=c.exp.question, generated=c.generated,
            experiment_dir=str(exp_dir), columns=cols, rows=[finite(r) for r in table], runs=runs,
            flags=[f.as_dict() for f in c.flags], saturation=saturation, stages=[finite(t) for t in c.stages],
            cost=finite(c.cost), comparisons=[finite(r) for r in c.comparisons],
            replicates=[finite(r) for r in c.replicates],
            figures=[str(p.relative_to(analysis)) for p in figures]),
        f"{ANALYSIS}/summary.md": render("summary/summary.md.j2", **context(c, figures, analysis)),
        f"{ANALYSIS}/scores.html": render("summary/scores.html.j2", exp=c.exp, generated=c.generated,
                                          tables=score_tables(c), losses=loss_table(c),
                                          flags=[f.line() for f in c.flags], charts=html_bars(c, saturation),
                                          saturation=saturation),
        **comparisons_mod.files(c, ANALYSIS),
    }
    return files


def results_block(c: Collected, figures: list[Path]) -> str:
    return render("summary/results_block.md.j2", **context(c, figures, c.exp_dir)).strip("\n")


def update_summary_md(exp_dir: Path, block: str) -> Path | None:
    """Fill experiment_summary.md's results block (locked, atomic); None when the file does not exist."""
    path = exp_dir / SUMMARY_MD
    if not path.is_file():
        return None
    text = path.read_text()
    if not (START in text and END in text and text.index(START) < text.index(END)) and not text.endswith("\n\n"):
        block = "\n" + block  # appended: a blank line before it
    # locked read-modify-write (files.replace_block): the run engine may be rewriting the Status block
    replace_block(path, START, END, block)
    return path


def write_files(exp_dir: Path, files: dict[str, str]) -> list[Path]:
    return [atomic_write(exp_dir / rel, text) for rel, text in files.items()]

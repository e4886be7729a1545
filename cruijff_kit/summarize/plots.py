"""Figures under `{exp}/analysis/`: loss curves and score comparisons (PNG, 1200 x 800 px), plus HTML.

* `loss_<var>-<level>.png`: train (solid) and validation (dashed, dots) loss per step of every trained
  run, one figure per level of the design's first variable when it has two or more (predictable_or_not:
  one per scenario pp/pu/up/uu, each showing both train_on_input modes); one `loss_all.png` otherwise.
* `scores_<task>.png`: a bar per (run, epoch) cell and score metric, stderr as error bars, the
  saturation threshold as a dotted line.
* `scores_viz.html` (and, with `summarize --inspect-viz`, `scores_inspect_viz.html`): see viz.py.

matplotlib (Agg) is imported inside the functions that use it.
"""
from __future__ import annotations

import io
import re
from contextlib import contextmanager
from pathlib import Path

from cruijff_kit.files import atomic_write

WIDTH_PX, HEIGHT_PX, DPI = 1200, 800, 100


def slug(text) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cell_label(cell) -> str:
    return cell.run if cell.epoch is None else f"{cell.run} (epoch {cell.epoch_text})"


def metric_label(metric: str) -> str:
    return metric.replace(".", " ")


def figure_title(path: Path) -> str:
    """A caption from a figure's file name: loss_dataset_label-pp.png -> 'Loss, dataset_label = pp'."""
    stem = path.stem
    if stem == "loss_all":
        return "Loss, all runs"
    if stem.startswith("loss_"):
        var, _, level = stem[len("loss_"):].partition("-")
        return f"Loss, {var} = {level}"
    if stem.startswith("comparisons_"):
        return f"Paired differences with 95% CIs, {stem[len('comparisons_'):]}"
    if stem.startswith("reliability_"):
        return f"Reliability, {stem[len('reliability_'):]}"
    if stem.startswith("scores_"):
        return f"Scores, {stem[len('scores_'):]}"
    return stem


# -- grouping --------------------------------------------------------------------------------------
def loss_groups(collected) -> list[tuple[str, str, list]]:
    """(file name, title, runs) per loss figure; runs are RunResults with a loss curve."""
    trained = [r for r in collected.runs if r.curve is not None]
    if not trained:
        return []
    variables = list(collected.exp.variables)
    name = collected.exp.name
    if len(variables) < 2:
        return [("loss_all.png", f"{name}: training and validation loss", trained)]
    facet = variables[0]
    levels: dict[str, list] = {}
    for run in trained:
        levels.setdefault(value_text(run.values.get(facet, "")), []).append(run)
    ordered = [value_text(v) for v in collected.exp.variables[facet]]
    keys = [k for k in ordered if k in levels] + [k for k in levels if k not in ordered]
    return [(f"loss_{slug(facet)}-{slug(level or 'none')}.png",
             f"{name}: loss, {facet} = {level or '(none)'}", levels[level]) for level in keys]


def score_groups(collected) -> list[tuple[str, str, list, list[str]]]:
    """(file name, title, cells, metrics) per score figure: one per task with scored cells."""
    out = []
    for task in collected.tasks:
        cells = [c for c in collected.cells if c.task == task and c.status == "success" and c.metrics]
        metrics = [m for m in collected.score_metrics if any(m in c.metrics for c in cells)]
        if cells and metrics:
            out.append((f"scores_{slug(task)}.png", f"{collected.exp.name}: {task}", cells, metrics))
    return out


def planned(collected, *, inspect_viz: bool = False) -> list[str]:
    """The figure files `write_figures` would write (for --dry-run)."""
    from cruijff_kit.summarize import statplots

    names = [g[0] for g in loss_groups(collected)] + [g[0] for g in score_groups(collected)]
    names += statplots.planned(collected)
    from cruijff_kit.summarize import viz

    return names + viz.planned(collected, inspect_viz=inspect_viz)


# -- matplotlib ------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches="tight": the size stays fixed
    return atomic_write(path, buffer.getvalue())


def _figure(plt):
    return plt.figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")


@contextmanager
def one_axes(path: Path, title: str, *, xlabel: str = "", ylabel: str = "", grid: str = "both",
             legend: str = "upper left", ncols: int = 1):
    """One figure of one axes, saved to `path` on leaving the block: yields (pyplot, axes) to draw on, then
    adds the house title, axis labels, grid and legend."""
    plt = _pyplot()
    fig = _figure(plt)
    try:
        ax = fig.add_subplot(1, 1, 1)
        yield plt, ax
        ax.set_title(title, fontsize=15)
        if xlabel:
            ax.set_xlabel(xlabel, fontsize=12)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=12)
        ax.grid(True, axis=grid, alpha=0.3)
        ax.legend(fontsize=10, loc=legend, ncols=ncols)
        _save(fig, path)
    finally:
        plt.close(fig)


def loss_figure(title: str, runs: list, path: Path) -> Path:
    with one_axes(path, title, xlabel="step", ylabel="loss", legend="upper right",
                  ncols=2 if len(runs) > 4 else 1) as (plt, ax):
        colors = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
        for i, run in enumerate(runs):
            color = colors(i % colors.N)
            train, val = run.curve.train, run.curve.val
            if train:
                ax.plot([s for s, _ in train], [v for _, v in train], color=color, linewidth=1.4, alpha=0.85,
                        label=f"{run.name} train")
            if val:
                ax.plot([s for s, _ in val], [v for _, v in val], color=color, linewidth=2.0, linestyle="--",
                        marker="o", markersize=5, label=f"{run.name} val")
    return path


def score_figure(title: str, cells: list, metrics: list[str], path: Path, saturation: float) -> Path:
    with one_axes(path, title, ylabel="score", grid="y") as (plt, ax):
        colors = plt.get_cmap("tab10")
        n = len(metrics)
        width = 0.8 / max(n, 1)
        xs = list(range(len(cells)))
        top = 0.0
        for j, metric in enumerate(metrics):
            err_key = metric.rsplit(".", 1)[0] + ".stderr"
            values = [c.metrics.get(metric, 0.0) for c in cells]
            errors = [c.metrics.get(err_key, 0.0) if c.metrics.get(err_key) == c.metrics.get(err_key) else 0.0
                      for c in cells]
            offsets = [x - 0.4 + width * (j + 0.5) for x in xs]
            bars = ax.bar(offsets, values, width=width * 0.95, yerr=errors, capsize=4, color=colors(j % 10),
                          label=metric_label(metric))
            ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
            top = max([top] + [v + e for v, e in zip(values, errors)])
        if top <= 1.0:
            ax.set_ylim(0, 1.05)
            ax.axhline(saturation, color="grey", linestyle=":", linewidth=1.2,
                       label=f"saturation ({saturation:g})")
        ax.set_xticks(xs)
        ax.set_xticklabels([cell_label(c) for c in cells], rotation=30 if len(cells) > 3 else 0,
                           ha="right" if len(cells) > 3 else "center", fontsize=10)
    return path


def write_figures(collected, out_dir: Path, *, saturation: float, progress=print,
                  inspect_viz: bool = False) -> list[Path]:
    """Every PNG and interactive page under out_dir; returns the paths written."""
    written = []
    losses, scores = loss_groups(collected), score_groups(collected)
    if losses or scores:
        progress(f"plotting {len(losses)} loss and {len(scores)} score figure(s)")
    for name, title, runs in losses:
        written.append(loss_figure(title, runs, out_dir / name))
    for name, title, cells, metrics in scores:
        written.append(score_figure(title, cells, metrics, out_dir / name, saturation))
    from cruijff_kit.summarize import statplots

    written += statplots.write(collected, out_dir)
    from cruijff_kit.summarize import viz

    return written + viz.write(collected, out_dir, inspect_viz=inspect_viz)

"""Figures of the statistics (PNG, 1200 x 800 px like plots.py; matplotlib imported inside plots' helpers).

* `comparisons_<task>.png`: a forest plot per task: one row per comparison and scorer, the mean
  difference (B - A) as a dot and its paired bootstrap 95% CI as a bar; filled dots are significant after
  Holm correction; a vertical line at 0.
* `reliability_<task>.png`: a reliability diagram per task with calibration scores (the `calibration`
  scorer): per cell, mean confidence vs accuracy per confidence bin, with the diagonal of perfect
  calibration.
"""
from __future__ import annotations

from pathlib import Path

from cruijff_kit.summarize.plots import one_axes, slug


def forest_groups(collected) -> list[tuple[str, str, list[dict]]]:
    """(file name, title, comparison rows) per task with comparisons."""
    tasks: dict[str, list[dict]] = {}
    for row in collected.comparisons:
        tasks.setdefault(row["task"], []).append(row)
    return [(f"comparisons_{slug(task)}.png", f"{collected.exp.name}: {task}, paired differences (95% CI)", rows)
            for task, rows in tasks.items()]


def forest_figure(title: str, rows: list[dict], path: Path) -> Path:
    with one_axes(path, title, xlabel="score difference (B − A); filled: significant after Holm correction",
                  grid="x", legend="lower right") as (plt, ax):
        colors = plt.get_cmap("tab10")
        scorers = list(dict.fromkeys(r["scorer"] for r in rows))
        ys = list(range(len(rows)))[::-1]
        for y, r in zip(ys, rows):
            color = colors(scorers.index(r["scorer"]) % 10)
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=color, linewidth=2.2)
            ax.plot([r["diff"]], [y], marker="o", markersize=8, color=color,
                    markerfacecolor=color if r["significant"] else "white")
        for s in scorers:
            ax.plot([], [], color=colors(scorers.index(s) % 10), marker="o", label=s)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([f"{r['b']} − {r['a']}" for r in rows], fontsize=9 if len(rows) < 25 else 7)
    return path


def reliability_groups(collected) -> list[tuple[str, str, list[dict]]]:
    """(file name, title, [{"label", "bins"}]) per task whose cells logged calibration bins."""
    from cruijff_kit.summarize.plots import cell_label

    out = []
    for task in collected.tasks:
        curves = [{"label": cell_label(c), "bins": c.reliability} for c in collected.cells
                  if c.task == task and getattr(c, "reliability", None)]
        if curves:
            out.append((f"reliability_{slug(task)}.png", f"{collected.exp.name}: {task}, reliability", curves))
    return out


def reliability_figure(title: str, curves: list[dict], path: Path) -> Path:
    with one_axes(path, title, xlabel="mean confidence in bin", ylabel="accuracy in bin") as (_, ax):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for curve in curves:
            bins = [b for b in curve["bins"] if b["count"]]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", linewidth=1.6,
                    label=curve["label"])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    return path


def planned(collected) -> list[str]:
    return [g[0] for g in forest_groups(collected)] + [g[0] for g in reliability_groups(collected)]


def write(collected, out_dir: Path) -> list[Path]:
    return [forest_figure(title, rows, out_dir / name) for name, title, rows in forest_groups(collected)] + \
        [reliability_figure(title, curves, out_dir / name) for name, title, curves in reliability_groups(collected)]

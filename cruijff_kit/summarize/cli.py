"""Collect an experiment's losses and eval scores into tables, plots and a report.

    cruijff-kit summarize EXPERIMENT_DIR [--dry-run] [--no-plots] [--saturation 0.95] [--overfit-margin 0.05]

Reads experiment_summary.yaml, jobs.json and .ck/state.json, every trained run's DiskLogger logs and
every eval cell's inspect-ai log ({run}/eval/{cell}/logs/*.eval), then writes under {exp}/analysis/:

  summary.csv / summary.json   one row per eval cell: scores, stderr, deltas vs base, losses, times
  summary.md                   the tables a researcher pastes into a paper, flags, figures
  scores.html                  offline, self-contained score charts and tables
  loss_*.png, scores_*.png     loss curves per variable level, score bars per task (1200 x 800 px)
  scores_viz.html              the comparison as an interactive chart (value on hover), offline, self-contained
  scores_inspect_viz.html      only with --inspect-viz: the same chart built by inspect-viz (needs internet:
                               its widget loads DuckDB-WASM and Mosaic from a CDN; blank offline)
  comparisons.csv, comparisons_<task>.png   paired comparisons (fine-tuned vs control, between the levels of
                               each variable): bootstrap 95% CI of the difference, McNemar / bootstrap p,
                               Holm-corrected per table (summarize/stats.py); replicates.csv: across-seed means

and fills the results block of experiment_summary.md (between <!-- ck:results:start/end -->).
Flags (also printed): missing cells, failed evals, saturated scores, validation loss rising at the end.
Logs a SUMMARIZE entry to summarize-experiment.log.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from cruijff_kit.errors import UserError


def configure(parser) -> None:
    parser.add_argument("experiment_dir", metavar="EXPERIMENT_DIR",
                        help="the experiment directory (holding experiment_summary.yaml)")
    parser.add_argument("--dry-run", action="store_true",
                        help="collect and print the findings and the files that would be written; write nothing")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures and the interactive pages")
    parser.add_argument("--inspect-viz", action="store_true",
                        help="also write scores_inspect_viz.html with inspect-viz (needs internet when opened)")
    parser.add_argument("--saturation", type=float, default=None, metavar="X",
                        help="flag accuracy >= X as saturated (default 0.95)")
    parser.add_argument("--overfit-margin", type=float, default=None, metavar="R",
                        help="flag overfitting when the last val loss exceeds the best by more than R x best "
                             "(default 0.05, and at least 0.01 absolute)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _check_fraction(value, name: str, default: float) -> float:
    if value is None:
        return default
    if not 0 < value <= 1:
        raise UserError(f"{value} is out of range", path=name, hint=f"give a number in (0, 1], e.g. {default}")
    return value


def main(args) -> int:
    from cruijff_kit import logbook
    from cruijff_kit.workers.torchtune.losses import OVERFIT_REL
    from cruijff_kit.summarize import collect as collect_mod
    from cruijff_kit.summarize import plots, report

    saturation = _check_fraction(args.saturation, "--saturation", collect_mod.SATURATION)
    overfit = _check_fraction(args.overfit_margin, "--overfit-margin", OVERFIT_REL)
    progress = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    started = time.monotonic()
    c = collect_mod.collect(args.experiment_dir, progress=progress, saturation=saturation, overfit_rel=overfit)
    analysis = c.exp_dir / report.ANALYSIS

    print_tables(c, report)
    for flag in c.flags:
        print(f"warning: {flag.line()}", file=sys.stderr)

    if args.dry_run:
        names = [] if args.no_plots else plots.planned(c, inspect_viz=args.inspect_viz)
        files = report.render_files(c, [analysis / n for n in names], saturation=saturation)
        print(f"dry run: would write under {analysis}/:")
        for name in sorted([Path(f).name for f in files] + names):
            print(f"  {name}")
        print(f"  and the results block of {c.exp_dir / report.SUMMARY_MD}")
        return 0

    figures = [] if args.no_plots else plots.write_figures(c, analysis, saturation=saturation, progress=progress,
                                                           inspect_viz=args.inspect_viz)
    files = report.render_files(c, figures, saturation=saturation)
    written = report.write_files(c.exp_dir, files)
    md_path = report.update_summary_md(c.exp_dir, report.results_block(c, figures))
    for path in [*written, *figures]:
        print(f"wrote {path.relative_to(c.exp_dir)}")
    if md_path:
        print(f"updated the results block of {md_path.name}")
    else:
        print(f"note: no {report.SUMMARY_MD} in {c.exp_dir}; results are in {report.ANALYSIS}/summary.md only")
    n_logs = sum(1 for x in c.cells if x.log)
    result = (f"{len(c.runs)} runs, {n_logs}/{len(c.cells)} eval cells logged, {len(c.flags)} flag(s), "
              f"{len(written) + len(figures)} files in {report.ANALYSIS}/")
    logbook.log(c.exp_dir / logbook.LOG_NAMES["summarize"], "SUMMARIZE", f"summarized {c.exp.name}",
                command=f"cruijff-kit summarize {args.experiment_dir}", result=result,
                explanation="collected losses and eval scores into analysis/ and the results block",
                details="; ".join(f.line() for f in c.flags) or "no flags")
    print(f"{result} ({time.monotonic() - started:.1f}s)")
    return 0


def print_tables(c, report) -> None:
    """The score tables and loss table as aligned plain text."""
    for t in report.score_tables(c):
        print(f"\n{t['task']}")
        _aligned(t["header"], t["rows"])
    losses = report.loss_table(c)
    if losses["rows"]:
        print("\ntraining loss")
        _aligned(losses["header"], losses["rows"])
    print()


def _aligned(header: list[str], body: list[list[str]]) -> None:
    plain = [[str(v).replace("\\|", "|") for v in row] for row in body]
    widths = [max(len(str(h)), *(len(r[i]) for r in plain)) if plain else len(str(h)) for i, h in enumerate(header)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for row in plain:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("summarize")

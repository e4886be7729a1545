"""Summarize stage: collect losses and eval scores of an experiment into tables, plots and a report.

collect.py reads what the runs left on disk, plots.py draws the figures, report.py renders the tables
and the results block of experiment_summary.md; cli.py is `cruijff-kit summarize`.
"""

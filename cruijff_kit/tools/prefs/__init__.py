"""Preference-pair generation (runs inside a job): sample k answers per prompt, judge, pair chosen/rejected.

``generate`` is the sampling half (config check, model, sampling loop, ``python -m`` entry); ``pairs`` the
half that needs no model (Judge, make_pairs, the pairs file and its report). ``cruijff-kit prefs generate``
(cruijff_kit/workers/prefs/cli.py) validates the arguments and runs it in-process. Keep this file free of
imports.
"""

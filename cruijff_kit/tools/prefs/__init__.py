"""Preference-pair generation (runs inside a job): sample k answers per prompt, judge, pair chosen/rejected.

``cruijff_kit.tools.prefs.generate`` is the sampler; ``cruijff-kit prefs generate`` (cruijff_kit/prefs.py)
validates the arguments and runs it in-process. Keep this file free of imports.
"""

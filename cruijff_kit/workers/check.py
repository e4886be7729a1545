"""Every worker's scaffold-time check in one call, so `validate` and `scaffold` run the same checks.

`design_problems(exp, settings)` collects what the preparation, evaluation and preference workers find.
`needs_file(problem)` tells the problems that depend on a file on disk (a task script, a data file, a
checkpoint) from those that depend only on the design: `validate` reports the latter as errors, the former
as warnings (the file may not exist yet); `scaffold` refuses both.
"""
from __future__ import annotations

import re

from cruijff_kit.errors import Problem, ProblemList

_FILE_PATHS = re.compile(r"evaluation\.tasks\[\d+\]\.(script|function|split)$")
_FILE_WORDS = ("checkpoint not found", "has no validation split", "not found (yet)")


def needs_file(problem: Problem) -> bool:
    return bool(_FILE_PATHS.search(problem.path)) or problem.hint == "fix the data file" or any(
        w in problem.message for w in _FILE_WORDS)


def design_problems(exp, settings) -> ProblemList:
    from cruijff_kit import workers
    from cruijff_kit.workers.prefs import generator as prefs_worker

    problems = ProblemList(str(exp.source))
    for kind, get in (("preparation", workers.preparation_worker), ("evaluation", workers.evaluation_worker)):
        tool = exp.tools.get(kind)
        if not tool:
            continue
        try:
            module = get(tool)
        except ModuleNotFoundError as exc:
            table = workers.PREPARATION if kind == "preparation" else workers.EVALUATION
            if exc.name != table.get(tool):
                raise
            continue  # scaffold says which worker is missing
        module.check(exp, settings, problems)
    prefs_worker.check(exp, settings, problems)
    return problems

"""Semantic checks of a design that need no file, beyond load.semantic_problems: what the jobs would
otherwise fail on hours later (a prompt with a placeholder the dataset does not fill, a base_run cycle,
NaN/inf numbers, two models or tasks with one name)."""
from __future__ import annotations

import math
import string

from cruijff_kit.errors import ProblemList

PLACEHOLDERS = ("input",)  # what the datasets fill in: prompt.format(input=record["input"])


def prompt_problem(prompt) -> tuple[str, str] | None:
    """(what is wrong, the fix) for a prompt template str.format(input=...) cannot fill, else None."""
    if not isinstance(prompt, str):
        return None
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(prompt) if f is not None]
    except ValueError as exc:
        return (f"the prompt template cannot be formatted ({exc})",
                "write literal braces as {{ and }}; the only placeholder is {input}")
    for name in fields:
        if name not in PLACEHOLDERS:
            shown = "{" + name + "}"
            return (f"the prompt template has the placeholder {shown}, which the dataset does not fill",
                    "the only placeholder is {input}; write literal braces as {{ and }}")
    return None


def _finite_problems(node, parts, problems: ProblemList) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _finite_problems(value, parts + [str(key)], problems)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _finite_problems(value, parts[:-1] + [f"{parts[-1]}[{i}]"] if parts else [f"[{i}]"], problems)
    elif isinstance(node, float) and not math.isfinite(node):
        problems.error(".".join(parts), f"{node!r} is not a finite number", "give a number")


def extra_problems(data: dict, problems: ProblemList) -> None:
    _finite_problems(data, [], problems)
    experiment = data.get("experiment") if isinstance(data.get("experiment"), dict) else {}
    date = experiment.get("date")
    if isinstance(date, str) and len(date) == 10 and date.isascii() and date[4] == "-":
        import datetime

        try:
            datetime.date.fromisoformat(date)
        except ValueError:
            problems.error("experiment.date", f"{date!r} is not a calendar date", "write YYYY-MM-DD")
    runs = [r for r in data.get("runs") or [] if isinstance(r, dict)]
    controls = data.get("controls") if isinstance(data.get("controls"), dict) else {}
    found = prompt_problem(controls.get("prompt"))
    if found:
        problems.error("controls.prompt", *found)
    for i, run in enumerate(runs):
        params = run.get("parameters") if isinstance(run.get("parameters"), dict) else {}
        found = prompt_problem(params.get("prompt"))
        if found:
            problems.error(f"runs[{i}].parameters.prompt", *found)
    evaluation = data.get("evaluation") if isinstance(data.get("evaluation"), dict) else {}
    tasks = [t for t in evaluation.get("tasks") or [] if isinstance(t, dict)]
    for i, task in enumerate(tasks):
        found = prompt_problem(task.get("prompt"))
        if found:
            problems.error(f"evaluation.tasks[{i}].prompt", *found)
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    for key, items in (("models.base", models.get("base") or []), ("evaluation.tasks", tasks)):
        seen: dict = {}
        for i, item in enumerate(items if isinstance(items, list) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in seen:
                problems.error(f"{key}[{i}].name", f"'{name}' is used twice (also {key}[{seen[name]}])",
                               "give each one a unique name")
            seen.setdefault(name, i)
    # base_run cycles: a -> b -> a never starts
    base_of = {r.get("name"): r.get("base_run") for r in runs if isinstance(r.get("name"), str)}
    index = {r.get("name"): i for i, r in enumerate(runs)}
    reported: set = set()
    for name in base_of:
        chain, cur = [], name
        while cur in base_of and base_of[cur] and cur not in chain:
            chain.append(cur)
            cur = base_of[cur]
        if cur in chain and cur != base_of.get(cur) and not (set(chain) & reported):
            loop = chain[chain.index(cur):]
            reported.update(loop)
            problems.error(f"runs[{index[loop[0]]}].base_run",
                           f"base_run goes round in a circle: {' -> '.join(loop + [loop[0]])}",
                           "one run of the chain must start from the base model (remove its base_run)")

"""Validate an experiment design: schema, then meaning. Prints every problem, one line each.

Exit status: 0 valid (warnings may be printed), 2 on any error. --json prints a machine-readable
report for skills: {"valid": bool, "errors": [...], "warnings": [...], "runs": N, "cells": N}.
"""
from __future__ import annotations

import json
import sys

from cruijff_kit.errors import UserError


def configure(parser) -> None:
    parser.add_argument("file", help="experiment_summary.yaml (or the experiment directory holding it)")
    parser.add_argument("--profile", help="apply a profile from the design's `profiles:` (e.g. tiny)")
    parser.add_argument("--json", action="store_true", help="print a JSON report instead of lines")


def validate_design(file, *, profile: str | None = None, settings=None):
    """(experiment, warnings) when the design is valid, else ValidationFailed with every problem.

    Valid means scaffold will accept it: load's schema and semantic checks, then the workers' checks;
    problems that depend on a file that may not exist yet (task script, data, checkpoint) are warnings."""
    from cruijff_kit.errors import Problem, ValidationFailed
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.experiment.safety import experiment_dir_problem
    from cruijff_kit.settings import load_settings
    from cruijff_kit.workers.check import design_problems, needs_file

    warnings: list = []
    settings = settings or load_settings()
    exp = load_experiment(file, profile=profile, warnings=warnings, settings=settings)
    found = design_problems(exp, settings)
    errors = [p for p in found.errors if not needs_file(p)]
    warnings += [p if p.level == "warning" or not needs_file(p) else
                 Problem(p.where, p.path, p.message, p.hint + "; scaffold refuses this until it is fixed",
                         "warning") for p in found.problems if p not in errors]
    bad_dir = experiment_dir_problem(exp.dir)
    if bad_dir:
        level = "warning" if "--force" in bad_dir[1] else "error"  # a busy folder: scaffold --force may use it
        (errors if level == "error" else warnings).append(
            Problem(str(exp.source), "experiment.dir", bad_dir[0], bad_dir[1], level))
    warnings = list({w.line(): w for w in warnings}.values())
    if errors:
        raise ValidationFailed(errors + warnings)
    return exp, warnings


def main(args) -> int:
    try:
        exp, warnings = validate_design(args.file, profile=args.profile)
    except UserError as exc:
        if not args.json:
            raise
        print(json.dumps({"valid": False, "errors": [p.as_dict() for p in exc.problems if p.level == "error"],
                          "warnings": [p.as_dict() for p in exc.problems if p.level == "warning"]}, indent=2))
        return 2
    if args.json:
        print(json.dumps({"valid": True, "errors": [], "warnings": [w.as_dict() for w in warnings],
                          "name": exp.name, "dir": str(exp.dir), "runs": len(exp.runs),
                          "cells": len(exp.cells())}, indent=2))
        return 0
    for w in warnings:
        print(w.line(), file=sys.stderr)
    print(f"{exp.source}: valid ({len(exp.runs)} runs, {len(exp.cells())} eval cells)")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("validate")

"""Workers turn the experiment model into files: a preparation worker per `tools.preparation`
(torchtune) and an evaluation worker per `tools.evaluation` (inspect-ai). Adding another optimizer
or evaluator means adding a module and one registry line; callers never change.

A worker module provides:
    check(exp, settings, problems)       -> add scaffold-time problems (e.g. prompt mismatch)
    render(exp, settings, files) -> list[JobSpec]   add (path, text) to the RenderSet, return jobs
"""
from __future__ import annotations

import importlib

PREPARATION = {"torchtune": "cruijff_kit.workers.torchtune.trainer"}
EVALUATION = {"inspect-ai": "cruijff_kit.workers.inspect.evaluator"}


def preparation_worker(name: str):
    return importlib.import_module(PREPARATION[name])


def evaluation_worker(name: str):
    return importlib.import_module(EVALUATION[name])

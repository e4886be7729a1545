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


# rerun policies: how a job of a tool is rerun (resume, OOM retry); a tool without one reruns as is
RERUN = {"torchtune": "cruijff_kit.workers.torchtune.rerun", "inspect-ai": "cruijff_kit.workers.inspect.rerun"}


def rerun_policy(job):
    """The rerun policy of `job`'s tool (a module with rerun_env, oom_retry and notes), or None.

    Training jobs belong to their preparation tool (`meta.tool`, torchtune when absent), grouped eval jobs
    to inspect-ai (only their unfinished cells rerun); other jobs (eval cells, preference data) rerun unchanged."""
    if job.kind == "eval" and job.meta.get("cells"):
        tool = "inspect-ai"
    elif job.kind == "train":
        tool = job.meta.get("tool") or "torchtune"
    else:
        return None
    module = RERUN.get(tool)
    return importlib.import_module(module) if module else None


def rerun_overrides() -> set[str]:
    """Every environment variable a rerun policy may set: a job gets them only from the engine."""
    return {var for module in RERUN.values() for var in importlib.import_module(module).OVERRIDES}

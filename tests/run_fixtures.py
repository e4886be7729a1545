"""Fake-but-real experiment dirs for the run engine tests.

Job scripts are rendered from templates/job.sh.j2 (the same base every real job script extends) with
small bash payloads: sleep, echo, write marker files, `exit 3`. The dir gets a jobs.json in the scaffold
contract, and an experiment_summary.md with a Status block between the ck:status markers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.files import atomic_write, write_json
from cruijff_kit.experiment.jobs import JobSpec, jobs_payload
from cruijff_kit.jobscript import job_environment, resources
from cruijff_kit.render import environment
from cruijff_kit.settings import load_settings

SUMMARY = """# {name}

## Overview
Fake experiment for the run engine tests.

## Status
<!-- ck:status:start -->
(not run yet)
<!-- ck:status:end -->

## Quick Reference
Keep this line.
"""


@dataclass
class Fake:
    """One job: `payload` is bash run by the job script (after `cd` into the job's directory)."""

    id: str
    payload: str = "true"
    after: list[str] = field(default_factory=list)
    output_dir: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "eval" if ".eval." in self.id else "train"

    @property
    def run(self) -> str:
        return self.id.split(".")[0]

    @property
    def cell(self) -> str:
        return self.id.split(".eval.", 1)[1] if self.kind == "eval" else ""

    @property
    def script(self) -> str:
        return f"{self.run}/eval/{self.cell}/inspect.slurm" if self.kind == "eval" else f"{self.run}/finetune.slurm"


def marker(marks: Path, name: str, sleep: float = 0.0, extra: str = "") -> str:
    """Payload: write `{marks}/{name}.start` and `.end` (epoch seconds) around a sleep."""
    return (f'date +%s.%N > "{marks}/{name}.start"\n'
            f'echo "job {name} running as ${{CK_JOB_ID:-${{SLURM_JOB_ID:-}}}}"\n'
            f"{extra}\n"
            f"sleep {sleep}\n"
            f'date +%s.%N > "{marks}/{name}.end"\n')


def build(exp_dir: Path, jobs: list[Fake], *, name: str = "fake_exp", cpus: int = 1, summary: bool = True,
          gpus: int = 0) -> Path:
    """Render every job script, write jobs.json and experiment_summary.md; returns the experiment dir."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    env = job_environment(settings, exp_dir)
    res = resources(settings, {"gpus": gpus, "cpus": cpus, "time": "00:10:00", "mem": "256M"})
    specs = []
    for fake in jobs:
        workdir = exp_dir / Path(fake.script).parent
        workdir.mkdir(parents=True, exist_ok=True)
        spec = JobSpec(id=fake.id, kind=fake.kind, run=fake.run, script=fake.script, after=list(fake.after),
                       log=str(workdir / "slurm-%j.out"), output_dir=fake.output_dir, task="task" if fake.cell else "",
                       epoch=int(fake.cell.rsplit("epoch", 1)[1]) if "epoch" in fake.cell else None, meta=fake.meta)
        template = environment().from_string(
            '{% extends "job.sh.j2" %}{% block payload %}{% raw %}' + fake.payload.rstrip("\n")
            + "\n{% endraw %}{% endblock %}")
        text = template.render(job_name=f"{name}-{fake.id}", job_id=fake.id, log=spec.log, res=res, env=env,
                               workdir=str(workdir), exit_code_file=str(exp_dir / spec.exit_code_file),
                               source="tests/run_fixtures.py")
        atomic_write(exp_dir / spec.script, text, mode=0o755)
        specs.append(spec)
    write_json(exp_dir / "jobs.json", jobs_payload(name, specs))
    if summary:
        atomic_write(exp_dir / "experiment_summary.md", SUMMARY.format(name=name))
    return exp_dir


def standard(exp_dir: Path, marks: Path, *, runs=("a", "b"), cells=("task_epoch0", "task_epoch1"),
             train_sleep: float = 0.3, eval_sleep: float = 0.1, train_extra: dict | None = None,
             output_root: Path | None = None) -> Path:
    """A train job per run and eval cells after it, each writing start/end markers."""
    marks.mkdir(parents=True, exist_ok=True)
    jobs = []
    for run in runs:
        out = str(output_root / f"ck-out-{run}") if output_root else ""
        jobs.append(Fake(f"{run}.train", marker(marks, f"{run}.train", train_sleep, (train_extra or {}).get(run, "")),
                         output_dir=out))
        for cell in cells:
            jobs.append(Fake(f"{run}.eval.{cell}", marker(marks, f"{run}.eval.{cell}", eval_sleep),
                             after=[f"{run}.train"]))
    return build(exp_dir, jobs)


def failing_train(marks: Path, flag: Path, output_root: Path, error: str, run: str = "b") -> str:
    """A train payload that records CK_RESUME, leaves an epoch_0 checkpoint, and fails with `error` on stderr
    (exit 3) until `flag` exists: the failure a resubmit recovers from."""
    return (f'echo "resume=${{CK_RESUME:-0}}" > "{marks}/{run}.resume"\n'
            f'mkdir -p {output_root}/ck-out-{run}/epoch_0 && '
            f'echo w > {output_root}/ck-out-{run}/epoch_0/adapter_model.safetensors\n'
            f'if [ ! -f "{flag}" ]; then echo "{error}" >&2; exit 3; fi')


def stamp(marks: Path, name: str, which: str) -> float:
    return float((marks / f"{name}.{which}").read_text())


def max_overlap(marks: Path, names) -> int:
    """Largest number of jobs whose [start, end] intervals overlap."""
    events = []
    for n in names:
        events += [(stamp(marks, n, "start"), 1), (stamp(marks, n, "end"), -1)]
    best = cur = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        cur += delta
        best = max(best, cur)
    return best


def state(exp_dir: Path) -> dict:
    return json.loads((Path(exp_dir) / ".ck" / "state.json").read_text())


def status_block(exp_dir: Path) -> str:
    text = (Path(exp_dir) / "experiment_summary.md").read_text()
    return text.split("<!-- ck:status:start -->")[1].split("<!-- ck:status:end -->")[0]


def table_states(exp_dir: Path) -> dict[str, str]:
    """(run or run/task/epoch) -> status from the Status tables of experiment_summary.md."""
    out = {}
    section = ""
    for line in status_block(exp_dir).splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
        elif line.startswith("| ") and "---" not in line and not line.startswith("| Run "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if section == "Fine-tuning":
                out[cells[0]] = cells[1]
            else:
                out[f"{cells[0]}/{cells[1]}/{cells[2]}"] = cells[3]
    return out


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cruijff_kit", *args]


def start_cli(*args: str) -> subprocess.Popen:
    """A CLI process in the background (its own process group, like a shell job)."""
    return subprocess.Popen(cli_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ), start_new_session=True)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_state(exp_dir: Path, job_id: str) -> str | None:
    try:
        return state(exp_dir)["jobs"][job_id]["state"]
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"

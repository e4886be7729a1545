"""The claims of docs/extending.md that a test can check: a new evaluator is one module plus one registry
line (and the schema enum so a user can name it); a new executor is one class plus one registry line;
a new run type is one row of experiment/runtypes plus the schema enum, because no module outside
runtypes spells run-type names."""
from __future__ import annotations

import importlib
import json
import sys

import pytest
import yaml

from cruijff_kit import workers
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.load import schema
from cruijff_kit.experiment.runtypes import EPOCH_CHECKPOINT, RUN_TYPES, SFT, RunType
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings

from conftest_eval import design
from test_layout import _scan

FAKE_EVALUATOR = '''
"""A stand-in evaluator: one file and one job per eval cell, like any evaluation worker."""
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec

CALLS = []


def check(exp, settings, problems):
    CALLS.append("check")


def render(exp, settings, files):
    CALLS.append("render")
    jobs = []
    for cell in exp.cells():
        rel = layout.cell_relpath(cell.run, cell.dirname)
        files.add(f"{rel}/fake.sh", "#!/bin/bash\\necho fake\\n", executable=True)
        jobs.append(JobSpec(id=f"{cell.run}.fake.{cell.dirname}", kind="eval", run=cell.run,
                            script=f"{rel}/fake.sh"))
    return jobs
'''


def _schema_enum(monkeypatch, path: list[str], value: str) -> None:
    """Add `value` to the schema enum at `path` for this test (what the docs tell a contributor to edit)."""
    node = schema()
    for key in path:
        node = node[key]
    monkeypatch.setitem(node, "enum", [*node["enum"], value])


def _design(tmp_path, runs, matrix, **tools):
    path = design(tmp_path, runs=runs, matrix=matrix)
    doc = yaml.safe_load(path.read_text())
    doc["tools"].update(tools)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_registered_evaluator_is_what_scaffold_calls(tmp_path, scratch, monkeypatch):
    (tmp_path / "fake_eval_worker.py").write_text(FAKE_EVALUATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(workers.EVALUATION, "fake-eval", "fake_eval_worker")  # the one registry line
    _schema_enum(monkeypatch, ["properties", "tools", "properties", "evaluation"], "fake-eval")
    path = _design(tmp_path, [{"name": "ft", "type": "fine-tuned", "model": "tiny-llama"}],
                   [{"run": "ft", "tasks": ["const"], "epochs": [1]}], evaluation="fake-eval")
    outcome = scaffold(path, settings=load_settings(), quiet=True, log=False)
    fake = importlib.import_module("fake_eval_worker")
    assert fake.CALLS == ["check", "render"]
    jobs = json.loads((outcome.exp.dir / layout.JOBS).read_text())["jobs"]
    assert {j["id"]: j["kind"] for j in jobs} == {"ft.train": "train", "ft.fake.const_epoch1": "eval"}
    assert (outcome.exp.dir / "ft" / "eval" / "const_epoch1" / "fake.sh").is_file()
    assert not (outcome.exp.dir / "ft" / "eval" / "const_epoch1" / layout.EVAL_SCRIPT).exists()
    sys.modules.pop("fake_eval_worker", None)


def test_a_new_run_type_is_one_table_row(tmp_path, scratch, monkeypatch):
    """A type that trains like fine-tuned: the table row and the schema enum are all it needs to be
    trained by the torchtune worker and evaluated per epoch by the inspect worker."""
    row = RunType("sft-copy", trains=True, data_key="training", evaluated_as=EPOCH_CHECKPOINT, objective=SFT)
    monkeypatch.setitem(RUN_TYPES, row.name, row)
    _schema_enum(monkeypatch, ["properties", "runs", "items", "properties", "type"], row.name)
    path = _design(tmp_path, [{"name": "cp", "type": "sft-copy", "model": "tiny-llama"},
                              {"name": "ctl", "type": "control", "model": "tiny-llama"}],
                   [{"run": "cp", "tasks": ["const"], "epochs": [0, 1]},
                    {"run": "ctl", "tasks": ["const"], "epochs": None}])
    outcome = scaffold(path, settings=load_settings(), quiet=True, log=False)
    exp_dir = outcome.exp.dir
    jobs = {j["id"]: j for j in json.loads((exp_dir / layout.JOBS).read_text())["jobs"]}
    assert sorted(jobs) == ["cp.eval.const_epoch0", "cp.eval.const_epoch1", "cp.train", "ctl.eval.const"]
    assert jobs["cp.train"]["meta"]["objective"] == SFT
    assert jobs["cp.eval.const_epoch1"]["after"] == ["cp.train"]
    config = yaml.safe_load((exp_dir / "cp" / layout.FINETUNE_CONFIG).read_text())
    assert config["dataset"]["_component_"].endswith("input_output_dataset")
    cell = yaml.safe_load((exp_dir / "cp" / "eval" / "const_epoch1" / layout.EVAL_CONFIG).read_text())
    assert cell["run_type"] == "sft-copy" and cell["model_path"].endswith("/epoch_1")


def test_no_module_outside_runtypes_spells_run_type_names():
    """So the row above reaches every stage: modules ask RUN_TYPES, never compare `type == "dpo"`.
    (tools/ is exempt: the recipes' `objective: "dpo"` is a training_summary.json field; a file being
    rewritten may be listed in test_layout.PENDING meanwhile.)"""
    names = set(RUN_TYPES)
    assert _scan(lambda rel, text: text in names and not rel.startswith("tools/")) == []


FAKE_EXECUTOR = '''
"""A stand-in backend: runs each job's rendered script to its end inside submit()."""
import subprocess

from cruijff_kit.run.executors.base import Executor, JobStatus, state_for_exit

SUBMITTED = []


class FakeExecutor(Executor):
    name = title = "fake"
    holds_dependencies = False  # the engine submits a job once its dependencies completed
    needs_runner = True
    poll_interval = 0.01

    def __init__(self, exp_dir, *, max_parallel=1, require=True):
        super().__init__(exp_dir, max_parallel=max_parallel, require=require)
        self.done = {}

    def submit(self, job, after, env=None):
        SUBMITTED.append(job.id)
        code = subprocess.run(["bash", str(self.script_path(job))], cwd=str(self.script_path(job).parent),
                              capture_output=True).returncode
        state, reason = state_for_exit(code)
        native = f"fake-{len(SUBMITTED)}"
        self.done[native] = JobStatus(state=state, exit_code=code, reason=reason)
        return native

    def poll(self, ids):
        return {i: self.done[i] for i in ids if i in self.done}

    def cancel(self, ids):
        return None
'''


@pytest.mark.parametrize("chosen_by", ["--executor", "settings"])
def test_a_new_executor_is_one_registry_line(chosen_by, tmp_path, scratch, monkeypatch):
    """A class registered in run/executors' EXECUTORS is what `cruijff-kit run` drives, chosen with
    `--executor NAME` or with `- Executor: NAME` in claude.local.md (settings read the registry)."""
    from cruijff_kit.cli import main as cli_main
    from cruijff_kit.run import executors
    from run_fixtures import Fake, build, state

    assert all(isinstance(v, str) and v.startswith("cruijff_kit.") for v in executors.EXECUTORS.values())
    (tmp_path / "fake_executor.py").write_text(FAKE_EXECUTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(executors.EXECUTORS, "fake", "fake_executor:FakeExecutor")  # the one registry line
    args = ["--executor", "fake"]
    if chosen_by == "settings":
        settings = tmp_path / "fake.local.md"
        settings.write_text("# settings\n- **Executor**: fake\n")
        monkeypatch.setenv("CK_SETTINGS", str(settings))
        assert load_settings().executor == "fake" and "fake_executor" not in sys.modules  # a name, no import
        args = []
    exp = build(tmp_path / "exp", [Fake("a.train"), Fake("a.eval.task_epoch0", after=["a.train"])])
    assert cli_main(["run", str(exp), *args]) == 0
    fake = importlib.import_module("fake_executor")
    assert fake.SUBMITTED == ["a.train", "a.eval.task_epoch0"]
    jobs = state(exp)["jobs"]
    assert {j: (js["state"], js["executor"]) for j, js in jobs.items()} == {
        "a.train": ("completed", "fake"), "a.eval.task_epoch0": ("completed", "fake")}
    sys.modules.pop("fake_executor", None)


def test_an_unknown_executor_setting_lists_the_registered_names(tmp_path, monkeypatch):
    from cruijff_kit.errors import UserError
    from cruijff_kit.run import executors

    monkeypatch.setitem(executors.EXECUTORS, "fake", "fake_executor:FakeExecutor")
    settings = tmp_path / "claude.local.md"
    settings.write_text("# settings\n- Executor: kube\n")
    with pytest.raises(UserError) as exc:
        load_settings(settings)
    assert exc.value.lines() == [f"{settings}:2: executor: 'kube' is not an executor; use one of local, slurm, fake"]

"""inspect-ai eval worker: cells rendered per run type, prompts identical to training, scorers and task
scripts checked at scaffold time, job scripts that bash accepts; plus the scorers and dataset reader."""
from __future__ import annotations

import asyncio
import inspect as pyinspect
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from cruijff_kit.errors import ProblemList
from cruijff_kit.experiment.load import load_experiment
from cruijff_kit.experiment.jobs import read_jobs
from cruijff_kit.render import RenderSet
from cruijff_kit.settings import load_settings
from cruijff_kit.workers import evaluation_worker
from cruijff_kit.workers.inspect import evaluator as worker

from conftest_eval import SANITY_TASK, design, read_cell, write_dataset

FT = {"name": "ft", "type": "fine-tuned", "model": "tiny-llama"}
CTL = {"name": "ctl", "type": "control", "model": "tiny-llama"}


def checked(path):
    """(experiment, settings, problems) after the eval worker's check()."""
    settings = load_settings()
    exp = load_experiment(path, settings=settings)
    problems = ProblemList(str(exp.source))
    worker.check(exp, settings, problems)
    return exp, settings, problems


def rendered(path):
    exp, settings, problems = checked(path)
    assert not problems.errors, [p.line() for p in problems.errors]
    files = RenderSet(exp.dir)
    jobs = worker.render(exp, settings, files)
    files.commit()
    return exp, settings, jobs


def error_lines(problems) -> list[str]:
    return [p.line() for p in problems.errors]


# -- rendering ---------------------------------------------------------------------------------------
def test_registry_routes_to_this_worker():
    assert evaluation_worker("inspect-ai") is worker


def test_cells_for_fine_tuned_control_and_eval_only(tmp_path, scratch):
    ckpt = tmp_path / "someone_elses_checkpoint"
    ckpt.mkdir()
    data = write_dataset(tmp_path / "data" / "const.json")
    other = write_dataset(tmp_path / "data" / "other.json", target="7")
    path = design(tmp_path, data=data,
                  runs=[FT, CTL, {"name": "eo", "type": "eval-only", "model": "tiny-llama",
                                  "checkpoint_path": str(ckpt)}],
                  tasks=[{"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not"},
                         {"name": "other", "script": str(SANITY_TASK), "function": "predictable_or_not",
                          "dataset": str(other), "split": "train"}],
                  matrix=[{"run": "ft", "tasks": ["const", "other"], "epochs": [0, 1]},
                          {"run": "ctl", "tasks": ["const"], "epochs": None},
                          {"run": "eo", "tasks": ["const"], "epochs": None, "vis_label": "theirs"}],
                  evaluation={"limit": 5, "seed": 7, "group": "cell"})
    exp, settings, jobs = rendered(path)
    out = settings.output_dir("evx", "ft")
    model = tmp_path / "models" / "tiny-llama"

    by_id = {j.id: j for j in jobs}
    assert sorted(by_id) == sorted(["ft.eval.const_epoch0", "ft.eval.const_epoch1", "ft.eval.other_epoch0",
                                    "ft.eval.other_epoch1", "ctl.eval.const", "eo.eval.const"])
    assert by_id["ft.eval.const_epoch1"].after == ["ft.train"]
    assert by_id["ctl.eval.const"].after == [] and by_id["eo.eval.const"].after == []
    assert by_id["ft.eval.const_epoch1"].script == "ft/eval/const_epoch1/inspect.slurm"
    assert by_id["ft.eval.const_epoch1"].kind == "eval" and by_id["ft.eval.const_epoch1"].epoch == 1

    ft1 = read_cell(exp.dir, "ft", "const_epoch1")
    assert ft1["model_path"] == str(out / "epoch_1")  # 0-indexed epochs
    assert ft1["base_model_path"] == str(model) and ft1["adapter_only"] is True  # adapter-only is the default
    assert ft1["task_script"] == str(SANITY_TASK) and ft1["task_function"] == "predictable_or_not"
    assert ft1["task_args"] == {"data_path": str(data), "split": "validation", "prompt": "{input}",
                                "system_prompt": ""}
    assert ft1["dataset_type"] == "chat_completion"
    assert ft1["generation"] == {"do_sample": False, "max_tokens": 8, "seed": 7}  # greedy: no temperature
    assert ft1["limit"] == 5 and ft1["device"] == "cpu"
    assert ft1["scorers"] == [{"name": "match", "params": {"location": "exact"}},
                              {"name": "numeric", "params": {"tolerance": 0}}]
    assert ft1["vis_label"] == "ft_epoch1"
    assert ft1["log_dir"] == str(exp.dir / "ft" / "eval" / "const_epoch1" / "logs")
    assert read_cell(exp.dir, "ft", "const_epoch0")["model_path"] == str(out / "epoch_0")
    other0 = read_cell(exp.dir, "ft", "other_epoch0")
    assert other0["task_args"]["data_path"] == str(other) and other0["task_args"]["split"] == "train"

    ctl = read_cell(exp.dir, "ctl", "const")
    assert ctl["model_path"] == str(model) and ctl["epoch"] is None and ctl["vis_label"] == "ctl"
    eo = read_cell(exp.dir, "eo", "const")
    assert eo["model_path"] == str(ckpt) and eo["base_model_path"] == str(model) and eo["vis_label"] == "theirs"


def test_job_scripts_pass_bash_n_and_run_the_runner(tmp_path, scratch):
    path = design(tmp_path, runs=[FT, CTL], matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]},
                                                    {"run": "ctl", "tasks": ["const"], "epochs": None}])
    exp, _, jobs = rendered(path)
    for job in jobs:
        script = exp.dir / job.script
        text = script.read_text()
        assert script.stat().st_mode & stat.S_IXUSR
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        cell_dir = script.parent
        assert f"#SBATCH --output={job.log}" in text and job.log == str(cell_dir / "slurm-%j.out")
        assert f"#SBATCH --job-name={job.id}" in text
        assert "--gres" not in text  # device: cpu -> no GPU requested
        assert f"ck_exit_file={exp.dir / job.exit_code_file}" in text
        assert f"cd {cell_dir} ||" in text
        assert text.rstrip().splitlines()[-1].endswith("-m cruijff_kit.tools.inspect.run_cell eval_config.yaml")


def test_adapter_only_cells_reference_base_and_adapter(tmp_path, scratch):
    path = design(tmp_path, controls={"save_adapter_weights_only": True},
                  runs=[FT, {"name": "ft2", "type": "fine-tuned", "model": "tiny-llama", "base_run": "ft",
                             "base_epoch": 0}],
                  matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]},
                          {"run": "ft2", "tasks": ["const"], "epochs": [0]}])
    exp, settings, jobs = rendered(path)
    cell = read_cell(exp.dir, "ft", "const_epoch1")
    assert cell["adapter_only"] is True
    assert cell["model_path"] == str(settings.output_dir("evx", "ft") / "epoch_1")  # the adapter dir
    assert cell["base_model_path"] == str(tmp_path / "models" / "tiny-llama")
    chained = read_cell(exp.dir, "ft2", "const_epoch0")
    assert chained["base_model_path"] == str(settings.output_dir("evx", "ft") / "epoch_0")
    assert {j.id: j.after for j in jobs}["ft2.eval.const_epoch0"] == ["ft2.train"]


def test_scaffold_cli_writes_cells_and_jobs(tmp_path, scratch, cli):
    path = design(tmp_path, runs=[FT, CTL], matrix=[{"run": "ft", "tasks": ["const"], "epochs": [0, 1]},
                                                    {"run": "ctl", "tasks": ["const"], "epochs": None}])
    result = cli("scaffold", str(path))
    assert result.returncode == 0, result.stderr
    jobs = {j.id: j for j in read_jobs(tmp_path / "exp")}
    assert {"ft.train", "ft.eval.const_epoch0", "ft.eval.const_epoch1", "ctl.eval.const"} <= set(jobs)
    assert jobs["ft.eval.const_epoch0"].after == ["ft.train"]
    for job in jobs.values():
        assert (tmp_path / "exp" / job.script).is_file()
    # re-scaffolding an unchanged design changes nothing
    again = cli("scaffold", str(path))
    assert again.returncode == 0 and "0 written" in again.stdout


def test_text_completion_for_base_models_drops_the_system_prompt(tmp_path, scratch):
    models = [{"name": "Llama-3.2-1B", "path": str(tmp_path / "m")}]  # a base (non-instruct) model
    runs = [{"name": "b", "type": "control", "model": "Llama-3.2-1B"}]
    matrix = [{"run": "b", "tasks": ["const"], "epochs": None}]
    path = design(tmp_path, models=models, runs=runs, matrix=matrix, controls={"system_prompt": "Be brief."})
    exp, settings, problems = checked(path)
    assert any("text_completion" in w.line() and "system prompt" in w.line() for w in problems.warnings)
    assert worker.cell_context(exp, settings, exp.cells()[0])["dataset_type"] == "text_completion"
    assert worker.cell_context(exp, settings, exp.cells()[0])["task_args"]["system_prompt"] == ""
    # an explicit dataset_type wins, as in training
    path = design(tmp_path, models=models, runs=runs, matrix=matrix,
                  controls={"system_prompt": "Be brief.", "dataset_type": "chat_completion"})
    exp, settings, _ = checked(path)
    ctx = worker.cell_context(exp, settings, exp.cells()[0])
    assert ctx["dataset_type"] == "chat_completion" and ctx["task_args"]["system_prompt"] == "Be brief."


# -- scaffold-time problems ----------------------------------------------------------------------------
def test_prompt_override_that_differs_from_training_is_an_error(tmp_path, scratch):
    task = {"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not",
            "prompt": "Q: {input}\nA:", "system_prompt": "You add numbers."}
    path = design(tmp_path, runs=[FT, {**FT, "name": "ft_b"}, CTL], tasks=[task],
                  matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]},
                          {"run": "ft_b", "tasks": ["const"], "epochs": [1]},
                          {"run": "ctl", "tasks": ["const"], "epochs": None}])
    _, _, problems = checked(path)
    lines = error_lines(problems)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{path.resolve()}: evaluation.tasks[0].prompt: differs from the training "
                               "prompt template of run ft (and 1 more run): 'Q: {input}\\nA:' vs '{input}'; ")
    assert "remove prompt from the task" in lines[0]
    assert lines[1].startswith(f"{path.resolve()}: evaluation.tasks[0].system_prompt: differs from the "
                               "training system prompt of run ft (and 1 more run)")


def test_prompt_override_equal_to_training_or_on_controls_only_is_fine(tmp_path, scratch):
    task = {"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not",
            "prompt": "Q: {input}\nA:"}
    path = design(tmp_path, runs=[FT, CTL], tasks=[task], controls={"prompt": "Q: {input}\nA:"},
                  matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]},
                          {"run": "ctl", "tasks": ["const"], "epochs": None}])
    _, _, problems = checked(path)
    assert not problems.errors
    # a control run never trained: a task prompt applies to it without complaint
    task = {**task, "prompt": "Question: {input}"}
    path = design(tmp_path, runs=[CTL], tasks=[task], matrix=[{"run": "ctl", "tasks": ["const"], "epochs": None}])
    exp, settings, problems = checked(path)
    assert not problems.errors
    assert worker.cell_context(exp, settings, exp.cells()[0])["task_args"]["prompt"] == "Question: {input}"


def test_unknown_scorers_and_parameters(tmp_path, scratch):
    path = design(tmp_path, runs=[FT], matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]}],
                  scorers=[{"name": "exactly"}, {"name": "match", "params": {"location": "middle", "case": True}},
                           {"name": "pattern"}, {"name": "numeric", "params": {"tolerance": "1"}}],
                  tasks=[{"name": "const", "script": str(SANITY_TASK), "function": "predictable_or_not",
                          "scorers": ["match", "bleu"]}])
    _, _, problems = checked(path)
    lines = [line.split(": ", 1)[1] for line in error_lines(problems)]
    known = "known scorers: match, includes, exact, f1, pattern, numeric, calibration, continuous"
    assert f"evaluation.scorers[0].name: unknown scorer 'exactly'; did you mean exact? {known}" in lines
    assert ("evaluation.scorers[1].params.location: 'middle' is not supported; "
            "use one of begin, end, any, exact") in lines
    assert ("evaluation.scorers[1].params.case: scorer 'match' takes no parameter 'case'; "
            "it accepts: location, ignore_case, numeric") in lines
    assert "evaluation.scorers[2].params: scorer 'pattern' needs parameter 'pattern'; add params: {pattern: ...}" in lines
    assert "evaluation.scorers[3].params.tolerance: '1' is not a number; give tolerance a number value" in lines
    assert f"evaluation.tasks[0].scorers[1]: unknown scorer 'bleu'; {known}" in lines
    assert len(lines) == 6, lines


def test_task_script_problems(tmp_path, scratch):
    script = tmp_path / "tasks.py"
    script.write_text("from inspect_ai import task\n\ndef plain(data_path):\n    pass\n\n"
                      "@task\ndef good(data_path, split='validation'):\n    pass\n")
    tasks = [{"name": "a", "script": str(script), "function": "missing"},
             {"name": "b", "script": str(script), "function": "plain"},
             {"name": "c", "script": str(tmp_path / "nope.py"), "function": "x"},
             {"name": "d", "script": str(script), "function": "good"}]
    path = design(tmp_path, runs=[FT], tasks=tasks, matrix=[{"run": "ft", "tasks": ["a", "b", "c", "d"],
                                                             "epochs": [1]}])
    _, _, problems = checked(path)
    lines = [line.split(": ", 1)[1] for line in error_lines(problems)]
    assert lines[0].startswith(f"evaluation.tasks[0].function: Function 'missing' not found in {script}; ")
    assert lines[1].startswith(f"evaluation.tasks[1].function: Function 'plain' in {script} is not decorated "
                               "with @task; ")
    assert lines[2].startswith(f"evaluation.tasks[2].script: task script not found: {tmp_path / 'nope.py'}; ")
    assert len(lines) == 3, lines
    # `good` takes no prompt/system_prompt: a fine-tuned run cannot be given its training prompt
    warnings = [w.line() for w in problems.warnings]
    assert any("evaluation.tasks[3].function: good() takes no prompt or system_prompt" in w for w in warnings)


def test_missing_split_and_missing_data(tmp_path, scratch):
    data = write_dataset(tmp_path / "data" / "trainonly.json", splits=("train",))
    path = design(tmp_path, runs=[FT], data=data, matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]}])
    _, _, problems = checked(path)
    assert [line.split(": ", 1)[1] for line in error_lines(problems)] == [
        f"evaluation.tasks[0].split: {data} has no split 'validation' (splits: train); "
        "use one of train or add the split to the file"]
    data.unlink()  # not there yet: a warning (the job reads it later), as for training data
    _, _, problems = checked(path)
    assert not problems.errors and any("not found (yet)" in w.line() for w in problems.warnings)


def test_control_on_cuda_without_gpus_is_an_error(tmp_path, scratch):
    path = design(tmp_path, runs=[CTL], controls={"device": "cuda"},
                  matrix=[{"run": "ctl", "tasks": ["const"], "epochs": None}])
    _, _, problems = checked(path)
    # tiny-llama's registry default is 0 GPUs
    assert any("controls.device: run ctl evaluates on cuda but its eval jobs request no GPU" in line
               for line in error_lines(problems))


# -- scorers and dataset reader (inside the job) ---------------------------------------------------------
def test_scorer_table_matches_the_builders():
    from cruijff_kit.tools.inspect import scorers

    assert list(worker.SCORERS) == list(scorers.BUILDERS)
    for name, params in worker.SCORERS.items():
        assert sorted(params) == sorted(scorers.accepted_params(name)), name
        signature = pyinspect.signature(scorers.BUILDERS[name]).parameters
        for key, rule in params.items():
            assert rule.get("required", False) == (signature[key].default is pyinspect.Parameter.empty)


def test_build_scorers_rejects_unknown_names_and_params():
    from cruijff_kit.tools.inspect.scorers import build_scorers

    assert len(build_scorers([{"name": "match", "params": {"location": "exact"}}, "numeric", {"name": "f1"}])) == 3
    with pytest.raises(ValueError, match="unknown scorer 'bleu'; known scorers: match, includes, exact"):
        build_scorers(["bleu"])
    with pytest.raises(ValueError, match="scorer 'numeric' takes no parameter 'tol'; it accepts: tolerance"):
        build_scorers([{"name": "numeric", "params": {"tol": 1}}])


@pytest.mark.parametrize("text, value", [("47", 47.0), (" 42\n", 42.0), ("answer: -3.5 or 4", -3.5),
                                         ("42,43,44", 42.0), ("1e3", 1000.0), ("none", None), ("", None)])
def test_first_number(text, value):
    from cruijff_kit.tools.inspect.scorers import first_number

    assert first_number(text) == value


def test_numeric_scorer_scores_real_task_states():
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import CORRECT, INCORRECT, Target
    from inspect_ai.solver import TaskState

    from cruijff_kit.tools.inspect.scorers import numeric

    def score(completion, target, tolerance=0.0):
        state = TaskState(model="hf/local", sample_id=1, epoch=1, input="1,2,3", messages=[],
                          output=ModelOutput.from_content("hf/local", completion))
        return asyncio.run(numeric(tolerance=tolerance)(state, Target(target)))

    assert score("42", "42").value == CORRECT
    assert score("The answer is 42.", "42").value == CORRECT
    assert score("43", "42").value == INCORRECT
    assert score("43", "42", tolerance=1).value == CORRECT
    assert score("41.5", ["7", "42"], tolerance=0.5).value == CORRECT  # any target
    missing = score("no idea", "42")
    assert missing.value == INCORRECT and missing.explanation == "no number in the completion"
    assert score("42", "forty-two").explanation == "target 'forty-two' holds no number"


def test_dataset_presents_examples_as_training_does(tmp_path):
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser

    from cruijff_kit.tools.inspect.dataset import format_prompt, load_dataset

    path = tmp_path / "d.json"
    path.write_text(json.dumps({"validation": [{"input": "1,2", "output": 3}, {"input": "5", "output": "6"}]}))
    ds = load_dataset(path, "validation", prompt="Sum {{braces}}: {input}", system_prompt="Add.", limit=1)
    assert len(ds) == 1
    sample = ds[0]
    assert [type(m) for m in sample.input] == [ChatMessageSystem, ChatMessageUser]
    assert sample.input[0].content == "Add." and sample.input[1].content == "Sum {braces}: 1,2"
    assert sample.target == "3" and sample.id == 1 and sample.metadata == {"input": "1,2"}
    assert [type(m) for m in load_dataset(path, "validation")[1].input] == [ChatMessageUser]  # no system turn
    assert format_prompt("{input}", "x{y}") == "x{y}"
    with pytest.raises(ValueError, match="no split 'test' \\(splits: validation\\)"):
        load_dataset(path, "test")


def test_runner_rejects_a_missing_checkpoint_without_importing_inspect(tmp_path):
    config = tmp_path / "eval_config.yaml"
    config.write_text(yaml.safe_dump({"task": "t", "task_script": str(SANITY_TASK), "task_function": "f",
                                      "model_path": str(tmp_path / "nope"), "log_dir": str(tmp_path / "logs")}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cruijff_kit.tools.inspect.run_cell",
                           str(config)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert f"[cruijff_kit] error: checkpoint not found: {tmp_path / 'nope'}; did the training job finish?" \
        in proc.stderr
    assert "inspect_ai" not in proc.stderr.replace("cruijff_kit.tools.inspect", "")


def test_eval_only_checkpoint_must_exist(tmp_path, scratch):
    path = design(tmp_path, runs=[{"name": "eo", "type": "eval-only", "model": "tiny-llama",
                                   "checkpoint_path": str(tmp_path / "gone")}],
                  matrix=[{"run": "eo", "tasks": ["const"], "epochs": None}])
    _, _, problems = checked(path)
    assert [line.split(": ", 1)[1] for line in error_lines(problems)] == [
        f"runs[0].checkpoint_path: checkpoint not found: {tmp_path / 'gone'}; point checkpoint_path at an "
        "existing model or adapter directory"]


def test_runner_model_args_greedy_raw_prompt_and_chat_template_check(tmp_path):
    from cruijff_kit.tools.inspect.run_cell import RAW_TEMPLATE, CellError, generate_args, model_args

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))  # no chat_template
    text = model_args({"dataset_type": "text_completion", "device": "cpu", "dtype": "bf16",
                       "generation": {"do_sample": False}}, tmp_path, tmp_path)
    assert text["chat_template"] == RAW_TEMPLATE and text["do_sample"] is False
    assert text["tokenizer_call_args"] == {"add_special_tokens": False} and text["dtype"] == "bfloat16"
    with pytest.raises(CellError, match="has no chat template but dataset_type is chat_completion"):
        model_args({"dataset_type": "chat_completion"}, tmp_path, tmp_path)
    assert generate_args({"generation": {"do_sample": False, "temperature": 0.7, "max_tokens": 8, "seed": 1}}) \
        == {"max_tokens": 8, "seed": 1}  # temperature only when sampling
    assert generate_args({"generation": {"do_sample": True, "temperature": 0.7}}) == {"temperature": 0.7}

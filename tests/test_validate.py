"""validate: the bundled designs pass; each bad design gives its one-line error, exit 2, no traceback."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from cruijff_kit.cli import main as cli_main
from cruijff_kit.experiment.load import load_experiment

from conftest import REPO, SANITY

BASE = yaml.safe_load((SANITY / "experiment_summary.yaml").read_text())
BUNDLED = sorted(p for p in [*REPO.glob("sanity_checks/*/experiment_summary.yaml"),
                             *REPO.glob("examples/*/experiment_summary.yaml")])


def mutate(fn):
    data = copy.deepcopy(BASE)
    data.pop("profiles")
    fn(data)
    return data


def setk(path, value):
    def fn(d):
        *head, last = path
        for key in head:
            d = d[key]
        d[last] = value
    return fn


def delk(path):
    def fn(d):
        *head, last = path
        for key in head:
            d = d[key]
        del d[last]
    return fn


def seq(*fns):
    def fn(d):
        for f in fns:
            f(d)
    return fn


# (id, mutation, expected substring of the single error line)
BAD = [
    ("typo-control", seq(delk(["controls", "lora_rank"]), setk(["controls", "lora_rnak"], 8)),
     "controls.lora_rnak: unknown key; did you mean lora_rank?"),
    ("typo-top", setk(["evalution"], {}), "evalution: unknown key; did you mean evaluation?"),
    ("missing-experiment", delk(["experiment"]), "missing required key 'experiment'"),
    ("missing-question", delk(["experiment", "question"]), "experiment: missing required key 'question'"),
    ("bad-date", setk(["experiment", "date"], "27-10-2025"), "experiment.date: '27-10-2025' is not a date"),
    ("bad-type", setk(["experiment", "type"], "pilot"), "experiment.type: 'pilot' is not supported"),
    ("unsafe-experiment-name", setk(["experiment", "name"], "a b"), "experiment.name: 'a b' is not a safe name"),
    ("bad-preparation", setk(["tools", "preparation"], "axolotl"),
     "tools.preparation: 'axolotl' is not supported; supported values: torchtune"),
    ("bad-evaluation", setk(["tools", "evaluation"], "lm-eval"),
     "tools.evaluation: 'lm-eval' is not supported; supported values: inspect-ai"),
    ("empty-variable", setk(["variables", "train_on_input"], []), "variables.train_on_input: must not be empty"),
    ("unknown-variable", setk(["variables", "lora_rnk"], [4]), "variables.lora_rnk: unknown parameter"),
    ("bad-dataset-type", setk(["controls", "dataset_type"], "chat"),
     "controls.dataset_type: 'chat' is not supported"),
    ("negative-lr", setk(["controls", "lr"], -0.1), "controls.lr: -0.1 is out of range"),
    ("zero-epochs", setk(["controls", "epochs"], 0), "controls.epochs: 0 is out of range"),
    ("string-batch", setk(["controls", "batch_size"], "eight"), "controls.batch_size: 'eight' has the wrong type"),
    ("prompt-no-input", setk(["controls", "prompt"], "Answer:"),
     "controls.prompt: the prompt template has no {input} placeholder"),
    ("run-model-typo", lambda d: d["runs"][3].update(model="Llama-3.2-1B-Instruc"),
     "runs[3].model: 'Llama-3.2-1B-Instruc' is not in models.base; known: Llama-3.2-1B-Instruct"),
    ("duplicate-run", lambda d: d["runs"][1].update(name="pp_output_only"),
     "runs[1].name: 'pp_output_only' is used twice"),
    ("unsafe-run-name", lambda d: d["runs"][0].update(name="a;rm -rf ~"),
     "runs[0].name: 'a;rm -rf ~' is not a safe name"),
    ("dotdot-run-name", lambda d: d["runs"][0].update(name=".."), "runs[0].name: '..' is not allowed here"),
    ("bad-run-type", lambda d: d["runs"][0].update(type="finetuned"),
     "runs[0].type: 'finetuned' is not supported"),
    ("unknown-run-param", lambda d: d["runs"][0]["parameters"].update(lora_rnak=4),
     "runs[0].parameters.lora_rnak: unknown key; did you mean lora_rank?"),
    ("eval-only-no-checkpoint", lambda d: d["runs"].append({"name": "ev", "type": "eval-only",
                                                            "model": "Llama-3.2-1B-Instruct"}),
     "runs[8].checkpoint_path: eval-only runs need a checkpoint_path"),
    ("matrix-unknown-run", lambda d: d["evaluation"]["matrix"][0].update(run="pp_output"),
     "evaluation.matrix[0].run: 'pp_output' is not a run"),
    ("matrix-unknown-task", lambda d: d["evaluation"]["matrix"][0].update(tasks=["next_val"]),
     "evaluation.matrix[0].tasks[0]: 'next_val' is not in evaluation.tasks"),
    ("epoch-out-of-range", lambda d: d["evaluation"]["matrix"][7].update(epochs=[10]),
     "evaluation.matrix[7].epochs[0]: epoch 10 does not exist"),
    ("fine-tuned-null-epochs", lambda d: d["evaluation"]["matrix"][0].update(epochs=None),
     "evaluation.matrix[0].epochs: fine-tuned runs need the epochs to evaluate"),
    ("control-with-epochs", lambda d: (d["runs"].append({"name": "base", "type": "control",
                                                          "model": "Llama-3.2-1B-Instruct"}),
                                       d["evaluation"]["matrix"].append({"run": "base", "tasks": ["next_value"],
                                                                         "epochs": [0]})),
     "evaluation.matrix[8].epochs: control runs are evaluated once; set epochs: null"),
    ("sample-no-temperature", setk(["evaluation", "do_sample"], True),
     "evaluation.temperature: do_sample: true needs a temperature above 0"),
    ("temperature-greedy", setk(["evaluation", "temperature"], 0.7),
     "evaluation.temperature: temperature is only used when do_sample is true"),
    ("unknown-scorer-key", lambda d: d["evaluation"]["scorers"][0].update(parms={}),
     "evaluation.scorers[0].parms: unknown key; did you mean params?"),
    ("missing-models", delk(["models"]), "missing required key 'models'"),
    ("empty-models", setk(["models", "base"], []), "models.base: must not be empty"),
    ("bad-slurm-time", lambda d: d["runs"][0].update(slurm_overrides={"time": "2 hours"}),
     "runs[0].slurm_overrides.time: '2 hours' does not match the expected form"),
    ("slurm-typo", lambda d: d["runs"][0].update(slurm_overrides={"partion": "gpu"}),
     "runs[0].slurm_overrides.partion: unknown key; did you mean partition?"),
    ("lora-dropout-range", setk(["controls", "lora_dropout"], 1.5), "controls.lora_dropout: 1.5 is out of range"),
    ("base-run-unknown", lambda d: d["runs"][0].update(base_run="pp_outputonly"),
     "runs[0].base_run: 'pp_outputonly' is not a run; did you mean pp_output_only?"),
    ("missing-dataset-label", lambda d: d["runs"][0]["parameters"].pop("dataset_label"),
     "runs[0].parameters.dataset_label: data.training.path uses {dataset_label} but this run sets none"),
    ("bad-string-bool", setk(["controls", "packed"], "yes"), "controls.packed: 'yes' is not valid here"),
]


def test_bundled_designs_are_valid():
    assert BUNDLED, "no bundled designs found"
    for path in BUNDLED:
        exp = load_experiment(path)
        assert exp.runs, path
        data = yaml.safe_load(path.read_text())
        for profile in data.get("profiles", {}):
            assert load_experiment(path, profile=profile).runs


def test_tiny_profile_swaps_model_and_settings():
    exp = load_experiment(SANITY, profile="tiny")
    assert {r.model for r in exp.runs} == {"tiny-llama"}
    assert exp.controls.device == "cpu" and exp.controls.epochs == 2
    run = exp.run("pp_input_and_output")
    assert run.controls.train_on_input is True and run.dataset_label == "pp"
    assert exp.dataset_file(run).name == "pp.json"
    assert run.controls.lora_alpha == 16


def test_lora_alpha_defaults_to_twice_rank(tmp_path):
    data = mutate(seq(delk(["controls", "lora_alpha"]), lambda d: d["runs"][0]["parameters"].update(lora_rank=4)))
    path = tmp_path / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = load_experiment(path)
    assert exp.run("pp_output_only").controls.lora_alpha == 8
    assert exp.run("pp_input_and_output").controls.lora_alpha == 16


def assert_one_line_rule(stderr: str, path) -> list[str]:
    """No traceback; every error line is `FILE: key.path: what is wrong; the fix` on one line."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if not line.startswith("warning:")]
    assert errors, stderr
    for line in errors:
        assert line.startswith(f"{path}: ") and "; " in line, f"not FILE: key: message; fix -> {line!r}"
    return errors


@pytest.mark.parametrize("name,fn,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_design_one_line_error(name, fn, expected, tmp_path, scratch, cli):
    """Through the real CLI (`python -m cruijff_kit validate`), as a user's shell sees it."""
    path = tmp_path / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(mutate(fn), sort_keys=False))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = cli("validate", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = assert_one_line_rule(proc.stderr, path)
    assert any(line.startswith(f"{path}: {expected}") for line in errors), proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "validate must write nothing"


def test_at_least_thirty_bad_designs():
    assert len(BAD) >= 30


def test_all_problems_reported_at_once(tmp_path, capsys, scratch):
    data = mutate(seq(setk(["controls", "lr"], -1), lambda d: d["runs"][2].update(model="nope"),
                      setk(["tools", "preparation"], "x")))
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any("controls.lr" in line for line in err)
    assert any("runs[2].model" in line for line in err)
    assert any("tools.preparation" in line for line in err)


def test_yaml_syntax_error_reports_line_and_column(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("experiment:\n  name: x\n  runs: [a,\n")
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:4:1: YAML syntax error"), err


def test_missing_file(tmp_path, capsys):
    assert cli_main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope.yaml'}: file not found; check the path"


def test_unknown_profile(capsys):
    assert cli_main(["validate", str(SANITY), "--profile", "huge"]) == 2
    assert "profiles: profile 'huge' is not defined; known profiles: tiny" in capsys.readouterr().err


def test_json_report(tmp_path, capsys, scratch):
    data = mutate(setk(["controls", "lr"], -1))
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli_main(["validate", str(path), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["errors"][0]["path"] == "controls.lr"
    assert cli_main(["validate", str(SANITY), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["runs"] == 8 and report["cells"] == 8


def test_unused_variable_value_warns(tmp_path, capsys, scratch):
    data = mutate(setk(["variables", "lora_rank"], [8, 16]))
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli_main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "variables.lora_rank: value 16 is not used by any run" in err


def test_subprocess_no_traceback(tmp_path, cli):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(mutate(setk(["controls", "lr"], "fast"))))
    proc = cli("validate", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"{path}: controls.lr:")


def test_explicit_lora_alpha_is_kept_when_runs_vary_rank(tmp_path):
    data = mutate(lambda d: d["runs"][0]["parameters"].update(lora_rank=4))  # controls say alpha 16
    path = tmp_path / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(data))
    exp = load_experiment(path)
    assert exp.run("pp_output_only").controls.lora_rank == 4
    assert exp.run("pp_output_only").controls.lora_alpha == 16

"""`cruijff-kit generate`: experiment.yaml -> an ordinary experiment (run dirs, eval cells, jobs.json).

Runs on a copy of examples/lora_rank_with_eval. The sweep becomes a design and is scaffolded through the
torchtune worker (torchtune's built-in config under its finetune.yaml, `controls._override` over it) and
the inspect worker (an eval cell per task, with the task's `args`). The slow tests validate every config
with real `tune validate`, and run a tiny-model sweep end to end with `cruijff-kit run --executor local`,
`status --json` and `summarize`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cruijff_kit.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "lora_rank_with_eval"
BIN = Path(sys.executable).parent
TRAIN_LINE = "✓ Generated 4 training configs (run_000/finetune.yaml to run_003/finetune.yaml)"
EVAL_LINE = "✓ Generated 8 evaluation configs (run_000/eval/domain_qa_epoch0 to run_003/eval/mmlu_subset_epoch0)"
VALIDATED = "✓ Validated all evaluation tasks"


def lines(sweep: Path, train=TRAIN_LINE, evals=EVAL_LINE, jobs: int = 8) -> list[str]:
    out = [train] + ([evals, VALIDATED] if evals else [])
    return out + [f"✓ Wrote jobs.json ({jobs} jobs); next: cruijff-kit run {sweep}"]


@pytest.fixture
def sweep(tmp_path, scratch) -> Path:
    """A copy of the example (no generated files), with an isolated scratch dir."""
    target = tmp_path / "sweep"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(
        "configs", "results", "run_*", ".ck", "jobs.json", "experiment_summary.*", "analysis"))
    return target


def generate(capsys, *args) -> tuple[int, str, str]:
    rc = cli_main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if not ln.startswith("warning:")]


# -- the example -----------------------------------------------------------------------------------
def test_generate_writes_an_experiment_and_prints_its_lines(sweep, capsys):
    rc, out, err = generate(capsys, sweep)
    assert rc == 0, err
    assert out.splitlines() == lines(sweep)
    for i in range(4):
        run = sweep / f"run_{i:03d}"
        assert sorted(p.name for p in run.iterdir()) == ["eval", "eval_groups", "finetune.slurm", "finetune.yaml",
                                                         "setup_finetune.yaml"]
        assert sorted(p.name for p in (run / "eval").iterdir()) == ["domain_qa_epoch0", "mmlu_subset_epoch0"]
        assert os.access(run / "finetune.slurm", os.X_OK)
    assert (sweep / "configs" / "run_mapping.yaml").is_file() and (sweep / "experiment_summary.yaml").is_file()
    # the model dir of the default profile does not exist here: a warning on stderr, not an error
    assert "checkpoint_dir" in err and "not found (yet)" in err
    assert "data_path" not in err  # generate's tasks name their own data


def test_jobs_json_and_design_copy_make_an_ordinary_experiment(sweep, scratch, capsys):
    from cruijff_kit.experiment.load import load_experiment

    assert generate(capsys, sweep)[0] == 0
    jobs = json.loads((sweep / "jobs.json").read_text())["jobs"]
    assert [j["id"] for j in jobs if j["kind"] == "train"] == [f"run_{i:03d}.train" for i in range(4)]
    evals = [j for j in jobs if j["kind"] == "eval"]  # one job per checkpoint: both tasks with one model load
    assert len(evals) == 4 and all(j["after"] == [f"{j['run']}.train"] for j in evals)
    assert [len(j["meta"]["cells"]) for j in evals] == [2] * 4
    for job in jobs:
        assert (sweep / job["script"]).is_file()
    train = next(j for j in jobs if j["id"] == "run_002.train")
    assert train["output_dir"] == str(sweep / "results" / "run_002")
    # the design copy loads (with plain settings, as run/summarize load it) into the same runs
    design = sweep / "experiment_summary.yaml"
    assert design.read_text().startswith("# The design `cruijff-kit generate` made of ")
    exp = load_experiment(design)
    assert exp.dir == sweep and [r.name for r in exp.runs] == [f"run_{i:03d}" for i in range(4)]
    assert exp.variables == {"lora_rank": [8, 16], "lr": [1e-4, 3e-4]}
    assert [(r.controls.lora_rank, r.controls.lr) for r in exp.runs] == list(itertools.product([8, 16], [1e-4, 3e-4]))
    assert {r.controls.num_warmup_steps for r in exp.runs} == {100}  # the base config's value
    assert [c.dirname for c in exp.cells()][:2] == ["domain_qa_epoch0", "mmlu_subset_epoch0"]


def test_python_m_entry_point(sweep):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.generate", str(sweep)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == lines(sweep)


def test_grid_becomes_run_mapping_and_configs(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    mapping = yaml.safe_load((sweep / "configs" / "run_mapping.yaml").read_text())
    assert mapping["experiment"] == "lora_rank_with_eval"
    assert mapping["base_config"] == "llama3_2/1B_lora_single_device"
    assert mapping["variables"] == ["lora_rank", "learning_rate"]
    expected = [dict(zip(("lora_rank", "learning_rate"), combo))
                for combo in itertools.product([8, 16], [1e-4, 3e-4])]
    assert list(mapping["runs"]) == ["run_000", "run_001", "run_002", "run_003"]
    for i, (run, entry) in enumerate(mapping["runs"].items()):
        assert entry["params"] == expected[i]
        assert entry["train_config"] == f"{run}/finetune.yaml"
        assert entry["eval_configs"] == [f"{run}/eval/{t}_epoch0/eval_config.yaml" for t in ("domain_qa", "mmlu_subset")]
        assert entry["output_dir"] == str(sweep / "results" / run)
        assert entry["model_path"] == str(sweep / "results" / run / "epoch_0")
        config = yaml.safe_load((sweep / entry["train_config"]).read_text())
        assert config["output_dir"] == str(sweep / "results" / run)
        assert config["model"]["lora_rank"] == expected[i]["lora_rank"]
        assert config["model"]["lora_alpha"] == 16  # given in controls: kept for every rank
        assert config["optimizer"]["lr"] == pytest.approx(expected[i]["learning_rate"])
        # controls reached their torchtune keys; the built-in config's other keys are there
        assert config["tokenizer"]["max_seq_len"] == 256
        assert config["batch_size"] == 4 and config["seed"] == 42 and config["epochs"] == 1
        assert config["optimizer"]["weight_decay"] == 0.01 and config["lr_scheduler"]["num_warmup_steps"] == 100
        assert config["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2_1b"
        assert config["profiler"]["wait_steps"] == 5 and config["clip_grad_norm"] is None  # built-in only
        assert config["dataset"] == {
            "_component_": "cruijff_kit.tools.torchtune.datasets.input_output_dataset",
            "source": str(sweep / "data" / "domain_qa.json"), "split": "train", "dataset_type": "chat_completion",
            "prompt": "{input}", "system_prompt": "Answer with the chemical symbol only.",
            "train_on_input": False, "packed": False}
        assert config["dataset_val"]["split"] == "validation"  # our recipe validates at epoch ends
        # _override deep-merged last: its keys win, the built-in ones stay
        ckpt = config["checkpointer"]
        assert ckpt["output_dir"] == "${output_dir}"
        assert ckpt["checkpoint_dir"].endswith("/models/Llama-3.2-1B-Instruct")
        assert config["tokenizer"]["path"].endswith("/models/Llama-3.2-1B-Instruct/original/tokenizer.model")
        assert ckpt["model_type"] == "LLAMA3_2" and ckpt["checkpoint_files"] == ["model.safetensors"]
        assert config["gradient_accumulation_steps"] == 1  # the built-in config says 8


def test_eval_cells_pass_the_task_args_and_point_at_the_checkpoint(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    for i in range(4):
        run = f"run_{i:03d}"
        cells = [yaml.safe_load((sweep / run / "eval" / f"{t}_epoch0" / "eval_config.yaml").read_text())
                 for t in ("domain_qa", "mmlu_subset")]
        for cell in cells:
            assert cell["run"] == run
            assert cell["model_path"] == str(sweep / "results" / run / "epoch_0")
            assert cell["log_dir"] == str(sweep / run / "eval" / f"{cell['task']}_epoch0" / "logs")
            assert cell["task_script"] == str(sweep / "evals" / f"{cell['task']}.py")
            assert cell["task_function"] == cell["task"]
            assert cell["generation"] == {"do_sample": False, "max_tokens": 8, "seed": 42}  # greedy
            assert cell["device"] == "cuda" and cell["dtype"] == "bf16"
            # the training prompts (passed where the @task takes them) plus the task's args
            assert cell["task_args"]["prompt"] == "{input}"
            assert cell["task_args"]["system_prompt"] == "Answer with the chemical symbol only."
        assert cells[0]["task_args"]["data_file"] == "data/domain_qa_test.jsonl"
        assert cells[1]["task_args"]["subjects"] == ["college_chemistry", "high_school_chemistry"]
        assert cells[1]["task_args"]["limit"] == 20


def test_tiny_profile_points_at_the_tiny_model_on_cpu(sweep, scratch, capsys):
    rc, out, err = generate(capsys, sweep, "--profile", "tiny")
    assert rc == 0, err
    assert out.splitlines() == lines(
        sweep, evals="✓ Generated 4 evaluation configs (run_000/eval/domain_qa_epoch0 to run_003/eval/domain_qa_epoch0)",
        jobs=8)
    config = yaml.safe_load((sweep / "run_000" / "finetune.yaml").read_text())
    tiny = scratch / "models" / "tiny-llama"
    assert config["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2"
    assert config["model"]["embed_dim"] == 64 and config["model"]["lora_rank"] == 8
    assert config["tokenizer"]["path"] == str(tiny / "original" / "tokenizer.model")
    assert config["checkpointer"]["checkpoint_dir"] == str(tiny)
    assert (config["device"], config["dtype"], config["max_steps_per_epoch"]) == ("cpu", "fp32", 3)
    assert config["optimizer"]["fused"] is False and config["log_peak_memory_stats"] is False
    assert sorted(p.name for p in (sweep / "run_000" / "eval").iterdir()) == ["domain_qa_epoch0"]
    assert "--gres" not in (sweep / "run_000" / "finetune.slurm").read_text()


# -- errors ----------------------------------------------------------------------------------------
def test_missing_tasks_dir_is_one_exact_line(sweep, capsys):
    shutil.rmtree(sweep / "evals")
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert errors(err) == ["Evaluation tasks directory not found: evals/"]
    assert not (sweep / "jobs.json").exists()


def test_missing_function_is_one_exact_line(sweep, capsys):
    script = sweep / "evals" / "domain_qa.py"
    script.write_text(script.read_text().replace("def domain_qa(", "def domain_quiz("))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert errors(err) == ["Function 'domain_qa' not found in evals/domain_qa.py"]
    assert not (sweep / "jobs.json").exists()


def test_function_without_task_decorator_is_not_a_task(sweep, capsys):
    script = sweep / "evals" / "domain_qa.py"
    script.write_text(script.read_text().replace("@task\n", ""))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert len(errors(err)) == 1
    assert errors(err)[0].startswith("Function 'domain_qa' not found in evals/domain_qa.py; ")
    assert "@task" in errors(err)[0]


def test_unknown_keys_get_suggestions(sweep, capsys):
    def change(data):
        data["controls"]["learnin_rate"] = data["controls"].pop("learning_rate")
        data["evaluation"]["task_dir"] = "evals/"
        data["variables"]["lora_rnk"] = data["variables"].pop("lora_rank")

    edit_yaml(sweep / "experiment.yaml", change)
    rc, out, err = generate(capsys, sweep)
    assert rc == 2 and out == ""
    where = f"{sweep}/experiment.yaml"
    assert f"{where}: controls.learnin_rate: unknown control; did you mean learning_rate?" in err.splitlines()
    assert f"{where}: variables.lora_rnk: unknown control; did you mean lora_rank?" in err.splitlines()
    assert f"{where}: evaluation.task_dir: unknown key; did you mean tasks_dir?" in err.splitlines()


def test_unknown_base_config_lists_similar_builtin_names(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml",
              lambda d: d["framework_config"].update(base_config="llama3_2/1B_lora_single_devise"))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    line = next(ln for ln in err.splitlines() if "base_config" in ln)
    assert "'llama3_2/1B_lora_single_devise' is not a torchtune built-in config" in line
    assert "similar built-in configs: llama3_2/1B_lora_single_device" in line
    # a config of another recipe is named as such
    edit_yaml(sweep / "experiment.yaml", lambda d: d["framework_config"].update(base_config="llama3_2/1B_full_single_device"))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2 and "is a config of torchtune's full_finetune_single_device" in err


def test_control_values_are_checked_by_the_design_schema_at_the_sweeps_keys(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: (d["controls"].update(dpo_beta=0.2, lora_rank="eight"),
                                                    d["variables"].update(learning_rate=[1e-4, "fast"])))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "controls.dpo_beta: dpo_beta is not available in generate" in err
    edit_yaml(sweep / "experiment.yaml", lambda d: d["controls"].pop("dpo_beta"))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "controls.lora_rank: 'eight' has the wrong type; expected integer" in err
    assert "variables.learning_rate: 'fast' has the wrong type" in err
    assert len([ln for ln in err.splitlines() if "'fast'" in ln]) == 1  # once, not once per run
    edit_yaml(sweep / "experiment.yaml", lambda d: (d["controls"].update(dtype="fp16", lr_scheduler="cosin"),
                                                    d["controls"].pop("lora_rank"),
                                                    d["variables"].update(learning_rate=[1e-4])))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "controls.dtype: 'fp16' is not supported; supported values: fp32, bf16" in err
    assert "controls.lr_scheduler: 'cosin' is not supported; supported values: cosine, constant; did you " \
        "mean cosine?" in err


def test_validation_controls_reach_our_recipe(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d["controls"].update(run_val_every_n_steps=5))
    assert generate(capsys, sweep)[0] == 0
    config = yaml.safe_load((sweep / "run_000" / "finetune.yaml").read_text())
    assert config["run_val_every_n_steps"] == 5 and config["dataset_val"]["split"] == "validation"


def test_checkpoint_beyond_the_last_epoch_is_reported_at_evaluation_checkpoint(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d["evaluation"].update(checkpoint=2))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert errors(err) == [f"{sweep}/experiment.yaml: evaluation.checkpoint: epoch 2 does not exist (run_000 trains 1 "
                           "epochs) (and 3 more runs); epochs are 0-indexed: use 0..0"]


def test_override_of_the_output_dirs_is_refused(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d["controls"]["_override"]["checkpointer"].update(
        output_dir="${output_dir}/hf_model"))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "controls._override.checkpointer.output_dir: is set by generate" in err and "remove it" in err


def test_grid_size_warnings_and_confirmation(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(lora_dropout=[0.0, 0.1]))
    rc, out, err = generate(capsys, sweep, "--dry-run")
    assert rc == 0
    assert "warning:" in err and "3 variables make a 2 x 2 x 2 grid of 8 runs" in err
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(
        lora_dropout=[0.0, 0.1], seed=list(range(13))))  # 2 x 2 x 2 x 13 = 104 runs
    rc, out, err = generate(capsys, sweep)
    assert rc == 2 and "the grid has 104 runs; pass --yes" in err
    assert not (sweep / "jobs.json").exists()
    rc, out, err = generate(capsys, sweep, "--yes", "--dry-run")
    assert rc == 0 and "run_103" in out and "mmlu_subset_epoch0" in out


def test_missing_sweep_file(tmp_path, scratch, capsys):
    rc, out, err = generate(capsys, tmp_path / "nowhere")
    assert rc == 2 and f"no experiment.yaml in {tmp_path / 'nowhere'}" in err


def test_evaluation_disabled_writes_training_only(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: (d["evaluation"].update(enabled=False),
                                                    d["variables"].pop("learning_rate")))
    rc, out, err = generate(capsys, sweep)
    assert rc == 0
    assert out.splitlines() == lines(sweep, train="✓ Generated 2 training configs (run_000/finetune.yaml to "
                                     "run_001/finetune.yaml)", evals=None, jobs=2)
    assert not (sweep / "run_000" / "eval").exists()
    mapping = yaml.safe_load((sweep / "configs" / "run_mapping.yaml").read_text())
    assert mapping["runs"]["run_001"]["params"] == {"lora_rank": 16}
    assert mapping["runs"]["run_001"]["eval_configs"] == []


def test_unsafe_slurm_values_are_refused(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d.update(slurm={"time": "1 hour", "cpus": "four"}))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    found = errors(err)
    assert any(ln.startswith(f"{sweep}/experiment.yaml: slurm.time: '1 hour'") for ln in found), err
    assert any(ln.startswith(f"{sweep}/experiment.yaml: slurm.cpus: 'four' has the wrong type") for ln in found), err
    assert len(found) == 2


# -- writing ---------------------------------------------------------------------------------------
def test_dry_run_writes_nothing(sweep, capsys):
    before = tree_hashes(sweep)
    rc, out, err = generate(capsys, sweep, "--dry-run")
    assert rc == 0
    assert tree_hashes(sweep) == before
    assert "run_003" in out and "run_mapping.yaml" in out and "jobs.json" in out and "nothing written" in out


def test_regenerate_is_byte_identical_and_keeps_edits(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    first = tree_hashes(sweep)
    rc, out, err = generate(capsys, sweep)
    assert rc == 0 and out.splitlines() == lines(sweep)
    assert tree_hashes(sweep) == first
    # a file edited by hand is kept (and named) unless --force
    edited = sweep / "run_001" / "finetune.yaml"
    edited.write_text(edited.read_text() + "# my note\n")
    rc, out, err = generate(capsys, sweep)
    assert rc == 0 and "kept run_001/finetune.yaml" in err and edited.read_text().endswith("# my note\n")
    assert generate(capsys, sweep, "--force")[0] == 0
    assert tree_hashes(sweep) == first
    # a smaller grid leaves the earlier runs' files alone, names them and drops their jobs
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(learning_rate=[1e-4]))
    rc, out, err = generate(capsys, sweep)
    assert rc == 0 and out.splitlines()[0] == \
        "✓ Generated 2 training configs (run_000/finetune.yaml to run_001/finetune.yaml)"
    assert "warning: run_003/ is not part of this grid" in err
    assert {j["run"] for j in json.loads((sweep / "jobs.json").read_text())["jobs"]} == {"run_000", "run_001"}


def test_scaffold_refuses_a_generate_sweep(sweep, capsys):
    """`scaffold DIR` would re-render without the base config: it points at `generate` instead."""
    assert generate(capsys, sweep)[0] == 0
    before = tree_hashes(sweep)
    rc = cli_main(["scaffold", str(sweep)])
    out, err = capsys.readouterr()
    assert rc == 2 and f"re-render it with `cruijff-kit generate {sweep}`" in err
    assert tree_hashes(sweep) == before


# -- the overlay is the torchtune worker's ---------------------------------------------------------
def test_config_controls_read_back_what_the_worker_renders(sweep, capsys):
    """Each control the base config seeds (overlay.CONFIG_KEYS) is read from where the torchtune
    worker's finetune.yaml puts it, so a control not given keeps the base config's value."""
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.scaffold.generate_model import DEFAULTS
    from cruijff_kit.workers.torchtune.overlay import CONFIG_KEYS, config_controls

    edit_yaml(sweep / "experiment.yaml", lambda d: d["controls"].update(
        weight_decay=0.05, lora_dropout=0.1, lora_attn_modules=["q_proj", "k_proj"], apply_lora_to_mlp=False,
        max_steps_per_epoch=3, log_every_n_steps=2, num_warmup_steps=5, train_on_input=True, device="cpu",
        dtype="fp32", epochs=2, seed=7, save_adapter_weights_only=True))
    assert generate(capsys, sweep)[0] == 0
    exp = load_experiment(sweep / "experiment_summary.yaml")
    for run in exp.runs:
        read = config_controls(yaml.safe_load((sweep / run.name / "finetune.yaml").read_text()), DEFAULTS)
        assert set(read) == set(CONFIG_KEYS)
        for name, value in read.items():
            want = getattr(run.controls, name)
            assert value == (list(want) if isinstance(want, tuple) else want), f"{run.name}: {name}"


# -- slow: real torchtune, inspect, run, status and summarize ---------------------------------------
@pytest.mark.slow
def test_every_config_passes_tune_validate(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    configs = sorted(sweep.glob("run_*/finetune.yaml"))
    assert len(configs) == 4
    # real `tune validate`: the `tune` command's entry point, once per config, in one process
    code = ("import sys\nfrom torchtune._cli.tune import main\n"
            "for path in sys.argv[1:]:\n"
            "    sys.argv = ['tune', 'validate', path]\n"
            "    main()\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, configs)], capture_output=True, text=True,
                          cwd=sweep, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Config is well-formed!") == 4
    # a config torchtune cannot instantiate fails the same check (the check is real)
    broken = sweep / "broken.yaml"
    broken.write_text(configs[0].read_text().replace("lora_rank: 8", "lora_rnk: 8"))
    proc = subprocess.run([str(BIN / "tune"), "validate", str(broken)], capture_output=True, text=True,
                          cwd=sweep, timeout=600)
    assert proc.returncode != 0 and "lora_rnk" in proc.stderr


def _ck(*args, env, timeout=1800):
    return subprocess.run([sys.executable, "-m", "cruijff_kit", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_tiny_sweep_runs_end_to_end_with_run_status_and_summarize(sweep, scratch):
    """generate -> `cruijff-kit run --executor local` (real torchtune training and inspect evals on CPU)
    -> `status --json` (every job completed) -> `summarize` (one row per run, losses and scores)."""
    from cruijff_kit.models.tiny import write_tiny_if_missing

    write_tiny_if_missing(scratch / "models" / "tiny-llama")
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(learning_rate=[3e-4]))  # 2 runs
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO)}
    res = _ck("generate", sweep, "--profile", "tiny", env=env)
    assert res.returncode == 0, res.stderr
    res = _ck("run", sweep, "--executor", "local", "--wait", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _ck("status", sweep, "--json", env=env)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["done"] and len(status["jobs"]) == 4
    assert {j["id"]: j["state"] for j in status["jobs"]} == {
        "run_000.train": "completed", "run_001.train": "completed",
        "run_000.eval.domain_qa_epoch0": "completed", "run_001.eval.domain_qa_epoch0": "completed"}
    for run in ("run_000", "run_001"):  # the checkpoint is where run_mapping.yaml and the eval cells say
        assert (sweep / "results" / run / "epoch_0" / "config.json").is_file()
    res = _ck("summarize", sweep, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((sweep / "analysis" / "summary.json").read_text())
    rows = summary["rows"]
    assert [(r["run"], r["task"]) for r in rows] == [("run_000", "domain_qa"), ("run_001", "domain_qa")]
    assert [r["lora_rank"] for r in rows] == [8, 16]
    for row in rows:
        assert row["train_state"] == "completed" and row["eval_state"] == "completed"
        assert isinstance(row["final_train_loss"], float) and row["final_train_step"] == 3
        assert isinstance(row["final_val_loss"], float)
        assert row["samples"] == 8 and row["status"] == "success"
        scores = [k for k in row if k.startswith("match_") and isinstance(row[k], (int, float))]
        assert scores, row  # the task's own scorer (match, exact): accuracy present (0 for a random model)

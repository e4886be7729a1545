"""`cruijff-kit generate`: experiment.yaml -> torchtune configs, eval scripts, run mapping, sweep scripts.

Runs on a copy of examples/lora_rank_with_eval. The slow tests validate every config with real
`tune validate`, and train one config on the tiny model with stock `tune run lora_finetune_single_device`
(then evaluate it with the generated eval script, whose mmlu_subset task fails with a clear message
without inspect_evals); the slurm test has real sbatch parse the array script.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import itertools
import json
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest_scaffold import check_script  # bash -n + shellcheck, as for scaffold's job scripts
from cruijff_kit.cli import main as cli_main
from cruijff_kit.scaffold.generate_model import CONTROL_KEYS, control_settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "lora_rank_with_eval"
BIN = Path(sys.executable).parent
THREE_LINES = ["✓ Generated 4 training configs (train_000.yaml to train_003.yaml)",
               "✓ Generated 4 evaluation scripts (eval_000.py to eval_003.py)",
               "✓ Validated all evaluation tasks"]


@pytest.fixture
def sweep(tmp_path, scratch) -> Path:
    """A copy of the example (no generated files), with an isolated scratch dir."""
    target = tmp_path / "sweep"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("configs", "results", "eval_results", ".ck"))
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


def cells_of(script: Path) -> list[dict]:
    """The CELLS literal of a generated eval script."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CELLS":
            return ast.literal_eval(node.value)
    raise AssertionError(f"no CELLS in {script}")


# -- the example -----------------------------------------------------------------------------------
def test_generate_writes_every_file_and_prints_three_lines(sweep, capsys):
    rc, out, err = generate(capsys, sweep)
    assert rc == 0, err
    assert out.splitlines() == THREE_LINES
    configs = sweep / "configs"
    names = sorted(p.name for p in configs.iterdir())
    assert names == sorted([f"train_{i:03d}.yaml" for i in range(4)] + [f"eval_{i:03d}.py" for i in range(4)]
                           + ["run_mapping.yaml", "train_sweep.slurm", "eval_sweep.slurm"])
    assert os.access(configs / "eval_000.py", os.X_OK) and os.access(configs / "train_sweep.slurm", os.X_OK)
    # the model dir of the default profile does not exist here: a warning on stderr, not an error
    assert "checkpoint_dir" in err and "not found (yet)" in err


def test_python_m_entry_point(sweep):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.generate", str(sweep)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == THREE_LINES


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
        assert entry["train_config"] == f"configs/train_{i:03d}.yaml"
        assert entry["eval_script"] == f"configs/eval_{i:03d}.py"
        assert entry["output_dir"] == str(sweep / "results" / run)
        assert entry["model_path"] == str(sweep / "results" / run / "hf_model" / "epoch_0")
        assert entry["eval_dir"] == str(sweep / "eval_results" / run)
        config = yaml.safe_load((sweep / entry["train_config"]).read_text())
        assert config["output_dir"] == str(sweep / "results" / run)
        assert config["model"]["lora_rank"] == expected[i]["lora_rank"]
        assert config["model"]["lora_alpha"] == 16  # given in controls: kept for every rank
        assert config["optimizer"]["lr"] == pytest.approx(expected[i]["learning_rate"])
        # controls reached their torchtune keys; the built-in config's other keys are untouched
        assert config["tokenizer"]["max_seq_len"] == 256
        assert config["batch_size"] == 4 and config["seed"] == 42 and config["epochs"] == 1
        assert config["optimizer"]["weight_decay"] == 0.01 and config["lr_scheduler"]["num_warmup_steps"] == 100
        assert config["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2_1b"
        assert config["dataset"] == {
            "_component_": "cruijff_kit.tools.torchtune.datasets.input_output_dataset",
            "source": str(sweep / "data" / "domain_qa.json"), "split": "train", "dataset_type": "chat_completion",
            "prompt": "{input}", "system_prompt": "Answer with the chemical symbol only.",
            "train_on_input": False, "packed": False}
        # _override deep-merged last: new checkpointer keys win, the built-in ones stay
        ckpt = config["checkpointer"]
        assert ckpt["output_dir"] == "${output_dir}/hf_model"
        assert ckpt["checkpoint_dir"].endswith("/models/Llama-3.2-1B-Instruct")
        assert ckpt["model_type"] == "LLAMA3_2" and ckpt["checkpoint_files"] == ["model.safetensors"]
        assert config["gradient_accumulation_steps"] == 1


def test_eval_scripts_compile_and_point_at_the_right_paths(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    for i in range(4):
        script = sweep / "configs" / f"eval_{i:03d}.py"
        py_compile.compile(str(script), doraise=True, cfile=str(sweep / f"eval_{i}.pyc"))
        text = script.read_text()
        assert "HF_HUB_OFFLINE" in text and "cruijff_kit.tools.inspect.run_cell" in text
        cells = cells_of(script)
        assert [c["task"] for c in cells] == ["domain_qa", "mmlu_subset"]
        for cell in cells:
            assert cell["run"] == f"run_{i:03d}"
            assert cell["model_path"] == str(sweep / "results" / f"run_{i:03d}" / "hf_model" / "epoch_0")
            assert cell["log_dir"] == str(sweep / "eval_results" / f"run_{i:03d}")
            assert cell["task_script"] == str(sweep / "evals" / f"{cell['task']}.py")
            assert cell["task_function"] == cell["task"]
            assert cell["generation"] == {"do_sample": False, "max_tokens": 8, "seed": 42}  # greedy
            assert cell["device"] == "cuda" and cell["dtype"] == "bf16"
        # task args: the user's, plus the training prompts where the @task takes them
        assert cells[0]["task_args"] == {"prompt": "{input}", "system_prompt": "Answer with the chemical symbol only.",
                                         "data_file": "data/domain_qa_test.jsonl"}
        assert cells[1]["task_args"] == {"subjects": ["college_chemistry", "high_school_chemistry"], "limit": 20}


def test_sweep_scripts_are_job_arrays(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    for name, items in (("train_sweep.slurm", [f"configs/train_{i:03d}.yaml" for i in range(4)]),
                        ("eval_sweep.slurm", [f"configs/eval_{i:03d}.py" for i in range(4)])):
        text = (sweep / "configs" / name).read_text()
        lines = text.splitlines()
        assert lines[0] == "#!/bin/bash" and lines[1] == "#SBATCH --array=0-3"
        header = list(itertools.takewhile(lambda ln: ln.startswith("#") or not ln.strip(), lines))
        assert any(ln.startswith("#SBATCH --output=") for ln in header)
        assert "--gres" not in text or "gpu:1" in text
        assert [ln.strip() for ln in lines if ln.strip() in items] == items
        assert f"cd {sweep}" in text
        check_script(sweep / "configs" / name)
    train = (sweep / "configs" / "train_sweep.slurm").read_text()
    assert "run lora_finetune_single_device --config" in train


def test_tiny_profile_points_at_the_tiny_model_on_cpu(sweep, scratch, capsys):
    rc, out, err = generate(capsys, sweep, "--profile", "tiny")
    assert rc == 0, err
    assert out.splitlines() == [THREE_LINES[0], "✓ Generated 4 evaluation scripts (eval_000.py to eval_003.py)",
                                THREE_LINES[2]]
    config = yaml.safe_load((sweep / "configs" / "train_000.yaml").read_text())
    tiny = scratch / "models" / "tiny-llama"
    assert config["model"]["_component_"] == "torchtune.models.llama3_2.lora_llama3_2"
    assert config["model"]["embed_dim"] == 64 and config["model"]["lora_rank"] == 8
    assert config["tokenizer"]["path"] == str(tiny / "original" / "tokenizer.model")
    assert config["checkpointer"]["checkpoint_dir"] == str(tiny)
    assert (config["device"], config["dtype"], config["max_steps_per_epoch"]) == ("cpu", "fp32", 3)
    assert config["optimizer"]["fused"] is False and config["log_peak_memory_stats"] is False
    assert [c["task"] for c in cells_of(sweep / "configs" / "eval_000.py")] == ["domain_qa"]
    assert "--gres" not in (sweep / "configs" / "train_sweep.slurm").read_text()


# -- errors ----------------------------------------------------------------------------------------
def test_missing_tasks_dir_is_one_exact_line(sweep, capsys):
    shutil.rmtree(sweep / "evals")
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert err.strip().splitlines()[-1] == "Evaluation tasks directory not found: evals/"
    assert [ln for ln in err.splitlines() if not ln.startswith("warning:")] == \
        ["Evaluation tasks directory not found: evals/"]
    assert not (sweep / "configs").exists()


def test_missing_function_is_one_exact_line(sweep, capsys):
    script = sweep / "evals" / "domain_qa.py"
    script.write_text(script.read_text().replace("def domain_qa(", "def domain_quiz("))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert [ln for ln in err.splitlines() if not ln.startswith("warning:")] == \
        ["Function 'domain_qa' not found in evals/domain_qa.py"]
    assert not (sweep / "configs").exists()


def test_function_without_task_decorator_is_not_a_task(sweep, capsys):
    script = sweep / "evals" / "domain_qa.py"
    script.write_text(script.read_text().replace("@task\n", ""))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    errors = [ln for ln in err.splitlines() if not ln.startswith("warning:")]
    assert len(errors) == 1
    assert errors[0].startswith("Function 'domain_qa' not found in evals/domain_qa.py; ")
    assert "@task" in errors[0]


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


def test_controls_of_our_recipe_are_refused(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d["controls"].update(run_val_every_n_steps=5, lora_rank="eight"))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "controls.run_val_every_n_steps: run_val_every_n_steps is not available in generate" in err
    assert "controls.lora_rank: 'eight' has the wrong type; expected integer" in err
    edit_yaml(sweep / "experiment.yaml", lambda d: (d["controls"].update(dtype="fp16", lr_scheduler="cosin"),
                                                    d["controls"].pop("run_val_every_n_steps"),
                                                    d["controls"].pop("lora_rank")))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "controls.dtype: 'fp16' is not supported; supported values: fp32, bf16" in err
    assert "controls.lr_scheduler: 'cosin' is not supported; supported values: cosine, constant; did you " \
        "mean cosine?" in err


def test_grid_size_warnings_and_confirmation(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(lora_dropout=[0.0, 0.1]))
    rc, out, err = generate(capsys, sweep, "--dry-run")
    assert rc == 0
    assert "warning:" in err and "3 variables make a 2 x 2 x 2 grid of 8 runs" in err
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(
        lora_dropout=[0.0, 0.1], seed=list(range(13))))  # 2 x 2 x 2 x 13 = 104 runs
    rc, out, err = generate(capsys, sweep)
    assert rc == 2 and "the grid has 104 runs; pass --yes" in err
    assert not (sweep / "configs").exists()
    rc, out, err = generate(capsys, sweep, "--yes", "--dry-run")
    assert rc == 0 and "train_103.yaml" in out and "eval_103.py" in out


def test_missing_sweep_file(tmp_path, scratch, capsys):
    rc, out, err = generate(capsys, tmp_path / "nowhere")
    assert rc == 2 and f"no experiment.yaml in {tmp_path / 'nowhere'}" in err


def test_evaluation_disabled_writes_training_only(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: (d["evaluation"].update(enabled=False),
                                                    d["variables"].pop("learning_rate")))
    rc, out, err = generate(capsys, sweep)
    assert rc == 0
    assert out.splitlines() == ["✓ Generated 2 training configs (train_000.yaml to train_001.yaml)"]
    assert not list((sweep / "configs").glob("eval_*"))
    mapping = yaml.safe_load((sweep / "configs" / "run_mapping.yaml").read_text())
    assert mapping["runs"]["run_001"]["params"] == {"lora_rank": 16}
    assert mapping["runs"]["run_001"]["eval_script"] is None


# -- writing ---------------------------------------------------------------------------------------
def test_dry_run_writes_nothing(sweep, capsys):
    before = tree_hashes(sweep)
    rc, out, err = generate(capsys, sweep, "--dry-run")
    assert rc == 0
    assert tree_hashes(sweep) == before
    assert "train_003.yaml" in out and "run_mapping.yaml" in out and "nothing written" in out


def test_regenerate_is_byte_identical_and_keeps_edits(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    first = tree_hashes(sweep)
    rc, out, err = generate(capsys, sweep)
    assert rc == 0 and out.splitlines() == THREE_LINES
    assert tree_hashes(sweep) == first
    # a file edited by hand is kept (and named) unless --force
    edited = sweep / "configs" / "train_001.yaml"
    edited.write_text(edited.read_text() + "# my note\n")
    rc, out, err = generate(capsys, sweep)
    assert rc == 0 and "kept configs/train_001.yaml" in err and edited.read_text().endswith("# my note\n")
    assert generate(capsys, sweep, "--force")[0] == 0
    assert tree_hashes(sweep) == first
    # a smaller grid leaves the earlier runs' files alone and names them
    edit_yaml(sweep / "experiment.yaml", lambda d: d["variables"].update(learning_rate=[1e-4]))
    rc, out, err = generate(capsys, sweep)
    assert rc == 0 and out.splitlines()[0] == "✓ Generated 2 training configs (train_000.yaml to train_001.yaml)"
    assert "warning: configs/train_003.yaml is not part of this grid" in err
    assert "configs/train_003.yaml" not in (sweep / "configs" / "train_sweep.slurm").read_text()


# -- the mapping from controls to torchtune keys is the torchtune worker's -------------------------
def test_control_keys_match_what_scaffold_renders(tmp_path, scratch):
    """Every control of CONTROL_KEYS lands where (and as) the torchtune worker's finetune.yaml has it."""
    from cruijff_kit.errors import ProblemList
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import load_settings
    from cruijff_kit.workers.torchtune.trainer import finetune_yaml, plan_run

    data = tmp_path / "data.json"
    data.write_text(json.dumps({"train": [{"input": "a", "output": "b"}] * 4,
                                "validation": [{"input": "a", "output": "b"}] * 2}))
    design = yaml.safe_load((REPO / "examples" / "lora_rank_sweep" / "experiment_summary.yaml").read_text())
    design["data"]["training"]["path"] = str(data)
    design["controls"].update(
        lr=0.002, weight_decay=0.05, lora_dropout=0.1, lora_attn_modules=["q_proj", "k_proj"],
        apply_lora_to_mlp=False, max_seq_len=96, gradient_accumulation_steps=2, max_steps_per_epoch=3,
        log_every_n_steps=2, save_adapter_weights_only=False, num_warmup_steps=5, lr_scheduler="constant",
        packed=False, train_on_input=True, system_prompt="Be brief ${not_an_interpolation}", prompt="Q: {input}",
        device="cpu", dtype="fp32", lora_alpha=24)
    path = tmp_path / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    settings = load_settings()
    exp = load_experiment(path, settings=settings)
    for index, run in enumerate(exp.runs):
        if not run.trains:
            continue
        problems = ProblemList(str(path))
        plan = plan_run(exp, run, settings, problems, index=index)
        assert plan is not None, problems.problems
        rendered = yaml.safe_load(finetune_yaml(plan))
        for key, value in control_settings(run.controls, list(CONTROL_KEYS)).items():
            node = rendered
            for part in key.split("."):
                node = node.get(part, "<absent>") if isinstance(node, dict) else "<absent>"
            assert node == value, f"{run.name}: {key} is {node!r} in finetune.yaml, mapping says {value!r}"
        assert rendered["dataset"]["system_prompt"] == "Be brief \\${not_an_interpolation}"


# -- slow: real torchtune and inspect --------------------------------------------------------------
@pytest.mark.slow
def test_every_config_passes_tune_validate(sweep, capsys):
    assert generate(capsys, sweep)[0] == 0
    configs = sorted((sweep / "configs").glob("train_*.yaml"))
    assert len(configs) == 4
    # real `tune validate`: the `tune` command's entry point (torchtune._cli.tune:main), once per config, in
    # one process so torch is imported once
    code = ("import sys\nfrom torchtune._cli.tune import main\n"
            "for path in sys.argv[1:]:\n"
            "    sys.argv = ['tune', 'validate', path]\n"
            "    main()\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, configs)], capture_output=True, text=True,
                          cwd=sweep, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Config is well-formed!") == 4
    # a config torchtune cannot instantiate fails the same check (the check is real)
    broken = sweep / "configs" / "broken.yaml"
    broken.write_text(configs[0].read_text().replace("lora_rank: 8", "lora_rnk: 8"))
    proc = subprocess.run([str(BIN / "tune"), "validate", str(broken)], capture_output=True, text=True,
                          cwd=sweep, timeout=600)
    assert proc.returncode != 0 and "lora_rnk" in proc.stderr


@pytest.mark.slow
def test_tiny_config_trains_with_stock_recipe_and_evaluates(sweep, scratch, capsys):
    from cruijff_kit.models.tiny import make_tiny

    make_tiny(scratch / "models" / "tiny-llama", seed=0)
    # evaluate mmlu_subset too: inspect_evals is not installed here, so that task must fail clearly
    edit_yaml(sweep / "experiment.yaml", lambda d: d["profiles"]["tiny"]["evaluation"]["tasks"].append(
        {"name": "mmlu_subset", "file": "mmlu_subset.py", "function": "mmlu_subset", "args": {"limit": 3}}))
    assert generate(capsys, sweep, "--profile", "tiny")[0] == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": "",
           "WANDB_MODE": "offline", "INSPECT_DATA_DIR": str(scratch / "inspect"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run([str(BIN / "tune"), "run", "lora_finetune_single_device", "--config",
                           "configs/train_000.yaml"], cwd=sweep, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    epoch = sweep / "results" / "run_000" / "hf_model" / "epoch_0"
    assert (epoch / "config.json").is_file() and list(epoch.glob("model*.safetensors"))
    assert (epoch / "adapter_model.safetensors").is_file()
    assert json.loads((epoch / "adapter_config.json").read_text())["r"] == 8
    logs = list((sweep / "results" / "run_000" / "logs").glob("*.txt"))
    steps = [ln for log in logs for ln in log.read_text().splitlines() if ln.startswith("Step ") and "loss:" in ln]
    assert len(steps) == 3  # max_steps_per_epoch: 3 (tiny profile), one epoch
    # the generated eval script runs the @task on that checkpoint and logs under eval_results/run_000
    proc = subprocess.run([sys.executable, "configs/eval_000.py"], cwd=sweep, env=env, capture_output=True,
                          text=True, timeout=900)
    if importlib.util.find_spec("inspect_evals") is None:
        assert proc.returncode == 2, (proc.stdout + proc.stderr)[-4000:]
        assert "[cruijff_kit] error: task mmlu_subset: mmlu_subset needs the inspect_evals package" in proc.stderr
        assert "pip install inspect-evals" in proc.stderr
    else:  # pragma: no cover - MMLU data would be needed too
        assert proc.returncode in (0, 1)
    from inspect_ai.log import read_eval_log

    logs = list((sweep / "eval_results" / "run_000").glob("*.eval"))
    assert len(logs) == 1
    log = read_eval_log(str(logs[0]))
    assert log.status == "success" and log.eval.task.startswith("domain_qa")
    assert log.results.total_samples == 8
    assert log.eval.model_args["model_path"] == str(epoch)


@pytest.mark.slurm
def test_sbatch_accepts_the_array_scripts(sweep, capsys):
    if not shutil.which("sbatch"):
        pytest.skip("no sbatch")
    edit_yaml(sweep / "experiment.yaml", lambda d: d.update(slurm={"cpus": 1, "time": "00:20:00"}))
    assert generate(capsys, sweep, "--profile", "tiny")[0] == 0
    text = (sweep / "configs" / "train_sweep.slurm").read_text()
    assert "#SBATCH --cpus-per-task=1" in text and "#SBATCH --time=00:20:00" in text
    for name in ("train_sweep.slurm", "eval_sweep.slurm"):
        proc = subprocess.run(["sbatch", "--test-only", f"configs/{name}"], cwd=sweep, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "to start at" in proc.stderr  # sbatch --test-only reports on stderr


def test_unsafe_slurm_values_are_refused(sweep, capsys):
    edit_yaml(sweep / "experiment.yaml", lambda d: d.update(slurm={"time": "1 hour", "cpus": "four"}))
    rc, out, err = generate(capsys, sweep)
    assert rc == 2
    assert "slurm.time: '1 hour' cannot go into an #SBATCH line; remove spaces and quotes" in err
    assert "slurm.cpus: 'four' is not a count" in err

"""Item 5 of [compat]: `cruijff-kit migrate FILE [--write]` for upstream cruijff_kit 0.3.x files, and the
upstream-format fixtures (tests/fixtures/upstream/, written for this suite) migrate, validate and scaffold."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from conftest_scaffold import TASK_SCRIPT, ck, load_omegaconf, write_data

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream"


def _design(tmp_path: Path) -> Path:
    folder = tmp_path / "design"
    folder.mkdir()
    data = write_data(folder / "data" / "numbers.json")
    doc = json.loads(data.read_text())
    doc["test"] = doc["validation"][:4]
    data.write_text(json.dumps(doc))
    (folder / "tasks").mkdir()
    shutil.copy(TASK_SCRIPT, folder / "tasks" / "numbers_task.py")
    shutil.copy(UPSTREAM / "experiment_summary.yaml", folder / "experiment_summary.yaml")
    return folder / "experiment_summary.yaml"


def test_validate_recognises_upstream_design(tmp_path, scratch, capsys):
    path = _design(tmp_path)
    result = ck(capsys, "validate", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (f"{path}: this file uses upstream cruijff_kit (0.3.x) keys; run `cruijff-kit migrate {path}` "
                        "(prints every change; --write applies them)")
    assert any("experiment.directory: upstream key, now experiment.dir" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_migrate_design_dry_run_then_write(tmp_path, scratch, capsys):
    path = _design(tmp_path)
    original = path.read_text()
    result = ck(capsys, "migrate", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_text() == original and not path.with_name(path.name + ".bak").exists()
    out = result.stdout
    for expected in ("directory -> dir; upstream's experiment.directory is our experiment.dir",
                     "removed seed; the training seed lives in controls.seed", "added controls.seed",
                     "label -> dataset_label", "removed base_directory", "removed checkpoint_pattern",
                     "scorer -> scorers", "added function: predictable_or_not",
                     "cannot express: output.base_directory '/scratch/gpfs/SOCLAB/rs1234/ck-outputs/cap_rank_compare'",
                     "dry run: nothing written"):
        assert expected in out, (expected, out)
    result = ck(capsys, "migrate", str(path), "--write")
    assert result.returncode == 0 and "original kept as" in result.stdout
    assert path.with_name(path.name + ".bak").read_text() == original
    text = path.read_text()
    for comment in ("# a comment that must survive migration", "# written the way researchers write it",
                    "# control run: no training", "# A design as upstream cruijff_kit"):
        assert comment in text
    data = yaml.safe_load(text)
    assert data["experiment"]["dir"] == "exp" and "seed" not in data["experiment"]
    assert data["controls"]["seed"] == 1234 and data["data"]["training"]["dataset_label"] == "numbers"
    assert data["evaluation"]["scorers"] == [{"name": "match"}]
    assert data["evaluation"]["tasks"][0]["function"] == "predictable_or_not"
    assert set(data["output"]) == {"wandb_project"}
    assert ck(capsys, "migrate", str(path)).stdout.splitlines()[0].endswith("0 change(s) to the file (it reads as is)")


def test_migrated_design_validates_and_scaffolds(tmp_path, scratch, capsys):
    path = _design(tmp_path)
    assert ck(capsys, "migrate", str(path), "--write").returncode == 0
    result = ck(capsys, "validate", str(path))
    assert result.returncode == 0, result.stderr
    result = ck(capsys, "scaffold", str(path))
    assert result.returncode == 0, result.stderr
    exp = path.parent / "exp"
    rank4 = exp / "Llama-3.2-1B-Instruct_rank4"
    cfg = load_omegaconf(rank4 / "finetune.yaml")
    assert cfg["optimizer"]["lr"] == 0.0001 and cfg["seed"] == 1234 and cfg["model"]["lora_rank"] == 4
    script = (rank4 / "finetune.slurm").read_text()
    assert "#SBATCH --time=0:45:00" in script and "#SBATCH --mem=40G" in script
    assert "#SBATCH --time=0:45:00" not in (exp / "Llama-3.2-1B-Instruct_rank8" / "finetune.slurm").read_text()
    configs = [yaml.safe_load(p.read_text()) for p in sorted(exp.rglob("eval_config.yaml"))]
    assert len(configs) == 3 and all(c["generation"]["max_connections"] == 4 for c in configs)
    assert all(c["scorers"] == [{"name": "match", "params": {}}] for c in configs)
    assert all(c["task_args"]["split"] == "test" for c in configs)  # the data file has a test split


def test_scorer_string_and_flow_controls(tmp_path, capsys):
    path = tmp_path / "experiment_summary.yaml"
    path.write_text("experiment:\n  name: x\n  question: q\n  date: '2025-01-01'\n  seed: 7\ncontrols: {}\n"
                    "evaluation:\n  scorer: includes  # old single-scorer form\n  temperature: 0.0\n")
    assert ck(capsys, "migrate", str(path), "--write").returncode == 0
    data = yaml.safe_load(path.read_text())
    assert data["controls"] == {"seed": 7} and data["evaluation"]["scorers"] == [{"name": "includes"}]
    assert data["evaluation"]["temperature"] == 0.0


def test_setup_finetune_reads_upstream_keys_or_says_what_to_rename(tmp_path, scratch):
    from cruijff_kit.errors import ValidationFailed
    from cruijff_kit.scaffold.setup_finetune import setup_finetune
    from cruijff_kit.settings import load_settings

    run_dir = tmp_path / "cap_rank_compare" / "rank4"
    run_dir.mkdir(parents=True)
    write_data(scratch / "data" / "numbers.json")
    shutil.copy(UPSTREAM / "setup_finetune.yaml", run_dir / "setup_finetune.yaml")
    try:
        setup_finetune(run_dir, settings=load_settings())
        raise AssertionError("training_samples has no equivalent and must be refused")
    except ValidationFailed as exc:
        lines = exc.lines()
    assert any(line.endswith("training_samples: upstream key with no equivalent: no subset option: cut the data "
                             "file, or set max_steps_per_epoch for about that many samples per epoch; remove it")
               for line in lines), lines
    # without the key that has no equivalent, every other upstream key is read (with a warning each)
    text = (run_dir / "setup_finetune.yaml").read_text()
    (run_dir / "setup_finetune.yaml").write_text(text.replace("training_samples: 16", "#"))
    _, _, warnings = setup_finetune(run_dir, settings=load_settings())
    said = {w.path: w.message for w in warnings}
    assert said["torchtune_model_name"] == "upstream key read as model_name"
    assert said["cpus_per_task"] == "upstream key read as cpus"
    assert "read as cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val" in said["custom_recipe"]
    script = (run_dir / "finetune.slurm").read_text()
    assert "#SBATCH --cpus-per-task=2" in script and "lora_finetune_single_device_val" in script
    assert load_omegaconf(run_dir / "finetune.yaml")["optimizer"]["lr"] == 0.0001


def test_migrate_setup_finetune_then_render(tmp_path, scratch, capsys):
    run_dir = tmp_path / "cap_rank_compare" / "rank4"
    run_dir.mkdir(parents=True)
    write_data(scratch / "data" / "numbers.json")
    path = run_dir / "setup_finetune.yaml"
    shutil.copy(UPSTREAM / "setup_finetune.yaml", path)
    result = ck(capsys, "migrate", str(path), "--write")
    assert result.returncode == 0
    assert "torchtune_model_name -> model_name" in result.stdout and "cpus_per_task -> cpus" in result.stdout
    assert "cannot express: training_samples: '16'" in result.stdout
    text = path.read_text()
    assert "# A setup_finetune.yaml in upstream" in text and "training_samples" not in text
    assert "input_key" not in text and "lora_finetune_single_device_val" in text
    result = ck(capsys, "setup_finetune", str(run_dir))
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_setup_finetune_distributed_stable_recipe_name(tmp_path):
    from cruijff_kit.experiment.migrate import setup_renamed

    out, notes = setup_renamed({"custom_recipe": "lora_finetune_distributed_stable", "base_recipe": "x/y"})
    assert out == {"custom_recipe": "lora_finetune_distributed"}
    assert [n[:2] for n in notes] == [
        ("base_recipe", "upstream key with no equivalent next to custom_recipe"),
        ("custom_recipe", "upstream recipe 'lora_finetune_distributed_stable' read as lora_finetune_distributed")]


def test_migrate_settings_reads_as_is(tmp_path, capsys, monkeypatch):
    path = tmp_path / "claude.local.md"
    shutil.copy(UPSTREAM / "claude.local.upstream.md", path)
    before = path.read_bytes()
    result = ck(capsys, "migrate", str(path), "--write")
    assert result.returncode == 0 and path.read_bytes() == before
    out = result.stdout
    assert "line 27: read as conda_env = 'cruijff' (ignored '(recommended)')" in out
    assert "line 23: sets nothing (placeholder: left unset): - **Partition**: (none)" in out
    assert "cannot express: line 54: - **Default project**: `soc_finetunes`" in out
    monkeypatch.setenv("CK_SETTINGS", str(path))
    monkeypatch.delenv("CK_SCRATCH", raising=False)
    result = ck(capsys, "config", "show")
    assert f"upstream cruijff_kit format: read as is; `cruijff-kit migrate {path}`" in result.stdout


def test_migrate_bad_input_is_one_line(tmp_path, capsys):
    path = tmp_path / "experiment_summary.yaml"
    path.write_bytes(b"experiment:\n  name: caf\xe9\n")
    result = ck(capsys, "migrate", str(path))
    assert result.returncode == 2 and result.stderr.strip() == (
        f"{path}:2: not UTF-8 text: byte 0xe9 at offset 23; save the file as UTF-8")
    result = ck(capsys, "migrate", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "file not found" in result.stderr


def test_inline_entries_are_named_not_half_deleted(tmp_path, capsys):
    path = tmp_path / "experiment_summary.yaml"
    path.write_text('experiment: {name: x, question: q, date: "2025-01-01", seed: 3, directory: d}\n'
                    "controls:\n  seed: 5\nevaluation:\n  tasks:\n    - assistant_prefix: 'A:'\n      name: t\n")
    result = ck(capsys, "migrate", str(path), "--write")
    assert result.returncode == 0
    assert "line 1: seed (the training seed lives in controls.seed) is written inline; remove it by hand" in result.stdout
    assert "experiment.seed 3 differs from controls.seed 5, which is kept" in result.stdout
    assert "added controls.assistant_prefix" in result.stdout
    data = yaml.safe_load(path.read_text())  # still parses; only the safe edits were made
    assert data["experiment"]["dir"] == "d" and data["evaluation"]["tasks"][0]["name"] == "t"
    assert data["controls"] == {"seed": 5, "assistant_prefix": "A:"}  # training uses the tasks' prefix too


def test_block_values_are_removed_without_their_next_sibling(tmp_path, capsys):
    path = tmp_path / "experiment_summary.yaml"
    path.write_text("experiment:\n  name: x\ndata:\n  data_generation:\n    tool: text_gen\n    conditions:\n"
                    "      a: {features: [X]}\n  training:\n    path: d.json\n    label: d\noutput:\n"
                    "  base_directory: /x   # a comment\n  wandb_project: p\nevaluation:\n  scorer:\n    - match\n"
                    "    - includes\n  tasks:\n    - name: t\n      assistant_prefix: 'A:'\n      script: s.py\n")
    assert ck(capsys, "migrate", str(path), "--write").returncode == 0
    data = yaml.safe_load(path.read_text())
    assert data["data"] == {"training": {"path": "d.json", "dataset_label": "d"}}
    assert data["output"] == {"wandb_project": "p"}
    assert data["evaluation"] == {"scorers": [{"name": "match"}, {"name": "includes"}],
                                  "tasks": [{"name": "t", "assistant_prefix": "A:", "script": "s.py"}]}

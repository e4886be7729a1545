"""Item 1 of [compat]: one YAML reader (cruijff_kit/files.py) for every file we parse. Numbers as people
write them (YAML 1.2 floats), and hostile input refused in one line: duplicate keys, alias bombs, deep
nesting, bytes that are not UTF-8."""
from __future__ import annotations

import datetime
import math
import time
from pathlib import Path

import pytest
import yaml
from conftest_scaffold import ck, load_omegaconf, small_design, write_data, write_design
from hostile_cases import DEEP_YAML, YAML_HOSTILE

from cruijff_kit.files import YAMLInputError, read_yaml, yaml_load
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings


@pytest.mark.parametrize("text, value", [
    ("1e-4", 0.0001), ("5E-5", 5e-05), (".5", 0.5), ("-1e3", -1000.0), ("+2.5e-3", 0.0025), ("3.", 3.0),
    ("1_000.5", 1000.5), ("7", 7), ("0x10", 16), ("'1e-4'", "1e-4"), ("1e", "1e"), ("e5", "e5"),
    ("1.2.3", "1.2.3"), ("2025-11-01", None),
])
def test_numbers_as_people_write_them(text, value):
    got = yaml_load(f"v: {text}\n")["v"]
    if value is None:  # dates stay what PyYAML makes of them
        value = datetime.date(2025, 11, 1)
    assert got == value and type(got) is type(value)


def test_lists_of_learning_rates_and_special_floats():
    data = yaml_load("lr: [1e-5, 5e-5, 3e-4]\ninf: .inf\nnan: .NaN\n")
    assert data["lr"] == [1e-05, 5e-05, 0.0003]
    assert data["inf"] == math.inf and math.isnan(data["nan"])


def test_duplicate_key_names_key_and_both_lines():
    with pytest.raises(YAMLInputError) as err:
        yaml_load("controls:\n  lr: 1\n  epochs: 2\n  lr: 3\n", "d.yaml")
    assert err.value.lines() == ["d.yaml:4:3: YAML error: duplicate key 'lr' (first on line 2); keep one of them"]
    assert isinstance(err.value, ValueError)


def test_merge_keys_are_not_duplicates():
    assert yaml_load("a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n") == {"a": {"x": 1}, "b": {"x": 2}}


def test_billion_laughs_fails_fast_in_one_line():
    text, message = YAML_HOSTILE["billion-laughs"]
    start = time.perf_counter()
    with pytest.raises(YAMLInputError) as err:
        yaml_load(text, "bomb.yaml")
    assert time.perf_counter() - start < 2
    (line,) = err.value.lines()
    assert line.startswith("bomb.yaml:") and message in line


def test_recursive_alias_is_refused():
    with pytest.raises(YAMLInputError, match="contains it"):
        yaml_load("a: &a [1, *a]\n")


@pytest.mark.parametrize("text", DEEP_YAML)
def test_deep_nesting_neither_crashes_nor_hangs(text):
    start = time.perf_counter()
    with pytest.raises(YAMLInputError) as err:
        yaml_load(text, "deep.yaml")
    assert time.perf_counter() - start < 5
    assert "nested deeper than" in err.value.lines()[0] and err.value.lines()[0].startswith("deep.yaml:")


def test_moderate_nesting_is_checked_after_parsing():
    with pytest.raises(YAMLInputError, match="nested deeper than 100 levels"):
        yaml_load("[" * 150 + "]" * 150)
    assert yaml_load("[" * 50 + "]" * 50) is not None


def test_brackets_in_quoted_prose_are_not_nesting():
    text = "prompt: '" + "[" * 3000 + "'\nq: \"" + "{" * 3000 + "\"\n# " + "[" * 3000 + "\n"
    assert yaml_load(text)["prompt"] == "[" * 3000


def test_non_utf8_names_byte_offset_and_line(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(YAMLInputError) as err:
        read_yaml(path)
    assert err.value.lines() == [f"{path}:2: not UTF-8 text: byte 0xe9 at offset 11; save the file as UTF-8"]


def test_utf8_bom_is_fine(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_bytes("\ufeffa: 1e-4\n".encode())
    assert read_yaml(path) == {"a": 0.0001}


def test_files_py_imports_nothing_from_the_cli_side():
    import ast

    source = (Path(__file__).resolve().parent.parent / "cruijff_kit" / "files.py").read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m and m.startswith("cruijff_kit")} == {"cruijff_kit.errors"}


# -- every reader --------------------------------------------------------------------------------
def _design_text(tmp_path: Path) -> Path:
    design = small_design(tmp_path)
    design["controls"]["lr"] = "LR"
    design["profiles"] = {"slow": {"controls": {"lr": "PLR"}}}
    path = write_design(tmp_path, design)
    path.write_text(path.read_text().replace("lr: LR", "lr: 1e-4").replace("lr: PLR", "lr: 5E-5"))
    return path


def test_design_lr_renders_as_0_0001(tmp_path, scratch):
    path = _design_text(tmp_path)
    assert "lr: 1e-4" in path.read_text()
    scaffold(path, settings=load_settings(), quiet=True)
    cfg = load_omegaconf(tmp_path / "exp" / "llama_r4" / "finetune.yaml")
    assert cfg["optimizer"]["lr"] == 0.0001
    assert "lr: 0.0001" in (tmp_path / "exp" / "llama_r4" / "finetune.yaml").read_text()


def test_design_profile_lr(tmp_path, scratch):
    path = _design_text(tmp_path)
    scaffold(path, settings=load_settings(), quiet=True, profile="slow")
    assert load_omegaconf(tmp_path / "exp" / "llama_r4" / "finetune.yaml")["optimizer"]["lr"] == 5e-05


def test_validate_reports_duplicate_key_in_one_line(tmp_path, scratch, capsys):
    path = _design_text(tmp_path)
    path.write_text(path.read_text().replace("  epochs: 2\n", "  epochs: 2\n  epochs: 3\n"))
    result = ck(capsys, "validate", str(path))
    assert result.returncode == 2 and "duplicate key 'epochs'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_setup_finetune_yaml_lr(tmp_path, scratch, capsys):
    from cruijff_kit.scaffold.setup_finetune import setup_finetune

    run_dir = tmp_path / "proj" / "run1"
    run_dir.mkdir(parents=True)
    write_data(scratch / "data" / "pp.json")
    (run_dir / "setup_finetune.yaml").write_text("dataset_label: pp\nlr: 1e-4\nepochs: 1\n")
    setup_finetune(run_dir, settings=load_settings())
    assert load_omegaconf(run_dir / "finetune.yaml")["optimizer"]["lr"] == 0.0001


def test_experiment_yaml_lr(tmp_path, scratch, capsys):
    import shutil

    from cruijff_kit.experiment import layout

    src = Path(__file__).resolve().parent.parent / "examples" / "lora_rank_with_eval"
    target = tmp_path / "sweep"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("configs", "results", "eval_results", ".ck"))
    text = (target / "experiment.yaml").read_text()
    assert "learning_rate: [1e-4, 3e-4]" in text
    result = ck(capsys, "generate", str(target))
    assert result.returncode == 0, result.stderr
    # generate goes through the torchtune worker: each run's config is run_NNN/finetune.yaml (experiment/layout)
    configs = sorted(target.glob(f"run_*/{layout.FINETUNE_CONFIG}"))
    assert len(configs) == 4, configs
    # PyYAML reads a bare `1e-4` as a string: a float here means the value was rendered as 0.0001
    lrs = sorted({yaml.safe_load(p.read_text())["optimizer"]["lr"] for p in configs})
    assert lrs == [0.0001, 0.0003]


def test_eval_config_reader(tmp_path):
    from cruijff_kit.tools.inspect.run_cell import CellError, load_config

    path = tmp_path / "eval_config.yaml"
    path.write_text("task: t\ntask_script: s.py\ntask_function: f\nmodel_path: m\nlog_dir: l\ntemperature: 1e-1\n")
    assert load_config(path)["temperature"] == 0.1
    path.write_text("task: t\ntask: u\n")
    with pytest.raises(CellError, match="duplicate key 'task'"):
        load_config(path)


def test_large_design_parses_without_the_checks_costing_much():
    """1,000 runs: the safety checks (quick depth bound, tree walk) add little to libyaml's parse."""
    runs = "".join(f"  - name: run_{i}\n    type: fine-tuned\n    model: m\n    parameters: {{lr: 1e-4, "
                   f"lora_rank: {i % 64}}}\n" for i in range(1000))
    text = "runs:\n" + runs
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    plain = min(_timed(lambda: yaml.load(text, Loader=base)) for _ in range(3))
    ours = min(_timed(lambda: yaml_load(text)) for _ in range(3))
    assert yaml_load(text)["runs"][999]["parameters"] == {"lr": 0.0001, "lora_rank": 999 % 64}
    assert ours < 3 * plain + 0.05, (ours, plain)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_nan_and_inf_in_a_design_are_one_line_errors(tmp_path, scratch, capsys):
    path = _design_text(tmp_path)
    path.write_text(path.read_text().replace("lr: 1e-4", "lr: .nan").replace("max_tokens: 8", "max_tokens: .inf"))
    result = ck(capsys, "validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}: controls.lr: is not a finite number (.nan / .inf); write a number such as 1e-4" in result.stderr
    assert "evaluation.max_tokens: is not a finite number" in result.stderr

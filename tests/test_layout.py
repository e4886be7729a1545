"""experiment/runtypes (one table of run types), experiment/resolve (facts of a run derived once) and
experiment/layout (every path of an experiment dir): the table matches the schema, the workers agree
with ResolvedRun in the files they render, and layout stays importable from inside jobs."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import yaml

from cruijff_kit.errors import ProblemList
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.load import load_experiment, schema
from cruijff_kit.experiment.resolve import resolve_run
from cruijff_kit.experiment.runtypes import RUN_TYPES, baseline, for_objective
from cruijff_kit.render import RenderSet
from cruijff_kit.settings import load_settings
from cruijff_kit.workers.inspect import evaluator
from cruijff_kit.workers.torchtune import trainer

from conftest_eval import design, read_cell

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cruijff_kit"


# -- runtypes ----------------------------------------------------------------------------------------
def test_schema_enum_is_the_run_type_table():
    enum = schema()["properties"]["runs"]["items"]["properties"]["type"]["enum"]
    assert enum == list(RUN_TYPES)


def test_run_type_facts():
    assert [n for n, t in RUN_TYPES.items() if t.trains] == ["fine-tuned", "dpo"]
    assert {n: t.data_key for n, t in RUN_TYPES.items() if t.trains} == {"fine-tuned": "training",
                                                                        "dpo": "preference"}
    assert for_objective("sft").name == "fine-tuned" and for_objective("dpo").name == "dpo"
    assert baseline().name == "control"
    assert [n for n, t in RUN_TYPES.items() if t.needs_checkpoint_path] == ["eval-only"]
    assert [n for n, t in RUN_TYPES.items() if t.per_epoch] == ["fine-tuned", "dpo"]


# -- resolve: one derivation, every worker agrees ----------------------------------------------------
def _scaffold_parts(tmp_path, runs, matrix, models=None):
    path = design(tmp_path, runs=runs, matrix=matrix, models=models)
    settings = load_settings()
    exp = load_experiment(path, settings=settings)
    problems = ProblemList(str(exp.source))
    trainer.check(exp, settings, problems)
    evaluator.check(exp, settings, problems)
    assert not problems.errors, [p.line() for p in problems.errors]
    files = RenderSet(exp.dir)
    jobs = trainer.render(exp, settings, files) + evaluator.render(exp, settings, files)
    files.commit()
    return exp, settings, {j.id: j for j in jobs}


def test_resolved_run_matches_what_trainer_and_evaluator_render(tmp_path, scratch):
    models = [{"name": "tiny-llama", "path": str(tmp_path / "models" / "tiny-llama")},
              {"name": "base", "path": str(tmp_path / "models" / "base"), "registry": "tiny-llama"}]
    runs = [{"name": "sft", "type": "fine-tuned", "model": "tiny-llama"},
            {"name": "more", "type": "fine-tuned", "model": "sft", "base_run": "sft", "base_epoch": "best"},
            {"name": "ctl", "type": "control", "model": "tiny-llama"}]
    matrix = [{"run": "sft", "tasks": ["const"], "epochs": [1]}, {"run": "more", "tasks": ["const"], "epochs": [0]},
              {"run": "ctl", "tasks": ["const"], "epochs": None}]
    exp, settings, jobs = _scaffold_parts(tmp_path, runs, matrix, models)
    more = resolve_run(exp, exp.run("more"), settings)
    assert more is resolve_run(exp, exp.run("more"), settings)  # computed once
    assert more.model.name == "tiny-llama" and more.model_name == "tiny-llama"  # inherited along base_run
    assert more.base_epoch == 1 and more.base_checkpoint == settings.output_dir("evx", "sft") / "epoch_1"
    assert more.pick_best_from == settings.output_dir("evx", "sft")
    # the trainer trains from it, the evaluator merges onto it
    config = yaml.safe_load((exp.dir / "more" / layout.FINETUNE_CONFIG).read_text())
    assert config["checkpointer"]["checkpoint_dir"] == str(more.base_checkpoint)
    assert config["output_dir"] == str(more.output_dir)
    assert config["dataset"]["dataset_type"] == more.dataset_type
    assert jobs["more.train"].meta["base_epoch"] == "best"
    cell = read_cell(exp.dir, "more", "const_epoch0")
    assert cell["model_path"] == str(more.checkpoint(0)) and cell["base_model_path"] == str(more.adapter_base)
    assert more.adapter_base == layout.epoch_best_dir(settings.output_dir("evx", "sft"))  # picked in the eval job
    assert cell["dataset_type"] == more.dataset_type
    ctl = read_cell(exp.dir, "ctl", "const")
    assert ctl["model_path"] == str(resolve_run(exp, exp.run("ctl"), settings).model.path)
    assert ctl["base_model_path"] is None


def test_base_model_rule_is_shared(tmp_path, scratch, monkeypatch):
    """A non-instruct model: text_completion for training and for its eval cells, unless the design says."""
    from cruijff_kit.models import registry

    spec = registry.get("tiny-llama")
    monkeypatch.setitem(registry.registry(), "tiny-base", type(spec)(**{**spec.__dict__, "key": "tiny-base",
                                                                         "instruct": False}))
    models = [{"name": "tiny-base", "path": str(tmp_path / "models" / "tiny-base")}]
    runs = [{"name": "ft", "type": "fine-tuned", "model": "tiny-base"},
            {"name": "ctl", "type": "control", "model": "tiny-base"}]
    matrix = [{"run": "ft", "tasks": ["const"], "epochs": [1]}, {"run": "ctl", "tasks": ["const"], "epochs": None}]
    exp, settings, _ = _scaffold_parts(tmp_path, runs, matrix, models)
    for name in ("ft", "ctl"):
        assert resolve_run(exp, exp.run(name), settings).dataset_type == "text_completion"
    config = yaml.safe_load((exp.dir / "ft" / layout.FINETUNE_CONFIG).read_text())
    assert config["dataset"]["dataset_type"] == "text_completion"
    assert read_cell(exp.dir, "ft", "const_epoch1")["dataset_type"] == "text_completion"
    assert read_cell(exp.dir, "ctl", "const")["dataset_type"] == "text_completion"


def test_one_yaml_scalar_writer_round_trips():
    """render.yaml_scalar serves the templates' `yaml` filter and the torchtune worker alike."""
    from cruijff_kit.render import environment, yaml_scalar

    values = ["plain", "héllo ✓", "emoji 😀", "a\u2028b\x85c", "bell\x07", "${x}", "", 1, 0.0001, 1e-05,
              3.0, True, None, "1e-05", "null"]
    for value in values:
        assert yaml.safe_load(f"k: {yaml_scalar(value)}")["k"] == value, value
        assert trainer.yv(value) == yaml_scalar(value)
        assert environment().from_string("{{ v | yaml }}").render(v=value) == yaml_scalar(value)


def test_omegaconf_escape_has_one_home():
    assert trainer.omegaconf_escape("a ${x} \\${y}") == "a \\${x} \\\\\\${y}"
    assert trainer.yv("${x}", omegaconf=True) == json.dumps("\\${x}")
    defs = [f for f in PACKAGE.rglob("*.py") if "_OMEGA.sub(" in f.read_text()]
    pending = {PACKAGE / "scaffold" / "generate_model.py"}  # being rewritten: the lead points it here
    assert set(defs) - pending == {PACKAGE / "workers" / "torchtune" / "trainer.py"}


# -- layout ------------------------------------------------------------------------------------------
def test_epoch_dirs(tmp_path):
    for n in (0, 3, 12):
        (tmp_path / layout.epoch_dirname(n)).mkdir()
    (tmp_path / "epoch_x").mkdir()
    (tmp_path / "epoch_7").write_text("a file, not a checkpoint")
    assert layout.saved_epochs(tmp_path) == [0, 3, 12]
    assert layout.epoch_dir(tmp_path, 3) == tmp_path / "epoch_3"
    assert layout.epoch_of("epoch_12") == 12 and layout.epoch_of("epoch_1a") is None
    assert layout.EPOCH_DIR.match("epoch_4")


def test_cell_paths_match_the_model():
    from cruijff_kit.experiment.model import Cell

    assert Cell("r", "t", 2).dirname == layout.cell_dirname("t", 2) == "t_epoch2"
    assert Cell("r", "t", None).dirname == "t"
    assert layout.cell_relpath("r", "t_epoch2") == "r/eval/t_epoch2"


def test_module_docstring_names_every_public_name():
    doc = layout.__doc__
    public = [n for n in vars(layout) if not n.startswith("_") and n not in ("annotations", "re", "Path")]
    assert [n for n in public if n not in doc and n.lower() not in doc] == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_layout_and_runtypes_are_stdlib_only():
    for name in ("layout", "runtypes"):
        mods = _imports(PACKAGE / "experiment" / f"{name}.py")
        assert all(m.split(".")[0] in sys.stdlib_module_names or m == "__future__" for m in mods), mods
    # what tools/ pulls in when it imports layout inside a job: nothing of the CLI side
    code = ("import sys, cruijff_kit.experiment.layout; "
            "print(sorted(m for m in sys.modules if m.startswith(('cruijff_kit', 'yaml', 'jinja2', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    loaded = set(eval(out.stdout))  # noqa: S307 - our own printed list
    assert loaded <= {"cruijff_kit", "cruijff_kit.experiment", "cruijff_kit.experiment.layout",
                      "cruijff_kit.experiment.model", "cruijff_kit.experiment.runtypes"}, loaded


# Files exempt from the scans below while someone rewrites them (the lead applies layout/runtypes after).
PENDING: tuple[str, ...] = ()
LAYOUT_NAMES = {layout.DESIGN, layout.SUMMARY_MD, layout.JOBS, layout.CK_DIR, layout.STATE, layout.STATE_LOCK,
                layout.MANIFEST, layout.CONTINUATION, layout.PREFS_SCRIPT, layout.SETUP_FINETUNE,
                layout.FINETUNE_CONFIG, layout.FINETUNE_SCRIPT, layout.COMPUTE, layout.EVAL_CONFIG,
                layout.EVAL_SCRIPT, layout.JOB_LOG, layout.EXIT_CODE_SUFFIX, layout.TRAINING_SUMMARY}


def _code_strings(path: Path):
    """(line, text) of every string literal that is not a docstring, with f-strings' literal parts."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "hint", "metavar"):  # words for the user
            skip |= {id(n) for n in ast.walk(node.value)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            for i, part in enumerate(node.values):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    nxt = node.values[i + 1] if i + 1 < len(node.values) else None
                    skip.add(id(part))  # seen here, not again as a bare constant
                    yield node.lineno, part.value + ("{}" if isinstance(nxt, ast.FormattedValue) else "")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def _scan(match) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith(PENDING) or rel in ("experiment/layout.py", "experiment/runtypes.py"):
            continue
        found += [f"{rel}:{line}: {text!r}" for line, text in _code_strings(path) if match(rel, text)]
    return found


def test_no_module_spells_experiment_file_names():
    """Every file name of an experiment dir comes from experiment/layout (help and hint text may name them)."""
    def spelled(rel, text):
        return text in LAYOUT_NAMES or text.endswith(tuple(f"/{n}" for n in LAYOUT_NAMES)) or "epoch_{}" in text
    assert _scan(spelled) == []

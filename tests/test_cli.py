"""The CLI surface: every verb has --help, runs as `python -m cruijff_kit.<verb>`, and stays light."""
from __future__ import annotations

import subprocess
import sys

import pytest

from cruijff_kit.cli import VERBS, main, verb_parser

HEAVY = ("torch", "torchtune", "inspect_ai", "transformers", "matplotlib", "wandb")


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_help(verb, capsys):
    parser = verb_parser(verb)
    assert parser.description, f"{verb}: module docstring is the help text"
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: cruijff-kit {verb}" in out


LEGACY_NAMES = {"config", "log", "validate", "estimate", "task", "setup_finetune", "generate", "status", "cancel",
                "resubmit", "prefs", "losses", "view", "wandb_sync"}


@pytest.mark.parametrize("name", sorted(set(VERBS) - {"wandb"} | LEGACY_NAMES))
def test_python_dash_m_verb_runs(name):
    """`python -m cruijff_kit.<verb>` (and every module name an earlier layout had) prints that verb's help."""
    verb = {"wandb_sync": "wandb"}.get(name, name)
    proc = subprocess.run([sys.executable, "-m", f"cruijff_kit.{name}", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"usage: cruijff-kit {verb}" in proc.stdout


def test_moved_module_imports_are_the_real_modules():
    import cruijff_kit.design.validate
    import cruijff_kit.validate

    assert cruijff_kit.validate is cruijff_kit.design.validate


def test_python_dash_m_scaffold_help():
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.scaffold", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: cruijff-kit scaffold" in proc.stdout


def test_verb_parsers_import_nothing_heavy():
    code = ("import sys\nfrom cruijff_kit.cli import VERBS, verb_parser\n"
            "for v in VERBS: verb_parser(v)\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"heavy imports at verb import time: {proc.stdout}"


def test_unknown_verb_suggests(capsys):
    assert main(["scafold"]) == 2
    assert capsys.readouterr().err.strip() == "cruijff-kit: 'scafold' is not a verb; did you mean scaffold?"


def test_top_help_lists_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {verb}" in out for verb in VERBS)

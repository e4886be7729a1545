"""`cruijff-kit prompts` on everything we ship: the sanity check and every example, scaffolded with their
`tiny` profile onto a tiny model whose HF chat template behaves like the real Llama-3.2-Instruct one (a dated
system turn even without a system prompt). Every eval cell must show identical training and eval prompt
tokens, none may be skipped (a DPO run trained from the SFT checkpoint included), and the answer's end token
must be in the loss and stop generation (issue 14, Done means).

The bundled designs are found by walking examples/ and sanity_checks/, so a new example is checked too.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import REPO, run_cli

pytest.importorskip("torchtune")
pytestmark = pytest.mark.slow

DESIGN_NAMES = ("experiment_summary.yaml",)
GENERATE_NAMES = ("experiment.yaml",)


def bundled() -> list[tuple[str, str]]:
    """(relative folder, verb) of every bundled experiment: scaffold for designs, generate for sweeps."""
    found = []
    for top in ("sanity_checks", "examples"):
        for folder in sorted(p for p in (REPO / top).iterdir() if p.is_dir()):
            if any((folder / n).is_file() for n in DESIGN_NAMES):
                found.append((f"{top}/{folder.name}", "scaffold"))
            elif any((folder / n).is_file() for n in GENERATE_NAMES):
                found.append((f"{top}/{folder.name}", "generate"))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A copy of the bundled folders (relative data paths keep working; generate writes into its folder),
    settings, and the Llama-3.2-Instruct-like tiny model where the `tiny` profiles look for tiny-llama."""
    from cruijff_kit.models.tiny import make_tiny

    root = tmp_path_factory.mktemp("bundled")
    for top in ("sanity_checks", "examples"):
        shutil.copytree(REPO / top, root / "src" / top, ignore=shutil.ignore_patterns("__pycache__", "run_*"))
    settings = root / "claude.local.md"
    settings.write_text("# bundled prompts check\n")
    env = {**os.environ, "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(settings),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": "",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    make_tiny(root / "scratch" / "models" / "tiny-llama", family="llama3_2_instruct")
    return {"src": root / "src", "env": env}


def test_every_bundled_experiment_is_found():
    names = dict(bundled())
    assert names.get("sanity_checks/predictable_or_not") == "scaffold"
    assert names.get("examples/sft_then_dpo") == "scaffold"
    assert names.get("examples/lora_rank_with_eval") == "generate"
    assert len(names) >= 4, names


@pytest.mark.parametrize("folder,verb", bundled())
def test_prompts_identical_in_every_bundled_cell(folder, verb, world):
    src, env = world["src"] / folder, world["env"]
    # the check this test makes is the `prompts` call below; scaffold's own copy of it would double the cost
    made = run_cli(verb, str(src), "--profile", "tiny", cwd=world["src"], env={**env, "CK_SKIP_PROMPT_CHECK": "1"})
    assert made.returncode == 0, made.stdout + made.stderr
    if verb == "scaffold":
        info = run_cli("validate", str(src), "--profile", "tiny", "--json", cwd=world["src"], env=env)
        exp_dir, cells_planned = json.loads(info.stdout)["dir"], None
    else:
        exp_dir = str(src)
        cells_planned = len(list(src.glob("run_*/eval/*/eval_config.yaml")))
    proc = run_cli("prompts", exp_dir, "--json", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    report = json.loads(proc.stdout)
    assert report["skipped"] == [], report["skipped"]
    assert report["cells"], f"{folder}: no eval cell was checked"
    if cells_planned is not None:
        assert len(report["cells"]) == cells_planned
    for cell in report["cells"]:
        where = f"{folder}: {cell['run']}/{cell['cell']}"
        assert cell["identical"] is True, (where, cell.get("first_difference"), cell.get("error"))
        assert cell["end_in_loss"] and cell["end_is_stop"], (where, cell["end_token"], cell["stop_ids"])
        decoded = "".join(cell["pieces"][str(i)] for i in cell["eval_prompt"])
        assert "Today Date" not in decoded and "Cutting Knowledge" not in decoded, where

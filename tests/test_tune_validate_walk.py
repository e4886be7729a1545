"""Every config of every bundled design, under every profile it defines, passes torchtune's own validation.

The bundled designs are found, not listed: every `experiment_summary.yaml` (scaffold) and `experiment.yaml`
(generate) under examples/*/ and sanity_checks/*/, each without a profile and with each of its `profiles:`.
A new example is walked as soon as it is added. Every rendered finetune.yaml (SFT and DPO alike) goes
through the `tune validate` subcommand of the installed torchtune, all in one process (see
conftest_scaffold.tune_validate_many), so the walk stays well under two minutes on two cores.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest_scaffold import REPO, tune_validate_many

from cruijff_kit.files import read_yaml
from cruijff_kit.scaffold.generate import generate
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings

DESIGN_FILES = ("experiment_summary.yaml", "experiment.yaml")
GENERATED = ("configs", "results", "eval_results", ".ck", "jobs.json", "run_*", "__pycache__", "answer42_prefs*")


def bundled_designs() -> list[Path]:
    return sorted(p for folder in ("examples", "sanity_checks") for name in DESIGN_FILES
                  for p in (REPO / folder).glob(f"*/{name}"))


def walk_cases() -> list[tuple[Path, str | None]]:
    return [(design, profile) for design in bundled_designs()
            for profile in [None, *sorted(read_yaml(design).get("profiles") or {})]]


def case_id(case) -> str:
    design, profile = case
    return f"{design.parent.name}/{design.name}[{profile or 'no profile'}]"


def test_the_walk_finds_every_bundled_design(cli):
    """Everything `design files` points users at is walked, and every bundled design has a profile."""
    designs = bundled_designs()
    assert {"lora_rank_sweep", "lora_rank_with_eval", "sft_then_dpo", "predictable_or_not"} <= \
        {d.parent.name for d in designs}
    proc = cli("design", "files")
    assert proc.returncode == 0, proc.stderr
    listed = {Path(line.split()[1]) for line in proc.stdout.splitlines() if line.split()[0].startswith("example_")}
    assert listed and listed <= set(designs), listed - set(designs)
    profiled = {d for d, profile in walk_cases() if profile}
    assert profiled == set(designs), set(designs) - profiled


def _render(design: Path, profile: str | None, work: Path) -> list[Path]:
    """Render a copy of the design (its folder's neighbours too: designs point at each other's files, e.g.
    the sweep example at the sanity check's task); its finetune.yaml files."""
    for folder in ("examples", "sanity_checks"):
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns(*GENERATED))
    copy = work / design.relative_to(REPO)
    if design.name == "experiment.yaml":
        _, outcome, _ = generate(copy.parent, profile=profile, yes=True, settings=load_settings())
    else:
        outcome = scaffold(copy, profile=profile, settings=load_settings(), quiet=True, log=False)
    configs = sorted(outcome.exp.dir.glob("*/finetune.yaml"))
    n_train = sum(1 for run in outcome.exp.runs if run.trains)
    assert len(configs) == n_train > 0, (case_id((design, profile)), configs)
    return configs


@pytest.mark.slow  # one torchtune import for all configs: ~40 s on a loaded 2-core box
def test_every_config_of_every_bundled_design_passes_tune_validate(tmp_path, scratch):
    configs: dict[Path, str] = {}
    for i, (design, profile) in enumerate(walk_cases()):
        for path in _render(design, profile, tmp_path / f"case{i}"):
            configs[path] = case_id((design, profile))
    # the check is real: a config torchtune cannot bind fails the same run
    broken = tmp_path / "broken.yaml"
    broken.write_text(next(iter(configs)).read_text().replace("lora_rank:", "lora_rnk:", 1))
    results = tune_validate_many([*configs, broken])
    code, _, err = results.pop(str(broken))
    assert code != 0 and "lora_rnk" in err, err
    failed = {f"{configs[Path(p)]} {p}": err for p, (code, _, err) in results.items() if code != 0}
    assert not failed, failed
    assert len(results) == len(configs) >= 20
    assert all("Config is well-formed!" in out for _, out, _ in results.values())
    print(f"\n[walk] {len(configs)} configs of {len(walk_cases())} design/profile cases pass tune validate")
    losses = {str((read_yaml(p).get("loss") or {}).get("_component_")) for p in configs}
    assert any("DPO" in loss for loss in losses), f"no DPO config was walked: {losses}"

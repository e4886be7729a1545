"""Paired comparisons and replicates (cruijff_kit.summarize.stats) through `cruijff-kit summarize`.

The experiment is a replicated 2x2 design (lora_rank x lr, 3 seeds each, plus a base control) whose cells
hold REAL inspect-ai .eval logs of the tiny model (tests/fixtures/summarize) with their per-sample scores
rewritten to a known truth: rank 8 answers correctly with probability 0.85, rank 4 with 0.45, lr changes
nothing. summarize must find the rank difference significant after Holm correction and the lr one not.
"""
from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest

from cruijff_kit.cli import main as cli_main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "summarize"
REAL_LOG = next((FIXTURES / "experiment" / "base_pp" / "eval" / "next_value" / "logs").glob("*.eval"))
N_SAMPLES, SEEDS = 60, 3
P_CORRECT = {4: 0.45, 8: 0.85}
RANKS, LRS = [4, 8], [0.001, 0.01]

DESIGN = """\
experiment: {{name: rep2x2, question: Does rank 8 beat rank 4?, date: "2026-01-01", type: experiment}}
tools: {{preparation: torchtune, evaluation: inspect-ai}}
variables:
  lora_rank: [4, 8]
  lr: [0.001, 0.01]
controls: {{epochs: 1, device: cpu, dtype: fp32}}
models:
  base:
    - {{name: tiny-llama, path: "{{models_dir}}/tiny-llama", size_gb: 0.033}}
data:
  training:
    path: data/train.json
runs:
{runs}
evaluation:
  scorers:
    - {{name: match, params: {{location: exact}}}}
  tasks:
    - {{name: next_value, script: task.py, function: predictable_or_not, split: validation}}
  matrix:
{matrix}
"""


def write_log(dst_dir: Path, values: list[str]) -> Path:
    """A copy of a real .eval log whose samples (cloned to len(values)) score `values` (C/I) on match."""
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(REAL_LOG))
    template = log.samples[0]
    samples = []
    for i, value in enumerate(values):
        sample = template.model_copy(deep=True)
        sample.id = i + 1
        sample.scores = {"match": sample.scores["match"].model_copy(update={"value": value})}
        samples.append(sample)
    log.samples = samples
    accuracy = sum(v == "C" for v in values) / len(values)
    score = log.results.scores[0]
    score.metrics["accuracy"].value = accuracy
    score.metrics["stderr"].value = (accuracy * (1 - accuracy) / (len(values) - 1)) ** 0.5
    log.results.scores = [score]
    log.results.total_samples = log.results.completed_samples = len(values)
    dst_dir.mkdir(parents=True, exist_ok=True)
    path = dst_dir / REAL_LOG.name
    write_eval_log(log, str(path))
    return path


@pytest.fixture(scope="module")
def replicated(tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("rep") / "exp"
    rng = random.Random(7)
    runs, matrix = [], []
    for rank in RANKS:
        for lr in LRS:
            for s in range(SEEDS):
                name = f"tiny-llama_rank{rank}_lr{lr:g}_s{s}"
                runs.append(f"  - {{name: {name}, type: fine-tuned, model: tiny-llama, "
                            f"parameters: {{lora_rank: {rank}, lr: {lr}, seed: {42 + s}}}}}")
                matrix.append(f"    - {{run: {name}, tasks: [next_value], epochs: [0]}}")
                values = ["C" if rng.random() < P_CORRECT[rank] else "I" for _ in range(N_SAMPLES)]
                write_log(exp / name / "eval" / "next_value_epoch0" / "logs", values)
    runs.append("  - {name: tiny-llama_base, type: control, model: tiny-llama}")
    matrix.append("    - {run: tiny-llama_base, tasks: [next_value], epochs: null}")
    write_log(exp / "tiny-llama_base" / "eval" / "next_value" / "logs",
              ["C" if rng.random() < 0.3 else "I" for _ in range(N_SAMPLES)])
    (exp / "experiment_summary.yaml").write_text(DESIGN.format(runs="\n".join(runs), matrix="\n".join(matrix)))
    return exp


@pytest.fixture
def summarized(replicated, tmp_path, scratch) -> Path:
    exp = tmp_path / "exp"
    shutil.copytree(replicated, exp)
    assert cli_main(["summarize", str(exp), "--quiet"]) == 0
    return exp


def test_replicated_2x2_finds_the_true_difference_and_not_the_null(summarized):
    summary = json.loads((summarized / "analysis" / "summary.json").read_text())
    rows = summary["comparisons"]
    rank = [r for r in rows if r["kind"] == "variable: lora_rank"]
    lr = [r for r in rows if r["kind"] == "variable: lr"]
    control = [r for r in rows if r["kind"] == "vs control"]
    assert len(rank) == 2 and len(lr) == 2 and len(control) == 4  # 2 lr levels; 2 ranks; 4 configurations
    # 5 configurations of 3 seeds each, paired on the 60 samples every cell scored
    for r in rows:
        assert r["n"] == N_SAMPLES and r["test"] == "paired_bootstrap"
        assert r["comparisons_in_table"] == 8 and r["p_holm"] >= r["p"]
        assert r["ci_low"] <= r["diff"] <= r["ci_high"]
    for r in rank:  # the truth: +0.40
        assert r["a"].startswith("tiny-llama_rank4") and r["b"].startswith("tiny-llama_rank8")
        assert r["seeds_a"] == r["seeds_b"] == SEEDS
        assert 0.25 < r["diff"] < 0.55 and r["ci_low"] > 0 and r["significant"] and r["p_holm"] < 0.01
    for r in lr:  # the truth: 0
        assert r["ci_low"] < 0 < r["ci_high"] and not r["significant"] and r["p_holm"] > 0.05
    # the comparison is computed from the per-sample scores of the logs: mean_b is the mean over seeds
    from inspect_ai.log import read_eval_log

    config = rank[0]["b"].split(" (")[0]
    per_seed = []
    for s in range(SEEDS):
        (path,) = (summarized / f"{config}_s{s}" / "eval" / "next_value_epoch0" / "logs").glob("*.eval")
        per_seed.append(sum(x.scores["match"].value == "C" for x in read_eval_log(str(path)).samples) / N_SAMPLES)
    assert rank[0]["mean_b"] == pytest.approx(sum(per_seed) / SEEDS)
    # replicate aggregates: mean and t-interval across the seeds' header accuracies
    reps = {r["config"]: r for r in summary["replicates"]}
    assert set(reps) == {f"tiny-llama_rank{k}_lr{lr:g}" for k in RANKS for lr in LRS}
    agg = reps[config]
    assert agg["seeds"] == SEEDS and agg["mean"] == pytest.approx(sum(per_seed) / SEEDS, abs=1e-9)
    assert agg["min"] == pytest.approx(min(per_seed)) and agg["ci_low"] < agg["mean"] < agg["ci_high"]


def test_comparison_files_tables_and_forest_plot(summarized):
    analysis = summarized / "analysis"
    with (analysis / "comparisons.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["kind"] for r in rows} == {"vs control", "variable: lora_rank", "variable: lr"}
    assert all(r["significant"] in ("true", "false") for r in rows)
    with (analysis / "replicates.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    md = (analysis / "summary.md").read_text()
    assert "## Paired comparisons" in md and "## Replicates" in md and "p (Holm)" in md
    from PIL import Image

    with Image.open(analysis / "comparisons_next_value.png") as img:
        assert img.size == (1200, 800) and len(img.convert("L").getcolors(1 << 16)) > 10


def test_paired_statistics_match_hand_computed_values():
    import numpy as np

    from cruijff_kit.summarize.stats import holm, paired, seed_interval

    a = np.array([[1, 1, 0, 0, 1, 0, 1, 0, 0, 0]])
    b = np.array([[1, 1, 1, 1, 1, 1, 1, 0, 0, 1]])
    r = paired(a, b)
    # 4 discordant pairs, all favouring b: exact two-sided binomial p = 2 * 0.5**4
    assert r["test"] == "mcnemar_exact" and (r["only_a"], r["only_b"]) == (0, 4)
    assert r["p"] == pytest.approx(2 * 0.5 ** 4) and r["diff"] == pytest.approx(0.4)
    assert 0.1 <= r["ci_low"] < 0.4 < r["ci_high"] <= 0.7
    assert paired(a, b) == r  # seeded: the same CI every time
    assert paired(a, a)["p"] == 1.0
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    agg = seed_interval([0.5, 0.6, 0.7])  # t(0.975, 2) = 4.302653
    assert agg["sd"] == pytest.approx(0.1) and agg["ci_high"] - agg["mean"] == pytest.approx(4.302653 * 0.1 / 3 ** 0.5)


def test_replicates_expand_to_seeded_runs_that_scaffold_renders(tmp_path, scratch):
    import yaml

    from conftest_scaffold import small_design, write_design
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.scaffold.scaffold import scaffold
    from cruijff_kit.settings import load_settings
    from cruijff_kit.summarize.stats import configurations

    design = small_design(tmp_path)
    design.pop("runs")
    design["evaluation"].pop("matrix")
    design["variables"] = {"lora_rank": [4, 8]}
    design["controls"]["replicates"] = 3
    design["models"]["base"] = design["models"]["base"][:1]
    path = write_design(tmp_path, design)
    assert cli_main(["design", "expand", str(path), "--controls"]) == 0
    exp = load_experiment(path)
    names = [r.name for r in exp.runs]
    assert names == [f"Llama-3.2-1B-Instruct_rank{k}_s{i}" for k in (4, 8) for i in range(3)] + \
        ["Llama-3.2-1B-Instruct_base"]
    assert [exp.run(n).controls.seed for n in names[:3]] == [7, 8, 9]  # controls.seed + i
    assert configurations(exp) == {"Llama-3.2-1B-Instruct_rank4": names[:3], "Llama-3.2-1B-Instruct_rank8": names[3:6],
                                   "Llama-3.2-1B-Instruct_base": names[6:]}
    assert {c.run for c in exp.cells()} == set(names)
    out = scaffold(path, settings=load_settings(), dry_run=True)
    seeds = [yaml.safe_load(out.files.files[f"{n}/finetune.yaml"][0])["seed"] for n in names[:6]]
    assert seeds == [7, 8, 9, 7, 8, 9]


def test_replicates_out_of_range_is_a_one_line_error(tmp_path, scratch, capsys):
    from conftest_scaffold import small_design, write_design

    design = small_design(tmp_path)
    design["controls"]["replicates"] = 0
    assert cli_main(["design", "verify", str(write_design(tmp_path, design))]) == 2
    err = capsys.readouterr().err
    assert "controls.replicates" in err and "Traceback" not in err


def test_seed_as_a_variable_groups_runs_into_configurations():
    from types import SimpleNamespace as NS

    from cruijff_kit.summarize.stats import configurations

    def run(name, **params):
        return NS(name=name, type="fine-tuned", model="m", dataset_label="", parameters=params)

    exp = NS(runs=[run("m_rank4_seed1", lora_rank=4, seed=1), run("m_rank4_seed2", lora_rank=4, seed=2),
                   run("m_rank8_seed1", lora_rank=8, seed=1), run("m_rank8_seed2", lora_rank=8, seed=2),
                   NS(name="m_base", type="control", model="m", dataset_label="", parameters={})])
    assert configurations(exp) == {"m_rank4": ["m_rank4_seed1", "m_rank4_seed2"],
                                   "m_rank8": ["m_rank8_seed1", "m_rank8_seed2"], "m_base": ["m_base"]}

"""Calibration and continuous scorers: the statistics against hand-computed values, validation of their
specs, and (slow) a real eval of the tiny model through the rendered job script with logprobs requested,
its log's metrics recomputed from the logged per-sample probabilities, and summarize's reliability diagram."""
from __future__ import annotations

import json
import math
import random
import subprocess

import pytest

from cruijff_kit.cli import main as cli_main
from cruijff_kit.tools.inspect import calibration as cal

from conftest import cli_env, run_cli
from conftest_eval import design

CONF = [0.95, 0.85, 0.65, 0.55, 0.15, 0.72, 0.78]
CORRECT = [1, 0, 1, 0, 0, 1, 0]


def test_calibration_statistics_match_hand_computed_values():
    # bins: 0.95 | 0.85 | 0.65 | 0.55 | 0.15 alone; 0.72 and 0.78 share bin 7 (accuracy 0.5, confidence 0.75)
    gaps = [0.05, 0.85, 0.35, 0.55, 0.15]
    assert cal.ece(CONF, CORRECT) == pytest.approx((sum(gaps) + 2 * 0.25) / 7)
    squares = [0.0025, 0.7225, 0.1225, 0.3025, 0.0225, 0.0784, 0.6084]
    assert cal.brier(CONF, CORRECT) == pytest.approx(sum(squares) / 7)
    # positives 0.95, 0.65, 0.72 vs negatives 0.85, 0.55, 0.15, 0.78: 0.95 beats 4, 0.65 beats 2, 0.72 beats 2
    assert cal.auc(CONF, CORRECT) == pytest.approx(8 / 12)
    assert cal.auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    assert cal.auc([0.3, 0.4], [1, 1]) is None
    bins = cal.reliability_bins(CONF, CORRECT)
    assert [b["count"] for b in bins] == [0, 1, 0, 0, 0, 1, 1, 2, 1, 1]
    assert bins[7]["confidence"] == pytest.approx(0.75) and bins[7]["accuracy"] == 0.5
    assert cal.reliability_bins([1.0], [1])[9]["count"] == 1  # confidence 1 lands in the last bin


def test_label_probabilities_from_top_logprobs():
    top = [(" yes", math.log(0.6)), ("Yes", math.log(0.1)), (" no", math.log(0.2)), ("maybe", math.log(0.1)),
           (" ", math.log(0.05))]
    probs = cal.label_probs(top, ["yes", "no"])
    assert probs == pytest.approx({"yes": 0.7 / 0.9, "no": 0.2 / 0.9})
    assert cal.label_probs([("x", 0.0)], ["yes", "no"]) == {}
    # the hf provider spells tokens in byte-level BPE: 'Ġ' is a space, 'Ċ' a newline
    assert cal.token_text("ĠyesĊĊ") == " yes\n\n" and cal.token_text("\u2581no") == " no"
    assert cal.token_text("yes") == "yes" and cal.token_text(" yes") == " yes"
    assert cal.label_probs([("Ġyes", math.log(0.3)), ("ĠNo", math.log(0.1))], ["yes", "no"]) == \
        pytest.approx({"yes": 0.75, "no": 0.25})
    # a token that starts two labels is ambiguous and counts for neither
    assert cal.label_probs([("a", math.log(0.5)), ("ab", math.log(0.5))], ["abc", "abd", "b"]) == {}


def test_regression_statistics_match_hand_computed_values():
    out = cal.regression([1, 2, None, 4], [1, 3, 5, 2])  # parsed errors 0, -1, 2 on targets 1, 3, 2
    assert out["parse_rate"] == 0.75 and out["mae"] == pytest.approx(1.0)
    assert out["rmse"] == pytest.approx(math.sqrt(5 / 3)) and out["r2"] == pytest.approx(1 - 5 / 2)
    assert cal.regression([None], [1.0]) == {"parse_rate": 0.0, "mae": None, "rmse": None, "r2": None}


def test_scorer_tables_agree_and_generation_asks_for_logprobs():
    from cruijff_kit.tools.inspect.scorers import BUILDERS, accepted_params, generate_config
    from cruijff_kit.workers.inspect.evaluator import SCORERS

    for name in ("calibration", "continuous"):
        assert set(SCORERS[name]) == set(accepted_params(name))
    assert generate_config([{"name": "match"}]) == {}
    assert generate_config([{"name": "calibration", "params": {"top_logprobs": 5}}]) == \
        {"logprobs": True, "top_logprobs": 5}
    assert "calibration" in BUILDERS and "continuous" in BUILDERS


@pytest.mark.parametrize("spec, ok, text", [
    ({"name": "calibration", "params": {"labels": ["42", "7"], "positive": "42", "top_logprobs": 10}}, True, ""),
    ({"name": "continuous"}, True, ""),
    ({"name": "calibration", "params": {"labels": "yes"}}, False, "evaluation.scorers[0].params.labels"),
    ({"name": "continuous", "params": {"tolerance": 1}}, False, "takes no parameter 'tolerance'"),
])
def test_validate_accepts_the_new_scorers(tmp_path, scratch, capsys, spec, ok, text):
    """The evaluator's SCORERS table decides, and validate runs the evaluator's checks as scaffold does
    (valid means scaffold accepts it): both accept or both refuse, naming the same key."""
    path = design(tmp_path, runs=[{"name": "base", "type": "control", "model": "tiny-llama"}],
                  matrix=[{"run": "base", "tasks": ["const"], "epochs": None}], scorers=[spec])
    for verb in (["validate", str(path)], ["scaffold", str(path), "--dry-run"]):
        code = cli_main(verb)
        err = capsys.readouterr().err
        assert (code == 0) == ok, (verb[0], err)
        assert text in err and "Traceback" not in err, (verb[0], err)


def forty_two_data(path, n_train: int = 96, n_val: int = 16, seed: int = 3):
    """Train on the constant answer 42; validate on 42 half the time and 7 otherwise: the fine-tuned model
    answers 42 with high confidence and is right half the time (overconfident, so ECE is large)."""
    rng = random.Random(seed)

    def rows(n, outputs):
        return [{"input": ",".join(str(rng.randint(1, 1000)) for _ in range(5)), "output": outputs[i % len(outputs)]}
                for i in range(n)]

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": rows(n_train, ["42"]), "validation": rows(n_val, ["42", "7"])}))
    return path


@pytest.mark.slow
def test_calibration_and_continuous_on_a_real_tiny_model_eval(tmp_path, tiny_model):
    """Train the tiny model briefly on the answer 42, evaluate it with logprobs on 42-or-7, summarize."""
    from inspect_ai.log import read_eval_log

    tiny = tiny_model
    env = cli_env(tmp_path, "# settings\n")
    data = forty_two_data(tmp_path / "data" / "c.json")
    controls = {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 12, "lr": 0.01, "max_seq_len": 64,
                "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True,
                "validation_during_training": False}
    path = design(tmp_path, data=data, controls=controls, models=[{"name": "tiny-llama", "path": str(tiny)}],
                  runs=[{"name": "yn", "type": "fine-tuned", "model": "tiny-llama"}],
                  matrix=[{"run": "yn", "tasks": ["const"], "epochs": [1]}],
                  scorers=[{"name": "calibration", "params": {"labels": ["42", "7"], "positive": "42",
                                                              "top_logprobs": 20}},
                           {"name": "continuous"}],
                  evaluation={"limit": 16, "max_tokens": 3})
    assert run_cli("scaffold", str(path), env=env).returncode == 0
    exp = tmp_path / "exp"
    for kind in ("train", "eval"):
        job = next(j for j in json.loads((exp / "jobs.json").read_text())["jobs"] if j["kind"] == kind)
        proc = subprocess.run(["bash", str(exp / job["script"])], env={**env, "CK_JOB_ID": job["id"]},
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (log_path,) = (exp / "yn" / "eval" / "const_epoch1" / "logs").glob("*.eval")
    log = read_eval_log(str(log_path))
    assert log.eval.model_generate_config.logprobs is True and log.eval.model_generate_config.top_logprobs == 20
    conf, correct, p_pos, is_pos = [], [], [], []
    for sample in log.samples:
        first = next(x for x in sample.output.choices[0].logprobs.content if cal.token_text(x.token).strip())
        assert len(first.top_logprobs) == 20
        meta = sample.scores["calibration"].metadata
        probs = cal.label_probs([(t.token, t.logprob) for t in first.top_logprobs], ["42", "7"])
        assert probs and meta["probs"] == pytest.approx(probs)
        assert meta["confidence"] == pytest.approx(max(probs.values()))
        assert meta["correct"] == int(max(probs, key=probs.get) == sample.target)
        conf.append(meta["confidence"])
        correct.append(meta["correct"])
        p_pos.append(probs["42"])
        is_pos.append(int(sample.target == "42"))
        value, meta = sample.scores["continuous"].value, sample.scores["continuous"].metadata
        assert (math.isnan(value) and meta["prediction"] is None) or value == abs(meta["prediction"] - meta["target"])
    print(f"\n[calibration] confidences {[round(c, 3) for c in conf]}, correct {correct}")
    metrics = {k: v.value for s in log.results.scores if s.name == "calibration" for k, v in s.metrics.items()}
    assert metrics["accuracy"] == pytest.approx(sum(correct) / len(correct))
    assert metrics["ece"] == pytest.approx(cal.ece(conf, correct))
    assert metrics["brier"] == pytest.approx(cal.brier(conf, correct))
    assert 0.3 <= sum(correct) / len(correct) <= 0.7 and sum(conf) / len(conf) > 0.8  # overconfident
    assert metrics["ece"] > 0.2
    expected_auc = cal.auc(p_pos, is_pos)
    assert expected_auc is not None and metrics["auc"] == pytest.approx(expected_auc)
    regression = {k: v.value for s in log.results.scores if s.name == "continuous" for k, v in s.metrics.items()}
    preds = [s.scores["continuous"].metadata["prediction"] for s in log.samples]
    targets = [s.scores["continuous"].metadata["target"] for s in log.samples]
    for key, value in cal.regression(preds, targets).items():
        assert regression[key] == pytest.approx(value, nan_ok=True) if value is not None else math.isnan(regression[key])
    assert run_cli("summarize", str(exp), "--quiet", env=env).returncode == 0
    summary = json.loads((exp / "analysis" / "summary.json").read_text())
    assert summary["rows"][0]["calibration_ece"] == pytest.approx(metrics["ece"])
    assert (exp / "analysis" / "reliability_const.png").stat().st_size > 10_000


def test_scorers_on_a_task_state_with_and_without_token_probabilities():
    import asyncio

    from inspect_ai.model import Logprob, Logprobs, ModelOutput, TopLogprob
    from inspect_ai.scorer import Target
    from inspect_ai.solver import TaskState

    from cruijff_kit.tools.inspect.scorers import calibration, continuous

    state = TaskState(model="hf/local", sample_id=1, epoch=1, input="2+2?", messages=[])
    state.output = ModelOutput.from_content("hf/local", "4")
    score = asyncio.run(calibration(labels=["4", "6"])(state, Target("4")))
    assert score.value == "I" and "no token probabilities" in score.explanation
    top = [TopLogprob(token="4", logprob=math.log(0.6)), TopLogprob(token="6", logprob=math.log(0.2)),
           TopLogprob(token="x", logprob=math.log(0.1))]
    state.output.choices[0].logprobs = Logprobs(content=[
        Logprob(token="Ġ", logprob=-0.1, top_logprobs=[TopLogprob(token="Ġ", logprob=-0.1)]),  # a blank token
        Logprob(token="4", logprob=math.log(0.6), top_logprobs=top)])
    score = asyncio.run(calibration(labels=["4", "6"], positive="6")(state, Target("6")))
    assert score.value == "I" and score.answer == "4"
    assert score.metadata["confidence"] == pytest.approx(0.75) and score.metadata["p_positive"] == pytest.approx(0.25)
    assert score.metadata["is_positive"] == 1
    score = asyncio.run(continuous()(state, Target("5.5")))
    assert score.value == pytest.approx(1.5) and score.metadata == {"prediction": 4.0, "target": 5.5}

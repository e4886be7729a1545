"""LoRA DPO: the preference dataset (tokenized as SFT is) and the recipe, run for real on the tiny model.

The slow test chains the real pipeline: a short SFT run with our SFT recipe, then DPO whose checkpointer
points at the SFT run's epoch_0/ (config rendered from tests/fixtures/dpo/dpo.yaml.j2). It checks that
rewards learn, that every saved epoch is exactly SFT weights + that epoch's LoRA delta (the CPU
checkpoint-corruption regression, and the proof that DPO started from the SFT checkpoint), and the
metrics and training_summary.json the recipe promises.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchtune")

pytest.register_assert_rewrite("conftest_dpo")  # it is also a plugin (pytest_plugins below)
from conftest_dpo import (  # noqa: E402
    DPO_RECIPE,
    SFT_RECIPE,
    disk_log_lines,
    dpo_context,
    io_records,
    preference_pairs,
    run_recipe,
    sft_config,
    write_json,
)

from cruijff_kit.render import environment  # noqa: E402


def render(name: str, **ctx) -> str:
    """A hand-built DPO config for the recipe's unit tests (scaffolded DPO runs render through
    templates/torchtune/finetune.yaml.j2); same filters as the package's renderer."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "fixtures" / "dpo")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(environment().filters)
    return env.get_template(name.rsplit("/", 1)[-1]).render(**ctx)

pytest_plugins = ["conftest_dpo"]  # fixtures: tiny_model, tt_tokenizer


# -- preference dataset ----------------------------------------------------------------------------
def _sft_item(tokenizer, tmp_path, inp, out, **kw):
    from cruijff_kit.tools.torchtune.datasets import input_output_dataset

    src = write_json(tmp_path / f"sft_{abs(hash((inp, out)))}.json", {"train": [{"input": inp, "output": out}]})
    return input_output_dataset(tokenizer, source=str(src), split="train", **kw)[0]


@pytest.mark.parametrize("dataset_type", ["chat_completion", "text_completion"])
def test_pairs_tokenize_exactly_like_sft(tt_tokenizer, tmp_path, dataset_type):
    from cruijff_kit.tools.torchtune.preference import preference_dataset

    kw = {"dataset_type": dataset_type, "prompt": "Continue: {input}",
          "system_prompt": "Answer with a number." if dataset_type == "chat_completion" else ""}
    src = write_json(tmp_path / "p.json", {"train": [{"prompt": "1,2,3", "chosen": "4", "rejected": "17"}]})
    item = preference_dataset(tt_tokenizer, source=str(src), split="train", **kw)[0]
    for side, response in (("chosen", "4"), ("rejected", "17")):
        sft = _sft_item(tt_tokenizer, tmp_path, "1,2,3", response, **kw)
        assert item[f"{side}_input_ids"] == sft["tokens"]
        assert item[f"{side}_labels"] == sft["labels"]
    # only the response (plus end token) is labelled; prompt tokens are masked
    labelled = [t for t in item["chosen_labels"] if t != -100]
    assert tt_tokenizer.decode(labelled, skip_special_tokens=True) == "4"


def test_messages_records_and_top_level_list(tt_tokenizer, tmp_path):
    from cruijff_kit.tools.torchtune.preference import preference_dataset

    messages = [{"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "1,2,3"}]
    src = write_json(tmp_path / "m.json", [{"messages": messages, "chosen": "4", "rejected": "9", "score": 1}])
    ds = preference_dataset(tt_tokenizer, source=str(src))  # a top-level list is the train split
    sft = _sft_item(tt_tokenizer, tmp_path, "1,2,3", "4", system_prompt="Answer with a number.")
    assert ds[0]["chosen_input_ids"] == sft["tokens"] and ds[0]["chosen_labels"] == sft["labels"]
    with pytest.raises(ValueError, match="one top-level list.*no 'validation' split"):
        preference_dataset(tt_tokenizer, source=str(src), split="validation")


@pytest.mark.parametrize("records, match", [
    ({"train": [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "rejected": "c"}]},
     r"train\[1\] lacks 'chosen'"),
    ({"train": [{"chosen": "b", "rejected": "c"}]}, r"train\[0\] lacks 'prompt'"),
    ({"train": [{"prompt": "a", "chosen": ["b"], "rejected": "c"}]}, r"train\[0\]\.chosen must be a string"),
    ({"train": [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                 "chosen": "b", "rejected": "c"}]}, r"train\[0\]\.messages ends with an assistant turn"),
    ({"train": [{"messages": [{"role": "bot", "content": "a"}], "chosen": "b", "rejected": "c"}]},
     r"train\[0\]\.messages\[0\]\.role must be one of"),
    ({"validation": []}, r"no 'train' split \(top-level keys: 'validation'\)"),
    ({"train": []}, r"the 'train' split is empty"),
])
def test_bad_records_name_index_and_key(tt_tokenizer, tmp_path, records, match):
    from cruijff_kit.tools.torchtune.preference import preference_dataset

    src = write_json(tmp_path / "bad.json", records)
    with pytest.raises(ValueError, match=match):
        preference_dataset(tt_tokenizer, source=str(src))


def test_template_renders_a_complete_config(tiny_model, tmp_path):
    from omegaconf import OmegaConf

    ctx = dpo_context(model_dir=tiny_model, checkpoint_dir=tmp_path / "sft" / "epoch_0", output_dir=tmp_path / "o",
                      source=tmp_path / "prefs.json", wandb={"project": "p", "entity": "e", "group": "g", "name": "n"})
    cfg = OmegaConf.create(render("torchtune/dpo.yaml.j2", **ctx))
    assert cfg.checkpointer.checkpoint_dir == str(tmp_path / "sft" / "epoch_0")
    assert cfg.checkpointer.output_dir == str(tmp_path / "o")  # interpolated
    assert cfg.loss._component_ == "torchtune.rlhf.loss.DPOLoss" and cfg.loss.beta == 0.1
    assert cfg.dataset._component_ == "cruijff_kit.tools.torchtune.preference.preference_dataset"
    assert cfg.dataset_val.split == "validation" and cfg.run_val_at_start is True
    assert cfg.model.norm_eps == pytest.approx(1e-5) and list(cfg.model.lora_attn_modules) == [
        "q_proj", "k_proj", "v_proj", "output_proj"]
    assert cfg.extra_metric_loggers[0].project == "p"
    no_val = OmegaConf.create(render("torchtune/dpo.yaml.j2", **{**ctx, "validation": False, "wandb": None}))
    assert "dataset_val" not in no_val and "extra_metric_loggers" not in no_val


# -- the recipe, for real: SFT -> DPO from the SFT checkpoint -----------------------------------------
@pytest.fixture(scope="module")
def sft_then_dpo(tiny_model, tmp_path_factory):
    """(sft epoch_0 dir, dpo output dir, wall seconds of the DPO run)."""
    import time

    from omegaconf import OmegaConf

    root = tmp_path_factory.mktemp("sft_dpo")
    data = write_json(root / "sft.json", {"train": io_records(24, 1), "validation": io_records(8, 2)})
    sft_out = root / "ck-out-sft"
    sft_yaml = root / "finetune.yaml"
    OmegaConf.save(OmegaConf.create(sft_config(model_dir=tiny_model, output_dir=sft_out, source=data)), sft_yaml)
    proc = run_recipe(SFT_RECIPE, sft_yaml, root / "sft.log")
    assert proc.returncode == 0, (root / "sft.log").read_text()[-3000:]
    sft_epoch = sft_out / "epoch_0"

    prefs = write_json(root / "prefs.json", {"train": preference_pairs(32, 3), "validation": preference_pairs(16, 4)})
    dpo_out = root / "ck-out-dpo"
    ctx = dpo_context(model_dir=tiny_model, checkpoint_dir=sft_epoch, output_dir=dpo_out, source=prefs)
    dpo_yaml = root / "dpo.yaml"
    dpo_yaml.write_text(render("torchtune/dpo.yaml.j2", **ctx))
    started = time.monotonic()
    proc = run_recipe(DPO_RECIPE, dpo_yaml, root / "dpo.log")
    seconds = time.monotonic() - started
    assert proc.returncode == 0, (root / "dpo.log").read_text()[-3000:]
    return sft_epoch, dpo_out, seconds


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_dpo_rewards_learn_and_summary(sft_then_dpo, tiny_model):
    sft_epoch, out, seconds = sft_then_dpo
    s = json.loads((out / "training_summary.json").read_text())
    print(f"DPO wall {seconds:.1f}s; summary wall_s {s['wall_s']}; reward accuracy "
          f"{s['first_reward_accuracy']} -> {s['final_reward_accuracy']}; val {s['first_val_reward_accuracy']} -> "
          f"{s['final_val_reward_accuracy']}; val policy accuracy {s['first_val_policy_accuracy']} -> "
          f"{s['final_val_policy_accuracy']}")
    assert s["recipe"] == "cruijff_kit.lora_dpo_single_device_val" and s["objective"] == "dpo"
    assert s["complete"] and s["epochs_completed"] == 2 and s["steps"] == 8 and s["train_pairs"] == 32
    assert s["reference_checkpoint_dir"] == str(sft_epoch) and s["beta"] == 0.1
    for key in ("tokens", "wall_s", "tokens_per_s", "peak_memory_gb", "final_train_loss", "best_train_loss",
                "final_val_loss", "best_val_loss"):
        assert s[key] is not None, key
    # policy == reference before the first update: rewards exactly 0, loss log(2)
    assert s["first_reward_accuracy"] == 0.0 and s["first_reward_margin"] == 0.0
    assert s["first_train_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert s["final_reward_accuracy"] >= 0.75 and s["final_epoch_reward_accuracy"] >= 0.75
    e0, e1 = s["epochs"]
    assert e1["reward_margin_mean"] > e0["reward_margin_mean"] > 0
    assert e1["train_loss_mean"] < e0["train_loss_mean"] < 0.6931
    # held-out pairs: val at step 0 (before training) and at each epoch end
    assert [v["step"] for v in s["val_losses"]] == [0, 4, 8]
    assert s["first_val_reward_accuracy"] == 0.0 and s["final_val_reward_accuracy"] >= 0.75
    assert s["final_val_loss"] < s["val_losses"][0]["val_loss"]
    assert s["final_val_policy_accuracy"] >= 0.75

    rows = disk_log_lines(out)
    train = {step: m for step, m in rows if "loss" in m}
    assert sorted(train) == list(range(1, 9))
    for m in train.values():
        assert {"loss", "lr", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "log_probs/chosen", "log_probs/rejected"} <= set(m)
        assert m["rewards/margins"] == pytest.approx(m["rewards/chosen"] - m["rewards/rejected"], abs=1e-5)
    val = {step: m for step, m in rows if "val_loss" in m}
    assert sorted(val) == [0, 4, 8] and "val_rewards/accuracies" in val[8]


@pytest.mark.slow
def test_every_epoch_is_sft_weights_plus_its_own_lora_delta(sft_then_dpo, tiny_model):
    """merged(epoch N) == SFT checkpoint + delta(epoch N), for every N: the CPU in-place-merge bug would make
    epoch_1 = SFT + d0 + d1, and a DPO run that did not start from the SFT checkpoint would differ everywhere."""
    from cruijff_kit.tools.inspect.run_cell import adapter_deltas

    sft_epoch, out, _ = sft_then_dpo
    base, sft = _weights(tiny_model), _weights(sft_epoch)
    # the SFT run really moved the weights (else "started from SFT" would prove nothing)
    assert not torch.allclose(sft["model.layers.0.self_attn.q_proj.weight"],
                              base["model.layers.0.self_attn.q_proj.weight"])
    deltas_seen = []
    for epoch in (0, 1):
        ep = out / f"epoch_{epoch}"
        for name in ("model.safetensors", "config.json", "adapter_model.safetensors", "adapter_config.json"):
            assert (ep / name).is_file(), f"{ep}/{name}"
        merged = _weights(ep)
        deltas, scale = adapter_deltas(ep)
        assert scale == 2.0 and len(deltas) == 2 * 7  # 4 attention + 3 MLP projections per layer
        assert set(merged) == set(sft)
        for name, weight in merged.items():
            if name in deltas:
                lora_a, lora_b = deltas[name]
                expected = sft[name] + scale * (lora_b @ lora_a)
                assert torch.allclose(weight, expected, atol=1e-6), f"epoch {epoch}: {name}"
                assert not torch.allclose(weight, sft[name]), f"epoch {epoch}: {name} did not train"
            else:
                assert torch.equal(weight, sft[name]), f"epoch {epoch}: frozen {name} changed"
        deltas_seen.append(deltas["model.layers.0.self_attn.q_proj.weight"][1])
    assert not torch.allclose(deltas_seen[0], deltas_seen[1])  # epoch 1 trained further

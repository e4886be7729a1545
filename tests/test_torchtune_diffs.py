"""#14 item 6: docs/torchtune-config-diffs.md lists, per registry model, every key where our finetune.yaml
differs from torchtune 0.6.1's shipped config, with a reason; the committed doc is regenerated and compared."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "torchtune_config_diffs.py"


def _module():
    spec = importlib.util.spec_from_file_location("torchtune_config_diffs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flat_keys_and_reasons_by_section():
    m = _module()
    assert m.flat({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}
    assert m.reason("profiler.cpu") == m.REASONS["profiler"] and m.reason("model.lora_rank") == m.REASONS["model.lora_rank"]
    assert m.reason("no_such_key") is None


@pytest.mark.slow
def test_doc_is_current_and_every_difference_has_a_reason():
    pytest.importorskip("torchtune")
    m = _module()
    models = m.diffs()
    assert {x["model"] for x in models} == {"Llama-3.2-1B", "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct",
                                           "Llama-3.1-8B-Instruct", "Llama-3.3-70B-Instruct", "Qwen2.5-3B",
                                           "Qwen2.5-3B-Instruct"}
    configs = {x["model"]: x["config"] for x in models}
    assert configs["Llama-3.3-70B-Instruct"] == "llama3_3/70B_lora"
    assert configs["Qwen2.5-3B"] == "qwen2_5/3B_lora_single_device"
    missing = [(x["model"], r["key"]) for x in models for r in x["rows"] if not r["why"]]
    assert not missing, f"differing keys with no reason in REASONS: {missing}"
    rows = {r["key"]: r for r in next(x for x in models if x["model"] == "Llama-3.2-1B-Instruct")["rows"]}
    assert (rows["save_adapter_weights_only"]["torchtune"], rows["save_adapter_weights_only"]["ours"]) == (False, True)
    assert "optimizer.lr" not in rows  # 3e-4 read as torchtune reads it (OmegaConf): the same number
    assert m.DOC.read_text() == m.document(models), "rerun python scripts/torchtune_config_diffs.py"

"""Issue 14 item 6: the training --time never falls below loading the weights plus one save per epoch."""
from __future__ import annotations

from cruijff_kit.compute.estimates import ADAPTER_FRACTION, IO_GB_PER_S, STARTUP_S, slurm_time, time_floor_s
from cruijff_kit.models.registry import get


def test_floor_grows_with_model_size_and_saves():
    small, big = get("Llama-3.2-1B-Instruct").size_gb, get("Llama-3.3-70B-Instruct").size_gb
    assert time_floor_s(big, 2, False) > time_floor_s(small, 2, False) > STARTUP_S
    assert time_floor_s(big, 2, False) == STARTUP_S + big / IO_GB_PER_S * 3
    assert time_floor_s(big, 2, True) == STARTUP_S + big / IO_GB_PER_S * (1 + 2 * ADAPTER_FRACTION)
    assert slurm_time(time_floor_s(big, 1, False)) >= "00:30:00"  # 70B: loading + saving 141 GB


def test_tiny_families_are_in_the_registry():
    for key in ("tiny-llama", "tiny-llama3_2_instruct", "tiny-qwen2_5_base"):
        spec = get(key)
        assert spec is not None and spec.size_gb > 0
    assert get("tiny-qwen2_5_instruct").tokenizer_files == {"path": "vocab.json", "merges_file": "merges.txt"}

"""Checkpoints and recipe state are written via a staging dir and renamed into place: a crash mid-save
leaves the previous epoch and recipe_state.pt intact. Real torchtune checkpointer, tiny local model."""
from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchtune")

from cruijff_kit.experiment.recover import complete_epochs  # noqa: E402
from cruijff_kit.models import tiny  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model  # tests/conftest.py: built once per session (seed 0)


def _save(model_dir, out, epoch, state, model):
    from torchtune.training import FullModelHFCheckpointer

    from cruijff_kit.tools.torchtune.checkpoint import save_lora_checkpoint

    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(model_dir), checkpoint_files=tiny.TINY_CHECKPOINT_FILES,
                                   model_type=tiny.TINY_MODEL_TYPE, output_dir=str(out))
    return save_lora_checkpoint(ckpt, model, output_dir=out, epoch=epoch, rank=4, alpha=8,
                                lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=False,
                                apply_lora_to_output=False, adapter_only=True, recipe_state=state)


def test_a_crash_mid_save_keeps_the_previous_checkpoint(model_dir, tmp_path):
    from torchtune.models.llama3_2 import lora_llama3_2

    from cruijff_kit.tools.torchtune.checkpoint import RECIPE_STATE_FILE, STAGING_PREFIX

    arch = {k: v for k, v in tiny.TINY_COMPONENT.items() if k != "_component_"}
    model = lora_llama3_2(lora_attn_modules=["q_proj", "v_proj"], lora_rank=4, lora_alpha=8, **arch)
    out = tmp_path / "out"
    first = _save(model_dir, out, 0, {"epochs_run": 1, "seed": 3}, model)
    assert first == out / "epoch_0" and (first / "adapter_model.safetensors").stat().st_size > 0
    assert torch.load(out / RECIPE_STATE_FILE, weights_only=True)["epochs_run"] == 1
    assert not list(out.glob(f"{STAGING_PREFIX}*"))  # nothing left behind
    before = (out / RECIPE_STATE_FILE).read_bytes()

    # epoch 1: the adapter files are written, then the recipe state cannot be (a crash mid-save)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # a lambda cannot be pickled
        _save(model_dir, out, 1, {"epochs_run": 2, "seed": 3, "broken": lambda: None}, model)
    assert (out / RECIPE_STATE_FILE).read_bytes() == before  # never half-written in place
    assert not (out / "epoch_1").exists() and complete_epochs(out) == [0]  # resume starts after epoch 0

    # the next save cleans the leftovers and lands whole, also over an existing epoch dir
    again = _save(model_dir, out, 0, {"epochs_run": 1, "seed": 4}, model)
    assert again == first and torch.load(out / RECIPE_STATE_FILE, weights_only=True)["seed"] == 4
    assert not list(out.glob(f"{STAGING_PREFIX}*"))

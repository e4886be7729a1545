"""Saving LoRA checkpoints without touching the live model (shared by cruijff_kit's LoRA recipes).

Why this exists: torchtune 0.6.1's LoRA recipes build the merged checkpoint with
``{k: v.cpu() for k, v in model.state_dict().items()}`` and then ``get_merged_lora_ckpt``, which adds
``alpha/rank * B @ A`` to each base weight *in place*. On a CUDA device ``.cpu()`` copies, but on
``device: cpu`` it returns the very tensor the model trains with, so every non-final epoch save adds the
current LoRA delta into the frozen base weights (epoch_1 = base + d0 + d1, and training goes on from a
corrupted base). Here every tensor that the merge writes to is copied first, so saving never changes the
model; the epoch directory is then tidied so it loads in transformers on its own.

Everything in this module runs inside the training job (torch/torchtune imports are fine).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchtune import training
from torchtune.modules.peft import get_lora_module_names, get_merged_lora_ckpt

from cruijff_kit.experiment import layout

__all__ = [
    "ADAPTER_FILES",
    "RECIPE_STATE_FILE",
    "adapter_config",
    "adapter_state_dict",
    "build_lora_checkpoint",
    "epoch_dir",
    "merged_state_dict",
    "save_lora_checkpoint",
    "tidy_epoch_dir",
]

#: What torchtune's FullModelHFCheckpointer writes for the adapter (PEFT format + torchtune format).
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "adapter_model.pt")
#: Recipe state (optimizer, epochs run, ...) relative to the checkpointer's output_dir.
RECIPE_STATE_FILE = Path("recipe_state") / "recipe_state.pt"
#: Where a save is written before it is moved into place (under output_dir; not an epoch_N dir).
STAGING_PREFIX = ".ck-staging-epoch_"
_SINGLE_SHARD = "model-00001-of-00001"
_INDEX = "model.safetensors.index.json"


def _is_adapter_key(key: str) -> bool:
    return "lora" in key or "magnitude" in key


def adapter_state_dict(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """CPU copies of the LoRA / DoRA parameters of a model state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items() if _is_adapter_key(k)}


def merged_state_dict(state_dict: dict[str, Any], *, rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """The model with each LoRA delta merged into its base weight, as a new CPU state dict.

    Never modifies ``state_dict`` or the tensors in it: the base weight of every LoRA module (the tensor
    the merge adds to in place) is copied; other tensors are moved to the CPU (a copy off the CPU, the
    same tensor on it, which is safe because the merge only reads them).
    """
    lora_modules = {k[: -len(".lora_a.weight")] for k in state_dict if k.endswith(".lora_a.weight")}
    merge_targets = {f"{m}.weight" for m in lora_modules}
    cpu_sd = {k: v.detach().to("cpu", copy=k in merge_targets) for k, v in state_dict.items()}
    return get_merged_lora_ckpt(cpu_sd, rank=rank, alpha=alpha)


def adapter_config(*, rank: int, alpha: float, lora_attn_modules, apply_lora_to_mlp: bool,
                   apply_lora_to_output: bool) -> dict[str, Any]:
    """The adapter config in torchtune's format (its checkpointer converts it to PEFT's)."""
    return {
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": get_lora_module_names(list(lora_attn_modules), apply_lora_to_mlp,
                                                apply_lora_to_output),
        "peft_type": "LORA",
    }


def build_lora_checkpoint(model: nn.Module, *, rank: int, alpha: float, lora_attn_modules,
                          apply_lora_to_mlp: bool, apply_lora_to_output: bool,
                          adapter_only: bool) -> dict[str, Any]:
    """The dict torchtune checkpointers save: adapter, adapter config and (unless adapter_only) merged model."""
    sd = model.state_dict()
    ckpt = {
        training.ADAPTER_KEY: adapter_state_dict(sd),
        training.ADAPTER_CONFIG: adapter_config(rank=rank, alpha=alpha, lora_attn_modules=lora_attn_modules,
                                                apply_lora_to_mlp=apply_lora_to_mlp,
                                                apply_lora_to_output=apply_lora_to_output),
    }
    if not adapter_only:
        ckpt[training.MODEL_KEY] = merged_state_dict(sd, rank=rank, alpha=alpha)
    return ckpt


def epoch_dir(output_dir: str | os.PathLike, epoch: int) -> Path:
    return layout.epoch_dir(output_dir, epoch)


def tidy_epoch_dir(path: str | os.PathLike) -> None:
    """Name a single-shard merged model ``model.safetensors`` (and drop the one-entry index).

    torchtune's HF checkpointer always writes ``model-00001-of-00001.safetensors`` plus
    ``model.safetensors.index.json``; transformers loads either layout, but ``model.safetensors`` is what
    people (and our tools) look for. Multi-shard checkpoints are left as they are.
    """
    path = Path(path)
    shard = path / f"{_SINGLE_SHARD}.safetensors"
    index = path / _INDEX
    if not shard.exists():
        return
    if index.exists():
        try:
            files = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError):
            return
        if files != {shard.name}:
            return
    os.replace(shard, path / "model.safetensors")
    index.unlink(missing_ok=True)


def save_lora_checkpoint(checkpointer, model: nn.Module, *, output_dir: str | os.PathLike, epoch: int,
                         rank: int, alpha: float,
                         lora_attn_modules, apply_lora_to_mlp: bool, apply_lora_to_output: bool,
                         adapter_only: bool, recipe_state: dict[str, Any] | None = None) -> Path:
    """Save ``epoch_{epoch}/`` (merged model + adapter, or the adapter only) through a torchtune checkpointer.

    With ``recipe_state`` (optimizer state, epochs run, ...), it is written to
    ``<output_dir>/recipe_state/recipe_state.pt`` after the epoch directory is complete, so its presence
    marks the epoch checkpoint as usable for resuming. ``output_dir`` is the checkpointer's output_dir.
    Every file is written into a staging dir first and moved into place by rename (publish_staged):
    a crash mid-write never leaves a half-written recipe_state.pt or weights file where a resume reads.
    Returns the epoch directory.
    """
    ckpt = build_lora_checkpoint(model, rank=rank, alpha=alpha, lora_attn_modules=lora_attn_modules,
                                 apply_lora_to_mlp=apply_lora_to_mlp, apply_lora_to_output=apply_lora_to_output,
                                 adapter_only=adapter_only)
    if recipe_state:
        ckpt.update(recipe_state)
    staging = Path(output_dir) / f"{STAGING_PREFIX}{epoch}"
    for leftover in Path(output_dir).glob(f"{STAGING_PREFIX}*"):  # what a crashed save left
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    real = checkpointer._output_dir  # torchtune writes every file under it: point it at the staging dir
    checkpointer._output_dir = staging
    try:
        checkpointer.save_checkpoint(ckpt, epoch=epoch, intermediate_checkpoint=bool(recipe_state),
                                     adapter_only=adapter_only)
    finally:
        checkpointer._output_dir = real
    tidy_epoch_dir(epoch_dir(staging, epoch))
    return publish_staged(staging, Path(output_dir), epoch)


def publish_staged(staging: Path, output_dir: Path, epoch: int) -> Path:
    """Move a fully written save into place by rename: the epoch dir first, the recipe state last.

    A crash before this leaves the previous epoch dirs and recipe_state.pt as they were (a resume then
    starts from the last complete epoch); the staging dir is not an epoch dir, so nothing counts it."""
    out = epoch_dir(output_dir, epoch)
    new = epoch_dir(staging, epoch)
    if not out.exists():
        os.replace(new, out)
    else:  # saved again (a resumed run): file by file, each one atomic
        for path in sorted(new.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(new)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    state = staging / RECIPE_STATE_FILE
    if state.exists():
        (output_dir / RECIPE_STATE_FILE).parent.mkdir(parents=True, exist_ok=True)
        os.replace(state, output_dir / RECIPE_STATE_FILE)
    shutil.rmtree(staging, ignore_errors=True)
    return out

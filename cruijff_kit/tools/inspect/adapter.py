"""LoRA adapters saved by torchtune (PEFT format), merged the way torchtune merges them, for every family.

torchtune's ``tune_to_peft_adapter_weights`` permutes the q_proj/k_proj ``lora_B`` of *every* model into the
Hugging Face rotary layout. That is right for Llama (whose HF q/k weights are permuted the same way) but
wrong for Qwen2, whose HF weights torchtune never permutes: merged naively, q_proj/k_proj come out wrong and
the eval scores a broken model without an error. ``adapter_deltas`` undoes the permutation for model types
listed in ``UNPERMUTED`` (read from the base's config.json), so ``W + scale * B @ A`` equals torchtune's own
merged checkpoint tensor for tensor.

``apply_in_memory`` adds the deltas to a loaded transformers model (no merged copy on disk); ``restore_base``
puts the base weights an adapter changed back, read again from the base's safetensors (so one loaded base
model serves every epoch's adapter of a grouped eval job); both import torch lazily.
"""
from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# HF model types whose q/k weights torchtune converts without the rotary permutation.
UNPERMUTED = ("qwen2",)


class AdapterError(Exception):
    """An adapter that cannot be applied: one line."""


def lora_scale(adapter_config: dict) -> float:
    rank = adapter_config.get("r") or adapter_config.get("lora_rank")
    alpha = adapter_config.get("lora_alpha", rank)
    if not rank:
        raise AdapterError(f"{ADAPTER_CONFIG} has no rank ('r')")
    if adapter_config.get("use_rslora"):
        return float(alpha) / float(rank) ** 0.5
    return float(alpha) / float(rank)


def _unpermute(lora_b, n_heads: int, head_dim: int):
    """Inverse of torchtune's _permute_lora_matrix: back to the un-permuted (torchtune = HF Qwen2) layout."""
    rank = lora_b.shape[-1]
    return lora_b.view(n_heads, 2, head_dim // 2, rank).transpose(1, 2).reshape(n_heads * head_dim, rank)


def _geometry(base_dir: Path | None) -> tuple[str, int, int, int]:
    """(model_type, heads, kv heads, head dim) from the base model's config.json ('' when unknown)."""
    try:
        config = json.loads((Path(base_dir) / "config.json").read_text()) if base_dir else {}
    except (OSError, ValueError):
        config = {}
    heads = int(config.get("num_attention_heads") or 0)
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or (int(config.get("hidden_size") or 0) // heads if heads else 0))
    return str(config.get("model_type") or ""), heads, kv, head_dim


def adapter_deltas(adapter_dir: Path, base_dir: Path | None = None) -> tuple[dict, float]:
    """{base weight name: (lora_A, lora_B)} from a PEFT-format adapter, and the LoRA scale.

    With ``base_dir`` (the model the adapter applies to) the q/k ``lora_B`` of UNPERMUTED model types are
    brought back to the base's layout.
    """
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    if config.get("use_dora"):
        raise AdapterError(f"{adapter_dir}: DoRA adapters cannot be merged here; save the merged model "
                           "(save_adapter_weights_only: false)")
    tensors = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    pairs: dict[str, dict] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0].removeprefix("base_model.model.")
                pairs.setdefault(module + ".weight", {})[part] = value
    broken = [k for k, v in pairs.items() if set(v) != {"lora_A", "lora_B"}]
    if broken or not pairs:
        raise AdapterError(f"{adapter_dir / ADAPTER_WEIGHTS}: no complete lora_A/lora_B pairs "
                           f"({', '.join(broken[:3]) or 'no LoRA weights'})")
    model_type, heads, kv, head_dim = _geometry(base_dir)
    out = {}
    for name, v in pairs.items():
        lora_b = v["lora_B"]
        if model_type in UNPERMUTED and head_dim:
            if name.endswith("q_proj.weight"):
                lora_b = _unpermute(lora_b, heads, head_dim)
            elif name.endswith("k_proj.weight"):
                lora_b = _unpermute(lora_b, kv, head_dim)
        out[name] = (v["lora_A"], lora_b)
    return out, lora_scale(config)


def merged_tensor(weight, lora_a, lora_b, scale: float):
    """W + scale * B @ A in float32, back in W's dtype (what torchtune's merge computes)."""
    import torch

    merged = weight.to(torch.float32) + scale * (lora_b.to(torch.float32) @ lora_a.to(torch.float32))
    return merged.to(weight.dtype).contiguous()


def apply_in_memory(model, adapter_dir: Path, base_dir: Path, changed: set | None = None) -> int:
    """Merge the adapter into a loaded transformers model's weights in place; returns the tensors changed
    (their names are added to `changed` when given: what restore_base puts back)."""
    import torch

    deltas, scale = adapter_deltas(adapter_dir, base_dir)
    params = dict(model.named_parameters())
    missing = sorted(set(deltas) - set(params))
    if missing:
        raise AdapterError(f"adapter {adapter_dir} targets weights the base model lacks: {', '.join(missing[:3])}")
    with torch.no_grad():
        for name, (lora_a, lora_b) in deltas.items():
            param = params[name]
            param.copy_(merged_tensor(param.detach().cpu(), lora_a, lora_b, scale).to(param.device))
    if changed is not None:
        changed.update(deltas)
    return len(deltas)


def restore_base(model, base_dir: Path, names) -> int:
    """Put the base model's own tensors back into the loaded weights `names` (undoes apply_in_memory exactly:
    read again from the base's safetensors shards, cast as loading cast them); returns the tensors restored."""
    import torch
    from safetensors import safe_open

    wanted = set(names)
    params = dict(model.named_parameters())
    restored = 0
    shards = sorted(p for p in Path(base_dir).glob("*.safetensors") if not p.name.startswith("adapter_"))
    with torch.no_grad():
        for shard in shards:
            with safe_open(str(shard), framework="pt") as fh:
                for name in wanted & set(fh.keys()):
                    param = params[name]
                    param.copy_(fh.get_tensor(name).to(dtype=param.dtype, device=param.device))
                    restored += 1
    if restored != len(wanted):
        raise AdapterError(f"base model {base_dir} has no safetensors weights for {len(wanted) - restored} of the "
                           "weights an adapter changed; evaluate one epoch per job (evaluation.group: checkpoint)")
    return restored

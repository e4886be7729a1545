"""torchtune's built-in configs as an overlay under what the torchtune worker renders (`cruijff-kit generate`).

A sweep names a built-in config of torchtune's `lora_finetune_single_device` recipe (`tune ls`) or a
.yaml file; its keys go UNDER the worker's finetune.yaml (our keys win; a block whose `_component_`
differs from ours is not merged into ours) and the sweep's `controls._override` goes over everything
last. The config also seeds the run's controls (`config_controls`: controls not given keep the built-in
config's values) and names the model (`model_component`: a `models.base[].component` block). Nothing
here imports torch or torchtune: the recipe registry is read as a plain file.
"""
from __future__ import annotations

import copy
import difflib
from functools import lru_cache
from pathlib import Path

RECIPE = "lora_finetune_single_device"  # the torchtune recipe whose configs a sweep may start from
# control -> the torchtune config key it is read from (controls that are one key of a config)
CONFIG_KEYS = {
    "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay", "lora_rank": "model.lora_rank",
    "lora_alpha": "model.lora_alpha", "lora_dropout": "model.lora_dropout",
    "lora_attn_modules": "model.lora_attn_modules", "apply_lora_to_mlp": "model.apply_lora_to_mlp",
    "max_seq_len": "tokenizer.max_seq_len", "epochs": "epochs", "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "max_steps_per_epoch": "max_steps_per_epoch",
    "seed": "seed", "log_every_n_steps": "log_every_n_steps", "save_adapter_weights_only": "save_adapter_weights_only",
    "dtype": "dtype", "device": "device", "num_warmup_steps": "lr_scheduler.num_warmup_steps",
    "packed": "dataset.packed", "train_on_input": "dataset.train_on_input",
}
LORA_KEYS = ("lora_attn_modules", "apply_lora_to_mlp", "apply_lora_to_output", "lora_rank", "lora_alpha",
             "lora_dropout")
OWNED_KEYS = ("output_dir", "checkpointer.output_dir")  # where run / status / summarize look for checkpoints


@lru_cache(maxsize=1)
def builtin_configs() -> dict[str, tuple[str, Path]]:
    """{config name: (recipe name, yaml file)} from torchtune's own recipe registry."""
    import importlib.util

    from cruijff_kit.workers.torchtune.trainer import module_file

    registry_file = module_file("torchtune._recipe_registry")
    if not registry_file:
        return {}
    spec = importlib.util.spec_from_file_location("_ck_torchtune_recipe_registry", registry_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # dataclasses and lists only: torchtune/__init__ (torch) is not run
    configs_dir = Path(registry_file).resolve().parent.parent / "recipes" / "configs"
    out: dict[str, tuple[str, Path]] = {}
    for recipe in module.get_all_recipes():
        for cfg in recipe.configs:
            out.setdefault(cfg.name, (recipe.name, configs_dir / cfg.file_path))
    return out


def similar_configs(name: str, n: int = 5) -> list[str]:
    names = [k for k, (recipe, _) in builtin_configs().items() if recipe == RECIPE]
    found = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not found:  # same model family first, e.g. llama3_2/...
        family = name.split("/", 1)[0]
        found = [k for k in names if k.split("/", 1)[0] == family][:n]
    return found


def find_config(name: str, root: Path) -> tuple[Path | None, str]:
    """(the config file, '') or (None, what is wrong; the fix) for a built-in name or a .yaml under root."""
    known = builtin_configs()
    if name in known:
        recipe, path = known[name]
        if recipe == RECIPE:
            return path, ""
        similar = similar_configs(name)
        return None, (f"'{name}' is a config of torchtune's {recipe}, not of {RECIPE}; "
                      + ("similar built-in configs: " + ", ".join(similar) if similar else "run `tune ls`"))
    candidate = (root / name).resolve()
    if name.endswith((".yaml", ".yml")) and candidate.is_file():
        return candidate, ""
    similar = similar_configs(name)
    return None, (f"'{name}' is not a torchtune built-in config; " + (
        "similar built-in configs: " + ", ".join(similar) if similar else f"run `tune ls` for the configs of {RECIPE}"))


def load_config(path: Path) -> dict:
    """A torchtune config as plain data, read as `tune run` reads it (OmegaConf: `3e-4` is a float),
    with `${...}` interpolations kept as text."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def config_controls(config: dict, types: dict) -> dict:
    """The controls a torchtune config (or an _override) sets; `types` {control: its default} drops
    values of another type (e.g. `max_seq_len: null`) and `${...}` interpolations."""
    out = {}
    for name, key in CONFIG_KEYS.items():
        value = _get(config, key)
        if value is None or (isinstance(value, str) and "${" in value):
            continue
        default = types.get(name)
        if isinstance(value, list) and isinstance(default, tuple):
            out[name] = list(value)
        elif default is None or isinstance(value, type(default)) or (
                isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
            out[name] = value
    return out


def merge(ours: dict, under: dict, over: dict | None = None) -> dict:
    """`under` beneath `ours` (ours wins), then `over` on top; mappings merge, except a block whose
    `_component_` differs, which replaces the other one whole (its keyword arguments would not fit)."""
    out = _merge(under, ours)
    return _merge(out, over or {})


def _merge(lower: dict, upper: dict) -> dict:
    if "_component_" in upper and "_component_" in lower and upper["_component_"] != lower["_component_"]:
        return copy.deepcopy(upper)
    out = copy.deepcopy(lower)
    for key, value in upper.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_component(config: dict) -> tuple[dict, str]:
    """(a `models.base[].component` block, the checkpoint dir) from a config's model, tokenizer and
    checkpointer (the LoRA settings are controls, not architecture)."""
    ckpt = config.get("checkpointer") or {}
    model = {k: v for k, v in (config.get("model") or {}).items() if k not in LORA_KEYS}
    block = {"model": model, "tokenizer": dict(config.get("tokenizer") or {}),
             "checkpoint_files": ckpt.get("checkpoint_files"), "model_type": ckpt.get("model_type")}
    return block, str(ckpt.get("checkpoint_dir") or "")


def owned_keys(override: dict) -> list[str]:
    """Keys of an _override that the run's layout owns (set from the results dir)."""
    return [key for key in OWNED_KEYS if _get(override, key) is not None]

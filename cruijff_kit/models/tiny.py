"""A tiny, randomly initialised Llama-3.2-architecture model, built locally (no model hub).

``make_tiny(out_dir)`` writes a complete Hugging Face model directory that both transformers
(``AutoModelForCausalLM`` / ``AutoTokenizer``) and torchtune 0.6.1 (``llama3_tokenizer`` on
``original/tokenizer.model`` + ``lora_llama3_2`` loaded through ``FullModelHFCheckpointer`` with
``model_type="LLAMA3_2"``) can load, with identical token ids and logits in both.

Design notes
------------
* vocab_size is 128256 because torchtune's llama3 tokenizer hard-codes the special ids
  128000..128255.  The base (BPE) vocab is therefore exactly 128000 entries: a small byte-level BPE
  trained here on a fixed synthetic corpus, padded with byte strings starting with 0xF8 (a byte that
  never occurs in UTF-8, so those tokens can never be produced from text).
* The HF ``tokenizer.json`` gets, besides the trained merges, every split of every token into two
  vocab tokens (ordered by the rank of the merged token) and ``ignore_merges=True``; that makes the
  HF BPE produce exactly what tiktoken's rank-based BPE produces.
* The tokenizer does not depend on ``seed`` (only the weights do): tiktoken caches files by path,
  so a tokenizer that changed under the same path would be served stale from that cache
  (``TIKTOKEN_CACHE_DIR=""`` turns that cache off; torchtune only ever reads local files).
* Embeddings are initialised with std 0.25 (not HF's 0.02): with frozen, tied, tiny-norm embeddings
  LoRA cannot move the loss.

Heavy libraries (torch, tokenizers, safetensors) are imported inside functions only.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from cruijff_kit.models.tiny_families import LLAMA_DEFAULT_TEMPLATE
from cruijff_kit.models.tiny_bpe import PAT_STR, _bytes_to_unicode, _corpus, _tokenizer_artifacts  # noqa: F401

# Bump whenever the bytes this module writes change: existing directories are then rebuilt.
FORMAT_VERSION = 1
MARKER = ".cruijff_tiny.json"

VOCAB_SIZE = 128_256
BASE_VOCAB_SIZE = 128_000
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 128
MAX_SEQ_LEN = 2048  # torchtune max_seq_len, tokenizer model_max_length
HF_MAX_POSITIONS = 131_072  # as Llama 3.2; must exceed rope original_max_position_embeddings (8192)
ROPE_THETA = 500_000
ROPE_SCALE_FACTOR = 32
NORM_EPS = 1e-5
EMBED_STD = 0.25
LINEAR_STD = 0.02

BOS_ID = 128000
END_OF_TEXT_ID = 128001
PAD_ID = 128004
EOM_ID = 128008
EOT_ID = 128009

# torchtune component + architecture args (LoRA args are added by the scaffolder).
TINY_COMPONENT: dict = {
    "_component_": "torchtune.models.llama3_2.lora_llama3_2",
    "vocab_size": VOCAB_SIZE,
    "num_layers": LAYERS,
    "num_heads": HEADS,
    "num_kv_heads": KV_HEADS,
    "embed_dim": HIDDEN,
    "max_seq_len": MAX_SEQ_LEN,
    "intermediate_dim": INTERMEDIATE,
    "attn_dropout": 0.0,
    "norm_eps": NORM_EPS,
    "rope_base": ROPE_THETA,
    "scale_factor": ROPE_SCALE_FACTOR,
    "tie_word_embeddings": True,
}
# What the checkpointer / tokenizer entries of a torchtune config need.
TINY_CHECKPOINT_FILES = ["model.safetensors"]
TINY_MODEL_TYPE = "LLAMA3_2"
TINY_TOKENIZER_COMPONENT = "torchtune.models.llama3.llama3_tokenizer"
TINY_TOKENIZER_PATH = "original/tokenizer.model"  # relative to the model dir

LORA_DEFAULTS = {"lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True,
                 "apply_lora_to_output": False, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def lora_config(model_dir: str | Path, source: str | Path, output_dir: str | Path, *, family: str = "default",
                **overrides) -> dict:
    """A complete LoRA SFT config for the tiny model on the CPU, as a dict (nested overrides merge in).

    For recipe tests and the throughput benchmark, which run our recipe and torchtune's stock one on the
    same config; scaffolded runs get theirs from templates/torchtune/finetune.yaml.j2. Paths under the
    output dir follow `output_dir` (OmegaConf interpolation), so `output_dir=...` on the command line moves all.
    """
    from cruijff_kit.models.tiny_families import kind_of

    kind = kind_of(family)
    model_dir = Path(model_dir)
    dataset = {"_component_": "cruijff_kit.tools.torchtune.datasets.input_output_dataset", "source": str(source),
               "split": "train", "dataset_type": "chat_completion", "prompt": "{input}", "system_prompt": "",
               "train_on_input": False, "packed": False}
    config = {
        "output_dir": str(output_dir),
        "model": {**kind.component, **LORA_DEFAULTS},
        "tokenizer": {"_component_": kind.tokenizer_component, "max_seq_len": 64,
                      **{k: str(model_dir / v) for k, v in kind.tokenizer_files.items()}},
        "checkpointer": {"_component_": "torchtune.training.FullModelHFCheckpointer",
                         "checkpoint_dir": str(model_dir), "checkpoint_files": list(TINY_CHECKPOINT_FILES),
                         "recipe_checkpoint": None, "output_dir": "${output_dir}", "model_type": kind.model_type},
        "resume_from_checkpoint": False, "save_adapter_weights_only": False,
        "dataset": dataset,
        "seed": 0, "shuffle": True, "batch_size": 8, "run_val_every_n_steps": 0,
        "epochs": 1, "max_steps_per_epoch": None, "gradient_accumulation_steps": 1, "clip_grad_norm": None,
        "optimizer": {"_component_": "torch.optim.AdamW", "fused": False, "lr": 0.01, "weight_decay": 0.0},
        "lr_scheduler": {"_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                         "num_warmup_steps": 0},
        "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
        "device": "cpu", "dtype": "fp32", "compile": False,
        "enable_activation_checkpointing": False, "enable_activation_offloading": False,
        "log_every_n_steps": 1, "log_peak_memory_stats": False,
        "metric_logger": {"_component_": "torchtune.training.metric_logging.DiskLogger",
                          "log_dir": "${output_dir}/logs", "filename": "log.txt"},
    }
    return _merge(config, overrides)


CHAT_TEMPLATE = LLAMA_DEFAULT_TEMPLATE  # the default family's template (tiny_families.py holds them all)

FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    TINY_TOKENIZER_PATH,
)


def files(family: str = "default") -> tuple[str, ...]:
    """The files a complete tiny model directory of this family holds."""
    from cruijff_kit.models.tiny_families import kind_of

    extra = tuple(kind_of(family).tokenizer_files.values())
    return FILES[:-1] + extra


# --------------------------------------------------------------------------- special tokens
def special_tokens() -> dict[str, int]:
    """The 256 special tokens, id -> name as torchtune 0.6.1's llama3 tokenizer names them.

    torchtune leaves id 128011 unnamed (its ``<|image|>`` is 128256, outside the vocab); we give it
    a reserved name torchtune never uses.
    """
    named = {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|reserved_special_token_0|>": 128002,
        "<|reserved_special_token_1|>": 128003,
        "<|finetune_right_pad_id|>": 128004,
        "<|step_id|>": 128005,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eom_id|>": 128008,
        "<|eot_id|>": 128009,
        "<|python_tag|>": 128010,
        "<|reserved_special_token_245|>": 128011,
        "<|video|>": 128012,
    }
    for i in range(VOCAB_SIZE - 128013):
        named[f"<|reserved_special_token_{2 + i}|>"] = 128013 + i
    assert sorted(named.values()) == list(range(BASE_VOCAB_SIZE, VOCAB_SIZE))
    return named


def _family_specials(family: str) -> dict[str, int]:
    from cruijff_kit.models.tiny_families import family as get_family

    if get_family(family).kind == "qwen2_5":
        from cruijff_kit.models.tiny_qwen import special_tokens as qwen_specials

        return qwen_specials()
    return special_tokens()


def _tokenizer_config(family: str = "default") -> dict:
    from cruijff_kit.models.tiny_families import family as get_family

    fam = get_family(family)
    config = {
        "added_tokens_decoder": {
            str(i): {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for name, i in sorted(_family_specials(family).items(), key=lambda kv: kv[1])
        },
        **_special_tokens_map(family),
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MAX_SEQ_LEN,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if fam.chat_template is not None:
        config["chat_template"] = fam.chat_template
    return config


def _special_tokens_map(family: str = "default") -> dict:
    from cruijff_kit.models.tiny_families import family as get_family, kind_of

    kind = kind_of(family)
    out = {"bos_token": kind.bos_token, "eos_token": get_family(family).eos_token, "pad_token": kind.pad_token}
    return {k: v for k, v in out.items() if v is not None}


# --------------------------------------------------------------------------- model
def hf_config() -> dict:
    """config.json of the tiny model (LlamaForCausalLM, Llama 3.2 style rope scaling)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOT_ID,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": LINEAR_STD,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": HF_MAX_POSITIONS,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": NORM_EPS,
        "rope_scaling": {
            "factor": float(ROPE_SCALE_FACTOR),
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": float(ROPE_THETA),
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }


def _generation_config(family: str = "default") -> dict:
    from cruijff_kit.models.tiny_families import family as get_family, kind_of

    ids = _family_specials(family)
    kind = kind_of(family)
    eos = [ids[name] for name in get_family(family).generation_eos]
    out = {"bos_token_id": ids.get(kind.bos_token or "<|endoftext|>"), "eos_token_id": eos if len(eos) > 1 else eos[0],
           "pad_token_id": ids[kind.pad_token], "do_sample": False}
    return out


def _state_dict(seed: int, family: str = "default") -> dict:
    """Random weights under HF LlamaForCausalLM / Qwen2ForCausalLM names (tied: no lm_head.weight)."""
    import torch

    from cruijff_kit.models.tiny_families import kind_of

    kind = kind_of(family)
    VOCAB_SIZE = kind.vocab_size  # noqa: N806
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std):
        return torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=gen)

    sd = {"model.embed_tokens.weight": normal((VOCAB_SIZE, HIDDEN), EMBED_STD)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = normal((HEADS * HEAD_DIM, HIDDEN), LINEAR_STD)
        sd[p + "self_attn.k_proj.weight"] = normal((KV_HEADS * HEAD_DIM, HIDDEN), LINEAR_STD)
        sd[p + "self_attn.v_proj.weight"] = normal((KV_HEADS * HEAD_DIM, HIDDEN), LINEAR_STD)
        sd[p + "self_attn.o_proj.weight"] = normal((HIDDEN, HEADS * HEAD_DIM), LINEAR_STD)
        sd[p + "mlp.gate_proj.weight"] = normal((INTERMEDIATE, HIDDEN), LINEAR_STD)
        sd[p + "mlp.up_proj.weight"] = normal((INTERMEDIATE, HIDDEN), LINEAR_STD)
        sd[p + "mlp.down_proj.weight"] = normal((HIDDEN, INTERMEDIATE), LINEAR_STD)
        sd[p + "input_layernorm.weight"] = torch.ones(HIDDEN)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN)
    sd["model.norm.weight"] = torch.ones(HIDDEN)
    if kind.model_type == "QWEN2":
        from cruijff_kit.models.tiny_qwen import add_biases

        add_biases(sd, gen, LAYERS, HEADS, KV_HEADS, HEAD_DIM)
    return sd


# --------------------------------------------------------------------------- public API
def _marker(seed: int, family: str = "default") -> dict:
    return {"format_version": FORMAT_VERSION, "seed": seed, "family": family, "files": list(files(family))}


def family_of(out_dir: str | Path) -> str | None:
    """The tiny family a directory holds (None when it holds no tiny model)."""
    try:
        return json.loads((Path(out_dir) / MARKER).read_text()).get("family", "default")
    except (OSError, ValueError):
        return None


def is_tiny(out_dir: str | Path, *, seed: int | None = 0, family: str | None = "default") -> bool:
    """Cheap check (json only): out_dir holds a complete tiny model of this format (seed and family)."""
    out = Path(out_dir)
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("format_version") != FORMAT_VERSION:
        return False
    if seed is not None and marker.get("seed") != seed:
        return False
    if family is not None and marker.get("family", "default") != family:
        return False
    return all((out / f).is_file() for f in marker.get("files", FILES))


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _build_into(dest: Path, seed: int, family: str = "default") -> None:
    from safetensors.torch import save_file

    from cruijff_kit.models.tiny_families import kind_of

    kind = kind_of(family)
    if kind.model_type == "QWEN2":
        from cruijff_kit.models import tiny_qwen

        vocab_json, merges_txt, tokenizer_json = tiny_qwen.tokenizer_artifacts()
        (dest / "vocab.json").write_text(vocab_json, encoding="utf-8")
        (dest / "merges.txt").write_text(merges_txt, encoding="utf-8")
        config = tiny_qwen.hf_config(kind)
    else:
        tiktoken_model, tokenizer_json = _tokenizer_artifacts()
        (dest / "original").mkdir(parents=True, exist_ok=True)
        (dest / TINY_TOKENIZER_PATH).write_bytes(tiktoken_model)
        config = hf_config()
    (dest / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    _write_json(dest / "tokenizer_config.json", _tokenizer_config(family))
    _write_json(dest / "special_tokens_map.json", _special_tokens_map(family))
    _write_json(dest / "config.json", config)
    _write_json(dest / "generation_config.json", _generation_config(family))
    weights = dest / "model.safetensors"
    save_file(_state_dict(seed, family), str(weights), metadata={"format": "pt"})
    # safetensors creates its file 0600; give it the umask-derived mode the json files got.
    os.chmod(weights, (dest / "config.json").stat().st_mode & 0o777)
    _write_json(dest / MARKER, _marker(seed, family))  # last: marks the directory complete


def make_tiny(out_dir: str | Path, *, seed: int = 0, force: bool = False, family: str = "default") -> Path:
    """Write the tiny model into out_dir and return out_dir.

    Skips the work when out_dir already holds this model (same format version and seed) unless
    force.  Refuses to overwrite a non-empty directory that is not a tiny-model directory unless
    force.  The build goes to a sibling temp dir and is renamed into place, so concurrent callers
    and interrupted builds never leave a half-written model behind.
    """
    from cruijff_kit.models.tiny_families import family as get_family

    get_family(family)  # unknown family: ValueError before anything is written
    out = Path(out_dir).expanduser().absolute()
    if not force and is_tiny(out, seed=seed, family=family):
        return out
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if not force and any(out.iterdir()) and not (out / MARKER).exists():
            raise FileExistsError(f"{out} is not empty and holds no tiny model; pass force=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: that makes the directory 0700 whatever the umask
    try:
        _build_into(tmp, seed, family)
        if out.exists():
            if not force and is_tiny(out, seed=seed, family=family):  # another process won the race
                return out
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:
            if is_tiny(out, seed=seed, family=family):  # another process renamed its build in first
                return out
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_tiny_if_missing(out_dir: str | Path, *, seed: int = 0, family: str = "default") -> Path:
    """make_tiny(out_dir) unless it is already there; costs one small json read when it is."""
    return make_tiny(out_dir, seed=seed, force=False, family=family)

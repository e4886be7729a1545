"""Tokenizer files and weights of the tiny Qwen2.5-architecture models (see tiny_families.py).

The tokenizer is a GPT-2 style byte-level BPE (vocab.json + merges.txt, what torchtune's qwen2_5_tokenizer
reads) trained here on tiny.py's synthetic corpus with Qwen2's split regex, and the equivalent HF
``tokenizer.json`` (NFC normaliser, same regex, same merges; no BOS). The base vocab is padded to 151,643
entries with tokens text can never produce (byte 0xF8 never occurs in UTF-8) so the special tokens sit at
Qwen2.5's real ids (151643 ``<|endoftext|>``, 151644 ``<|im_start|>``, 151645 ``<|im_end|>``, ...).
Heavy libraries are imported inside functions only.
"""
from __future__ import annotations

import json
from functools import lru_cache

BASE_VOCAB = 151_643
# Same split regex as torchtune's Qwen2 tokenizer (and Qwen2's public tokenizer.json).
QWEN_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def special_tokens() -> dict[str, int]:
    """Qwen2.5's special tokens, name -> id (the names and ids torchtune 0.6.1 uses)."""
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
             "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
             "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
             "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
    return {name: BASE_VOCAB + i for i, name in enumerate(names)}


@lru_cache(maxsize=1)
def tokenizer_artifacts() -> tuple[str, str, str]:
    """(vocab.json text, merges.txt text, tokenizer.json text). Deterministic."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from cruijff_kit.models.tiny_bpe import _bytes_to_unicode, _corpus

    def pre_tokenizer():
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_PAT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizers.NFC()
    trainer_tok.pre_tokenizer = pre_tokenizer()
    trainer_tok.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=4096, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(trainer_tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    b2u = _bytes_to_unicode()
    for i in range(BASE_VOCAB - len(vocab)):
        vocab["".join(b2u[b] for b in b"\xf8" + f"{i:06d}".encode("ascii"))] = len(vocab)
    assert sorted(vocab.values()) == list(range(BASE_VOCAB))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    specials = sorted(special_tokens().items(), key=lambda kv: kv[1])
    tok.add_special_tokens([AddedToken(name, special=True, normalized=False) for name, _ in specials])
    for name, i in specials:
        assert tok.token_to_id(name) == i, f"{name}: id {tok.token_to_id(name)}, expected {i}"
    vocab_json = json.dumps(vocab, ensure_ascii=False)
    merges_txt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    return vocab_json, merges_txt, tok.to_str(pretty=False)


def hf_config(kind, seed_dtype: str = "float32") -> dict:
    """config.json of a tiny Qwen2 model (Qwen2ForCausalLM)."""
    arch = kind.component
    return {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": special_tokens()[
            "<|endoftext|>"], "eos_token_id": special_tokens()["<|endoftext|>"], "hidden_act": "silu",
        "hidden_size": arch["embed_dim"], "initializer_range": 0.02, "intermediate_size": arch["intermediate_dim"],
        "max_position_embeddings": 32768, "max_window_layers": arch["num_layers"], "model_type": "qwen2",
        "num_attention_heads": arch["num_heads"], "num_hidden_layers": arch["num_layers"],
        "num_key_value_heads": arch["num_kv_heads"], "rms_norm_eps": arch["norm_eps"], "rope_scaling": None,
        "rope_theta": arch["rope_base"], "sliding_window": None, "tie_word_embeddings": True,
        "torch_dtype": seed_dtype, "use_cache": True, "use_sliding_window": False, "vocab_size": kind.vocab_size,
    }


def add_biases(sd: dict, gen, layers: int, heads: int, kv_heads: int, head_dim: int) -> None:
    """Qwen2's q/k/v projections have biases (small random values, so a wrong merge shows)."""
    import torch

    for i in range(layers):
        p = f"model.layers.{i}.self_attn."
        for name, n in (("q_proj", heads), ("k_proj", kv_heads), ("v_proj", kv_heads)):
            sd[p + name + ".bias"] = torch.empty(n * head_dim).normal_(0.0, 0.02, generator=gen)

"""The tiny model families: plain data (no heavy imports).

Each family carries the hazards of the real model family it stands for: the special tokens and their ids,
the end tokens (`eos_token`, generation_config's `eos_token_id`), and a chat template that *behaves* like
the real one (written here from the public facts, not copied):

* ``llama3_2_instruct``: a system turn "Cutting Knowledge Date: December 2023\\nToday Date: <today>\\n\\n"
  is always inserted (today's date through ``strftime_now``, so the prompt changes from day to day),
  in front of the given system prompt.
* ``llama3_1_instruct``: the same with the fixed date "26 Jul 2024".
* ``llama3_2_base``: no chat template; eos ``<|end_of_text|>``.
* ``qwen2_5_instruct``: ChatML with the default system prompt "You are Qwen, created by Alibaba Cloud. You
  are a helpful assistant." when none is given; eos ``<|im_end|>``; pad ``<|endoftext|>``.
* ``qwen2_5_base``: the same template, eos ``<|endoftext|>`` (generation stops only there).
* ``default``: the historical tiny Llama whose template happens to equal torchtune's format.

The architecture, the torchtune builders and the checkpoint layout depend only on the *kind* (llama3 or
qwen2_5); see ``KINDS``.
"""
from __future__ import annotations

from dataclasses import dataclass

HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE, MAX_SEQ_LEN = 64, 2, 4, 2, 128, 2048

LLAMA_DEFAULT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] | trim + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

_LLAMA_DATED = (
    "{{- bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system_text = messages[0]['content'] | trim %}{%- set turns = messages[1:] %}"
    "{%- else %}{%- set system_text = '' %}{%- set turns = messages %}{%- endif %}"
    "{%- if date_string is not defined %}@DATE@{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_text + '<|eot_id|>' }}"
    "{%- for message in turns %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA3_2_TEMPLATE = _LLAMA_DATED.replace(
    "@DATE@", "{%- if strftime_now is defined %}{%- set date_string = strftime_now('%d %b %Y') %}"
              "{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}")
LLAMA3_1_TEMPLATE = _LLAMA_DATED.replace("@DATE@", "{%- set date_string = '26 Jul 2024' %}")

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN_TEMPLATE = (
    "{%- if not messages or messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "llama3" or "qwen2_5"
    instruct: bool
    chat_template: str | None
    eos_token: str
    generation_eos: tuple[str, ...]  # generation_config.json eos_token_id, by name
    note: str = ""


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("default", "llama3", True, LLAMA_DEFAULT_TEMPLATE, "<|eot_id|>",
           ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), "the historical tiny Llama (template = torchtune's)"),
    Family("llama3_2_instruct", "llama3", True, LLAMA3_2_TEMPLATE, "<|eot_id|>",
           ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), "date block with today's date"),
    Family("llama3_1_instruct", "llama3", True, LLAMA3_1_TEMPLATE, "<|eot_id|>",
           ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), "date block with 26 Jul 2024"),
    Family("llama3_2_base", "llama3", False, None, "<|end_of_text|>", ("<|end_of_text|>",), "no chat template"),
    Family("qwen2_5_instruct", "qwen2_5", True, QWEN_TEMPLATE, "<|im_end|>", ("<|im_end|>", "<|endoftext|>"),
           "default system prompt"),
    Family("qwen2_5_base", "qwen2_5", False, QWEN_TEMPLATE, "<|endoftext|>", ("<|endoftext|>",),
           "stops only at <|endoftext|>"),
)}
DEFAULT_FAMILY = "default"
HAZARD_FAMILIES = tuple(k for k in FAMILIES if k != DEFAULT_FAMILY)


@dataclass(frozen=True)
class Kind:
    component: dict  # torchtune LoRA builder + architecture kwargs (LoRA args are added by the scaffolder)
    tokenizer_component: str
    tokenizer_files: dict  # tokenizer kwarg -> file relative to the model dir
    model_type: str
    vocab_size: int
    bos_token: str | None
    pad_token: str


KINDS: dict[str, Kind] = {
    "llama3": Kind(
        {"_component_": "torchtune.models.llama3_2.lora_llama3_2", "vocab_size": 128_256, "num_layers": LAYERS,
         "num_heads": HEADS, "num_kv_heads": KV_HEADS, "embed_dim": HIDDEN, "max_seq_len": MAX_SEQ_LEN,
         "intermediate_dim": INTERMEDIATE, "attn_dropout": 0.0, "norm_eps": 1e-5, "rope_base": 500_000,
         "scale_factor": 32, "tie_word_embeddings": True},
        "torchtune.models.llama3.llama3_tokenizer", {"path": "original/tokenizer.model"}, "LLAMA3_2", 128_256,
        "<|begin_of_text|>", "<|finetune_right_pad_id|>"),
    "qwen2_5": Kind(
        {"_component_": "torchtune.models.qwen2.lora_qwen2", "vocab_size": 151_936, "num_layers": LAYERS,
         "num_heads": HEADS, "num_kv_heads": KV_HEADS, "embed_dim": HIDDEN, "max_seq_len": MAX_SEQ_LEN,
         "intermediate_dim": INTERMEDIATE, "attn_dropout": 0.0, "norm_eps": 1e-6, "rope_base": 1_000_000.0,
         "tie_word_embeddings": True},
        "torchtune.models.qwen2_5.qwen2_5_tokenizer", {"path": "vocab.json", "merges_file": "merges.txt"},
        "QWEN2", 151_936, None, "<|endoftext|>"),
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown tiny family {name!r}; known: {', '.join(FAMILIES)}") from None


def kind_of(name: str) -> Kind:
    return KINDS[family(name).kind]


def registry_key(name: str) -> str:
    """The models registry key of a family: tiny-llama for the default, tiny-<family> otherwise."""
    return "tiny-llama" if name == DEFAULT_FAMILY else f"tiny-{name}"

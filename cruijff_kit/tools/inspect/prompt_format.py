"""The eval prompt format: torchtune's training format for the model's family, never the model's own template.

Training formats prompts with torchtune's tokenizer (llama3_tokenizer, qwen2_5_tokenizer): no default system
turn, no date block, BOS only where torchtune puts one. A model's Hugging Face chat template often adds more
(Llama-3.x-Instruct: a "Cutting Knowledge Date ... Today Date ..." system turn; Qwen2.5-Instruct: "You are
Qwen, created by Alibaba Cloud ..." when no system prompt is given), so evaluating through it would show the
model a prompt it never learned from. run_cell therefore hands the hf provider one of the templates below,
chosen by the family of the tokenizer (which decides torchtune's format):

* ``llama3``: ``<|begin_of_text|>`` then per message ``<|start_header_id|>ROLE<|end_header_id|>\\n\\n`` +
  content stripped + ``<|eot_id|>`` (torchtune's Llama3Tokenizer), then the assistant header.
* ``qwen2_5``: no BOS; per message ``<|im_start|>ROLE\\n`` + content + ``<|im_end|>\\n`` (torchtune's
  Qwen2_5Tokenizer), then ``<|im_start|>assistant\\n``.
* text_completion: BOS (llama3 only, as ``encode(prompt, add_bos=True)``) + the prompt text; no system turn.

An ``assistant_prefix`` (text the assistant turn starts with, e.g. ``Answer:``) ends the eval prompt exactly as
training tokenizes it (datasets.py): chat_completion appends it after the assistant header (llama3: stripped,
as torchtune's Llama3Tokenizer strips each content piece; qwen2_5: as written), text_completion after the
prompt. The model then generates what follows it; the prefix is not part of the scored output.

``STOP_TOKENS``: every end token training can put in the loss is a stop token at eval (base Qwen2.5 stops
only at ``<|endoftext|>`` by its generation_config, but torchtune trains it to end with ``<|im_end|>``).
No heavy imports: tokenizer files are read as JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

LLAMA3, QWEN2_5 = "llama3", "qwen2_5"
MARKERS = {LLAMA3: "<|start_header_id|>", QWEN2_5: "<|im_start|>"}

_LLAMA3_TURN = ("{{- '<|start_header_id|>' + message['role'] | trim + '<|end_header_id|>\\n\\n'"
                " + message['content'] | trim + '<|eot_id|>' }}")
_QWEN_TURN = "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
_RAW_TURN = "{%- if message['role'] != 'system' %}{{- message['content'] }}{%- endif %}"


def _template(prefix: str, turn: str, generation: str, assistant_prefix: str = "") -> str:
    """Prompt start, each message, then (add_generation_prompt) the assistant header and the assistant prefix,
    both as Jinja string literals (JSON escapes, ASCII only, which Jinja unescapes the same way)."""
    tail = " + ".join(json.dumps(t, ensure_ascii=True) for t in (generation, assistant_prefix) if t)
    return (prefix + "{%- for message in messages %}" + turn + "{%- endfor %}"
            + ("{%- if add_generation_prompt %}{{- " + tail + " }}{%- endif %}" if tail else ""))


_LLAMA3_BOS = "{{- '<|begin_of_text|>' }}"
# (family, dataset_type) -> (prompt start, message turn, assistant header)
_PARTS = {
    (LLAMA3, "chat_completion"): (_LLAMA3_BOS, _LLAMA3_TURN, "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    (QWEN2_5, "chat_completion"): ("", _QWEN_TURN, "<|im_start|>assistant\n"),
    (LLAMA3, "text_completion"): (_LLAMA3_BOS, _RAW_TURN, ""),
    (QWEN2_5, "text_completion"): ("", _RAW_TURN, ""),
}
# Unknown family, text_completion: BOS if the tokenizer has one, then the prompt (torchtune's encode).
_RAW_PARTS = ("{{- bos_token if bos_token else '' }}", _RAW_TURN, "")
RAW_TEMPLATE = _template(*_RAW_PARTS)

STOP_TOKENS = {
    LLAMA3: ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"),
    QWEN2_5: ("<|im_end|>", "<|endoftext|>"),
}


def special_ids(tokenizer_dir: str | Path) -> dict[str, int]:
    """name -> id of the tokenizer's added (special) tokens, read from its JSON files."""
    tokenizer_dir = Path(tokenizer_dir)
    out: dict[str, int] = {}
    try:
        decoder = json.loads((tokenizer_dir / "tokenizer_config.json").read_text()).get("added_tokens_decoder")
        out.update({str(v.get("content")): int(k) for k, v in (decoder or {}).items() if isinstance(v, dict)})
    except (OSError, ValueError):
        pass
    if not out:
        try:
            added = json.loads((tokenizer_dir / "tokenizer.json").read_text()).get("added_tokens") or []
            out.update({str(t.get("content")): int(t["id"]) for t in added if isinstance(t, dict) and "id" in t})
        except (OSError, ValueError):
            pass
    return out


def _special_names(tokenizer_dir: Path) -> set[str]:
    return set(special_ids(tokenizer_dir))


def family(tokenizer_dir: str | Path) -> str | None:
    """llama3 / qwen2_5 from the tokenizer's special tokens; None for a family torchtune formats otherwise."""
    names = _special_names(Path(tokenizer_dir))
    for name, marker in MARKERS.items():
        if marker in names:
            return name
    return None


def eval_template(fam: str | None, dataset_type: str, assistant_prefix: str = "") -> str | None:
    """The chat template that renders torchtune's prompt; None = the model's own (unknown family, chat).

    Raises ValueError for an assistant prefix with a chat model of unknown family (its own template cannot
    be made to end with the prefix the way training tokenizes it).
    """
    parts = _PARTS.get((fam, dataset_type)) or (_RAW_PARTS if dataset_type == "text_completion" else None)
    if parts is None:
        if assistant_prefix:
            raise ValueError("assistant_prefix needs a llama3 or qwen2_5 tokenizer (or dataset_type: "
                             "text_completion): the model's own chat template cannot end with it as training does")
        return None
    text = assistant_prefix.strip() if fam == LLAMA3 and dataset_type == "chat_completion" else assistant_prefix
    return _template(*parts, text)


def stop_token_ids(tokenizer_dir: str | Path, fam: str | None) -> list[int]:
    """Ids of the family's end tokens (the ones training can put in the loss) plus the tokenizer's eos and the
    model's generation_config eos ids, for generation to stop at. Empty for an unknown family."""
    if fam is None:
        return []
    tokenizer_dir = Path(tokenizer_dir)
    ids_by_name = special_ids(tokenizer_dir)
    ids = [ids_by_name[n] for n in STOP_TOKENS[fam] if n in ids_by_name]
    try:
        gen = json.loads((tokenizer_dir / "generation_config.json").read_text()).get("eos_token_id")
    except (OSError, ValueError):
        gen = None
    for i in (gen if isinstance(gen, list) else [gen] if isinstance(gen, int) else []):
        if i not in ids:
            ids.append(int(i))
    return ids


def render(tokenizer, messages: list[dict], fam: str | None, dataset_type: str,
           assistant_prefix: str = "") -> list[int]:
    """The prompt token ids the eval feeds the model (what inspect's hf provider does with our template)."""
    template = eval_template(fam, dataset_type, assistant_prefix)
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])

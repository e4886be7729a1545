"""Training tokens and eval prompt tokens of one sample per eval cell, for `cruijff-kit prompts`.

  python -m cruijff_kit.tools.torchtune.prompt_tokens < specs.json > tokens.json

Input: ``{"cells": [spec, ...]}``, each spec naming the cell, the HF tokenizer directory the eval loads, the
torchtune tokenizer block training uses (``_component_`` + files + max_seq_len; None: the family's default
builder on the same directory), the data file and split, and the training and eval prompt settings.
Output: ``{"cells": [...]}`` with, per cell, the training tokens and which of them are in the loss (built by
the training dataset builder, datasets.py), the training prompt (the tokens before the answer), the eval
prompt ids (rendered as run_cell renders them, prompt_format.py), the end token that closes the answer,
whether it is in the loss and whether generation stops at it, and the token strings. The comparison is the
CLI's (cruijff_kit/workers/inspect/prompts.py). Runs with torch/torchtune/transformers; never imports the CLI.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

DEFAULT_TOKENIZERS = {
    "llama3": ("torchtune.models.llama3.llama3_tokenizer", {"path": "original/tokenizer.model"}),
    "qwen2_5": ("torchtune.models.qwen2_5.qwen2_5_tokenizer", {"path": "vocab.json", "merges_file": "merges.txt"}),
}


def _torchtune_tokenizer(spec: dict, fam: str | None):
    """The cell's torchtune tokenizer; one per distinct block (building one reads the whole vocabulary)."""
    key = json.dumps([spec.get("torchtune_tokenizer") or {}, fam, spec["tokenizer_dir"]], sort_keys=True)
    return _build_torchtune_tokenizer(key)


@functools.cache
def _build_torchtune_tokenizer(key: str):
    from torchtune.config._utils import _get_component_from_path

    block, fam, tokenizer_dir = json.loads(key)
    if not block:
        if fam not in DEFAULT_TOKENIZERS:
            raise ValueError(f"no torchtune tokenizer known for the tokenizer in {tokenizer_dir}")
        component, files = DEFAULT_TOKENIZERS[fam]
        block = {"_component_": component, **{k: str(Path(tokenizer_dir) / v) for k, v in files.items()}}
    builder = _get_component_from_path(block.pop("_component_"))
    return builder(**block)


def _split_answer(tokens: list[int], answer: list[int], ends: set[int]) -> int | None:
    """Index where the answer starts (the training prompt is tokens[:index]); None if not found."""
    k = len(tokens)
    while k > 0 and tokens[k - 1] in ends:
        k -= 1
    start = k - len(answer)
    return start if start >= 0 and tokens[start:k] == answer else None


@functools.cache
def _hf_tokenizer(tok_dir: str):
    """The HF tokenizer the eval loads, once per directory."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tok_dir)


def cell_tokens(spec: dict) -> dict:
    from cruijff_kit.tools.inspect import prompt_format
    from cruijff_kit.tools.torchtune.datasets import InputOutputDataset

    tok_dir = Path(spec["tokenizer_dir"])
    fam = prompt_format.family(tok_dir)
    tt = _torchtune_tokenizer(spec, fam)
    ds = InputOutputDataset(tt, source=spec["source"], split=spec["split"], dataset_type=spec["dataset_type"],
                            prompt=spec.get("prompt") or "{input}", system_prompt=spec.get("system_prompt") or "",
                            train_on_input=spec.get("train_on_input", False),
                            assistant_prefix=spec.get("assistant_prefix") or "")
    item = ds[0]
    tokens, labels = item["tokens"], item["labels"]
    inp, out = ds._pairs[0]
    stops = prompt_format.stop_token_ids(tok_dir, fam)
    ends = set(stops) | {i for i in (getattr(tt, "eos_id", None), getattr(tt, "eot_id", None)) if i is not None}
    answer_text = out.strip() if fam == "llama3" and spec["dataset_type"] == "chat_completion" else out
    answer = tt.encode(answer_text, add_bos=False, add_eos=False)
    start = _split_answer(tokens, answer, ends)
    end_index = None if start is None else start + len(answer)
    end_id = tokens[end_index] if end_index is not None and end_index < len(tokens) else None

    hf = _hf_tokenizer(str(tok_dir))
    messages = []
    eval_type = spec.get("eval_dataset_type") or spec["dataset_type"]
    system = spec.get("eval_system_prompt") or ""
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": (spec.get("eval_prompt") or "{input}").format(input=inp)})
    eval_ids = prompt_format.render(hf, messages, fam, eval_type, spec.get("eval_assistant_prefix") or "")
    return {
        "cell": spec["cell"], "run": spec.get("run"), "family": fam, "tokenizer_dir": str(tok_dir),
        "train_tokens": tokens, "in_loss": [lab == t for lab, t in zip(labels, tokens)],
        "train_prompt": tokens[:start] if start is not None else None,
        "eval_prompt": eval_ids, "stop_ids": stops,
        "end_token": end_id, "end_in_loss": bool(end_id is not None and labels[end_index] == end_id),
        "end_is_stop": end_id in stops if end_id is not None else False,
        "pieces": {str(i): hf.decode([i], skip_special_tokens=False) for i in set(tokens) | set(eval_ids)},
    }


def main() -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    specs = json.loads(sys.stdin.read())["cells"]
    results = []
    for spec in specs:
        try:
            results.append(cell_tokens(spec))
        except (OSError, ValueError, KeyError) as exc:
            results.append({"cell": spec.get("cell"), "run": spec.get("run"), "error": str(exc)})
    print(json.dumps({"cells": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

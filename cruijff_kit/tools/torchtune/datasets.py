"""torchtune dataset builders for cruijff_kit's input/output JSON files.

The file format (one file per dataset)::

    {"train":      [{"input": "...", "output": "..."}, ...],
     "validation": [{"input": "...", "output": "..."}, ...],
     "test":       [...]}                                  # optional

Use the builder as a ``_component_`` in a torchtune config::

    dataset:
      _component_: cruijff_kit.tools.torchtune.datasets.input_output_dataset
      source: /abs/path/data.json
      split: train
      dataset_type: chat_completion     # or text_completion (base models)
      prompt: "{input}"
      system_prompt: ""
      assistant_prefix: ""              # optional: the assistant turn starts with it (e.g. "Answer:")
      train_on_input: false
      packed: false

Token layouts (``[..]`` = label masked with CROSS_ENTROPY_IGNORE_IDX):

* ``chat_completion``, llama3 tokenizer: ``[<bos>] [<sys header> system <eot>] [<user header> prompt
  <eot>] <assistant header> output <eot> [<eos>]``; qwen2_5 tokenizer: ``[<|im_start|>system\n system
  <|im_end|>\n] [<|im_start|>user\n prompt <|im_end|>\n] <|im_start|>assistant\n output <|im_end|>``.
  Built from torchtune ``Message`` objects by the model tokenizer's own (torchtune) chat format. This is
  NOT what the model's Hugging Face chat template renders (Llama-3.x-Instruct's adds a dated system
  turn, Qwen2.5-Instruct's a default system prompt); the eval side renders this same format itself
  (cruijff_kit/tools/inspect/prompt_format.py) and `cruijff-kit prompts` checks the token ids agree.
  The system turn is omitted when ``system_prompt`` is empty. With ``train_on_input`` the user turn
  is trained on as well (the system turn and BOS never are; the assistant header is, as in torchtune).
  The end token that closes the answer is always in the loss when the example fits ``max_seq_len``:
  torchtune 0.6.1 masks the last token whenever ``max_seq_len`` is set (issue #2792), which for Qwen2.5
  is the final ``<|im_end|>``, so the model would never learn to stop; here such an example is
  tokenized without truncation and keeps its mask.
* ``text_completion``: ``[<bos> prompt] output <eos>`` -- no chat template, no header tokens; prompt
  and output are encoded separately (exactly what the model sees at generation time: the encoded
  prompt, then its continuation). With ``train_on_input`` the prompt is trained on too (not BOS).

``assistant_prefix`` (e.g. ``Answer:``): chat_completion: the assistant turn is ``<assistant header>
prefix output <eot>``, the prefix and the output encoded as two content pieces (torchtune's Llama3Tokenizer
strips each piece), so the prefix's tokens are exactly what the eval prompt ends with
(prompt_format.eval_template); like the assistant header they are in the loss. text_completion: the prompt
is ``prompt + prefix``, encoded as one string as the eval encodes it, masked like the prompt.

This module runs inside the training job: it imports torch/torchtune, never the cruijff_kit CLI.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX, Message
from torchtune.data._utils import truncate

__all__ = ["InputOutputDataset", "input_output_dataset", "load_split", "as_bool",
           "DATASET_TYPES", "SPLITS"]

DATASET_TYPES = ("chat_completion", "text_completion")
SPLITS = ("train", "validation", "test")

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", ""}


def as_bool(value: Any, name: str = "value") -> bool:
    """A config boolean: bool, 0/1, or the strings true/false/yes/no/on/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


# (resolved path, mtime_ns, size) -> parsed JSON; train and validation builders share one parse.
_CACHE: dict[tuple[str, int, int], Any] = {}


def _read_json(path: Path) -> Any:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file not found: {path}") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        _CACHE.clear()
        _CACHE[key] = data
    return _CACHE[key]


def _text(value: Any, *, path: Path, split: str, index: int, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{path}: {split}[{index}].{field} must be a string (or a number), "
                     f"got {type(value).__name__}: {value!r:.80}")


def read_split_records(source: str | os.PathLike, split: str, *, shape: str,
                       top_list: bool = False) -> tuple[Path, list]:
    """(resolved path, the non-empty record list of `split`) of a dataset file: an object of splits, or with
    ``top_list`` also one top-level list (the ``train`` split). ``shape`` names a record, for the messages."""
    path = Path(source).expanduser().resolve()
    if split not in SPLITS:
        raise ValueError(f"{path}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = _read_json(path)
    if top_list and isinstance(data, list):
        if split != "train":
            raise ValueError(f"{path}: the file is one top-level list (the 'train' split); there is no "
                             f"{split!r} split; write {{\"train\": [...], \"{split}\": [...]}} to have one")
        data = {"train": data}
    if not isinstance(data, dict):
        expected = ("a list of preference records or an object of splits" if top_list else
                    "a JSON object with top-level 'train' / 'validation' / 'test' lists")
        raise ValueError(f"{path}: expected {expected}, got a {type(data).__name__}")
    if split not in data:
        have = ", ".join(repr(k) for k in data) or "none"
        raise ValueError(f"{path}: no {split!r} split (top-level keys: {have})")
    records = data[split]
    if not isinstance(records, list):
        raise ValueError(f"{path}: {split!r} must be a list of {shape} records, got a {type(records).__name__}")
    if not records:
        raise ValueError(f"{path}: the {split!r} split is empty")
    return path, records


def check_record(rec: Any, where: str, required: tuple[str, ...], need: str) -> None:
    """ValueError naming `where` unless `rec` is an object with every `required` key (`need`: them, in words)."""
    if not isinstance(rec, dict):
        raise ValueError(f"{where} must be an object with {need}, got a {type(rec).__name__}")
    missing = [k for k in required if k not in rec]
    if missing:
        raise ValueError(f"{where} lacks {' and '.join(repr(k) for k in missing)} "
                         f"(keys: {', '.join(map(repr, rec)) or 'none'})")


def load_split(source: str | os.PathLike, split: str) -> list[tuple[str, str]]:
    """The validated (input, output) pairs of one split of an input/output JSON file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, is not an object, lacks the split, the split is not a
            non-empty list, or a record is not an object with string ``input`` and ``output``.
    """
    path, records = read_split_records(source, split, shape="{'input': ..., 'output': ...}")
    pairs = []
    for i, rec in enumerate(records):
        check_record(rec, f"{path}: {split}[{i}]", ("input", "output"), "'input' and 'output'")
        pairs.append((_text(rec["input"], path=path, split=split, index=i, field="input"),
                      _text(rec["output"], path=path, split=split, index=i, field="output")))
    return pairs


def _format_prompt(prompt: str, text: str, path: Path) -> str:
    try:
        return prompt.format(input=text)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{path}: prompt {prompt!r} cannot be formatted with input= ({e!r}); "
                         "the only placeholder is {input}; write literal braces as {{ and }}") from None


class InputOutputDataset(Dataset):
    """Map-style dataset of one split; items are ``{"tokens": [...], "labels": [...]}``.

    Tokenization is lazy (per item), like torchtune's ``SFTDataset``; the JSON is parsed and every
    record validated up front so that a bad file fails before training starts.
    """

    def __init__(self, tokenizer, *, source: str, split: str = "train",
                 dataset_type: str = "chat_completion", prompt: str = "{input}",
                 system_prompt: str = "", train_on_input: bool | str = False,
                 assistant_prefix: str | None = "") -> None:
        if dataset_type not in DATASET_TYPES:
            raise ValueError(f"dataset_type must be one of {', '.join(DATASET_TYPES)}, got {dataset_type!r}")
        self._tokenizer = tokenizer
        self.source = Path(source).expanduser().resolve()
        self.split = split
        self.dataset_type = dataset_type
        self.prompt = "{input}" if prompt is None else str(prompt)
        self.system_prompt = "" if system_prompt is None else str(system_prompt)
        if assistant_prefix is not None and not isinstance(assistant_prefix, str):
            raise ValueError(f"assistant_prefix must be a string, got {type(assistant_prefix).__name__}")
        self.assistant_prefix = assistant_prefix or ""
        self.train_on_input = as_bool(train_on_input, "train_on_input")
        self._pairs = load_split(self.source, split)
        _format_prompt(self.prompt, self._pairs[0][0], self.source)  # fail early on a bad template

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        inp, out = self._pairs[index]
        prompt = _format_prompt(self.prompt, inp, self.source)
        if self.dataset_type == "chat_completion":
            return self._chat(prompt, out)
        return self._text_completion(prompt + self.assistant_prefix, out)

    def messages(self, index: int) -> list[Message]:
        """The chat messages of one record (what chat_completion tokenizes)."""
        inp, out = self._pairs[index]
        return self._messages(_format_prompt(self.prompt, inp, self.source), out)

    def _messages(self, prompt: str, out: str) -> list[Message]:
        msgs = []
        if self.system_prompt:
            msgs.append(Message(role="system", content=self.system_prompt, masked=True))
        msgs.append(Message(role="user", content=prompt, masked=not self.train_on_input))
        answer = ([{"type": "text", "content": self.assistant_prefix}, {"type": "text", "content": out}]
                  if self.assistant_prefix else out)
        msgs.append(Message(role="assistant", content=answer, masked=False))
        return msgs

    def _chat(self, prompt: str, out: str) -> dict[str, list[int]]:
        tokens, mask = self._tokenize_chat(self._messages(prompt, out))
        labels = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]
        return {"tokens": tokens, "labels": labels}

    def _tokenize_chat(self, messages: list[Message]) -> tuple[list[int], list[bool]]:
        """torchtune's tokens and mask; an example that fits max_seq_len keeps the mask of its last token.

        torchtune 0.6.1 truncates the mask with ``True`` as its "eos", so with max_seq_len set the last
        token is always masked, even when nothing was cut (issue #2792). We tokenize without the limit
        first and use that whenever it fits; only a too-long example goes through torchtune's truncation.
        """
        tok = self._tokenizer
        max_len = getattr(tok, "max_seq_len", None)
        if max_len is None:
            sample = tok({"messages": messages})
            return sample["tokens"], sample["mask"]
        tok.max_seq_len = None
        try:
            sample = tok({"messages": messages})
        finally:
            tok.max_seq_len = max_len
        if len(sample["tokens"]) <= max_len:
            return sample["tokens"], sample["mask"]
        sample = tok({"messages": messages})
        return sample["tokens"], sample["mask"]

    def _text_completion(self, prompt: str, out: str) -> dict[str, list[int]]:
        tok = self._tokenizer
        head = tok.encode(prompt, add_bos=True, add_eos=False)
        tail = tok.encode(out, add_bos=False, add_eos=True)
        n_bos = 1 if getattr(tok, "bos_id", None) is not None and head[:1] == [tok.bos_id] else 0
        tokens = head + tail
        labels = ([CROSS_ENTROPY_IGNORE_IDX] * n_bos
                  + (head[n_bos:] if self.train_on_input else [CROSS_ENTROPY_IGNORE_IDX] * (len(head) - n_bos))
                  + tail)
        max_len = getattr(tok, "max_seq_len", None)
        if max_len is not None and len(tokens) > max_len:
            eos = getattr(tok, "eos_id", None)
            tokens = truncate(tokens, max_len, eos)
            labels = truncate(labels, max_len, eos)
        return {"tokens": tokens, "labels": labels}


def input_output_dataset(tokenizer, *, source: str, split: str = "train",
                         dataset_type: str = "chat_completion", prompt: str = "{input}",
                         system_prompt: str = "", train_on_input: bool | str = False,
                         packed: bool | str = False, split_across_pack: bool | str = False,
                         assistant_prefix: str | None = ""):
    """Builder for one split of a cruijff_kit input/output JSON file (see the module docstring).

    Args:
        tokenizer: the torchtune model tokenizer (the recipe passes it positionally).
        source: path to the ``.json`` file.
        split: ``train``, ``validation`` or ``test``.
        dataset_type: ``chat_completion`` (chat template of the tokenizer) or ``text_completion``.
        prompt: format string for the user turn / text prompt; ``{input}`` is the record's input.
        system_prompt: system turn (chat_completion only; omitted when empty).
        train_on_input: also compute the loss on the prompt tokens (bool or 'true'/'false').
        assistant_prefix: text the assistant turn starts with (the eval prompt ends with it); '' = none.
        packed: pack samples into ``tokenizer.max_seq_len`` long sequences (torchtune PackedDataset).
        split_across_pack: with ``packed``, let a sample be split across two packs.

    Returns:
        ``InputOutputDataset``, or a torchtune ``PackedDataset`` wrapping it when ``packed``.
    """
    ds = InputOutputDataset(tokenizer, source=source, split=split, dataset_type=dataset_type,
                            prompt=prompt, system_prompt=system_prompt, train_on_input=train_on_input,
                            assistant_prefix=assistant_prefix)
    if as_bool(packed, "packed"):
        from torchtune.datasets import PackedDataset

        if getattr(tokenizer, "max_seq_len", None) is None:
            raise ValueError("packed: true needs tokenizer.max_seq_len to be set")
        return PackedDataset(ds, max_seq_len=tokenizer.max_seq_len, padding_idx=tokenizer.pad_id,
                             split_across_pack=as_bool(split_across_pack, "split_across_pack"))
    return ds

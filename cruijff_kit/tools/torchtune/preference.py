"""torchtune preference (DPO) dataset builder for cruijff_kit's chosen/rejected JSON files.

The file format (one file; a top-level list is the ``train`` split)::

    {"train":      [{"prompt": "...", "chosen": "...", "rejected": "..."}, ...],
     "validation": [...]}                                        # optional
    # or
    [{"prompt": "...", "chosen": "...", "rejected": "..."}, ...]

``prompt`` is the record's *input*: it is put into the ``prompt`` template (``{input}``) and preceded
by ``system_prompt`` exactly as the SFT dataset (``datasets.input_output_dataset``) does, so a DPO
run that uses the same ``prompt`` / ``system_prompt`` / ``dataset_type`` as its SFT run sees the
same token layout. A record may give ``messages`` instead of ``prompt``: a list of
``{"role": "system"|"user"|"assistant", "content": str}`` turns before the response; they are used
as they are (the ``prompt`` template is not applied; ``system_prompt`` only when the messages hold no
system turn). Other keys (``target``, scores, ... as written by ``cruijff-kit prefs generate``) are
ignored.

Use the builder as a ``_component_`` in a torchtune DPO config, with the keys of the SFT builder's
example in ``datasets`` (``source``, ``split``, ``dataset_type``, ``prompt``, ``system_prompt``; not
``train_on_input`` or ``packed``) and
``_component_: cruijff_kit.tools.torchtune.preference.preference_dataset``.

Items are ``{"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}`` (what
``torchtune.data.padded_collate_dpo`` takes); only the response tokens (and, for chat, the final
end-of-turn token) carry labels, the prompt is always masked.

This module runs inside the training job: it imports torch/torchtune, never the cruijff_kit CLI.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX, Message

from cruijff_kit.tools.torchtune.datasets import (
    DATASET_TYPES,
    InputOutputDataset,
    _format_prompt,
    check_record,
    read_split_records,
)

__all__ = ["PreferenceDataset", "preference_dataset", "load_preference_split", "ROLES"]

ROLES = ("system", "user", "assistant")
_RESPONSE_KEYS = ("chosen", "rejected")


def _need_text(value: Any, *, where: str, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}.{field} must be a string, got {type(value).__name__}: {value!r:.80}")


def _messages(value: Any, *, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}.messages must be a non-empty list of {{'role', 'content'}} turns")
    turns = []
    for j, turn in enumerate(value):
        at = f"{where}.messages[{j}]"
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"{at} must be an object with 'role' and 'content'")
        if turn["role"] not in ROLES:
            raise ValueError(f"{at}.role must be one of {', '.join(ROLES)}, got {turn['role']!r}")
        turns.append({"role": turn["role"], "content": _need_text(turn["content"], where=at, field="content")})
    if turns[-1]["role"] == "assistant":
        raise ValueError(f"{where}.messages ends with an assistant turn; the messages are the conversation "
                         "before the response (chosen/rejected are the responses)")
    return turns


def load_preference_split(source: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """The validated records of one split: ``{"prompt": str}`` or ``{"messages": [...]}`` plus chosen/rejected.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not JSON; no such split; the split is not a non-empty list; a record is not an
            object, lacks ``prompt``/``messages``, ``chosen`` or ``rejected``, or has a bad value
            (the message names the record's index and key).
    """
    path, records = read_split_records(source, split, shape="{'prompt', 'chosen', 'rejected'}", top_list=True)
    out = []
    for i, rec in enumerate(records):
        where = f"{path}: {split}[{i}]"
        prompt = () if isinstance(rec, dict) and "messages" in rec else ("prompt",)
        check_record(rec, where, (*prompt, *_RESPONSE_KEYS), "'prompt', 'chosen' and 'rejected'")
        if "prompt" in rec and "messages" in rec:
            raise ValueError(f"{where} has both 'prompt' and 'messages'; give one of them")
        item: dict[str, Any] = {k: _need_text(rec[k], where=where, field=k) for k in _RESPONSE_KEYS}
        if "messages" in rec:
            item["messages"] = _messages(rec["messages"], where=where)
        else:
            item["prompt"] = _need_text(rec["prompt"], where=where, field="prompt")
        out.append(item)
    return out


class _Encoder(InputOutputDataset):
    """The SFT dataset's tokenization (prompt + one response) without its input/output file.

    Sharing ``InputOutputDataset``'s encoders keeps DPO sequences token-for-token equal to what SFT
    trains on for the same prompt and response (train_on_input is always off: DPO scores the response).
    """

    def __init__(self, tokenizer, *, source: Path, dataset_type: str, prompt: str, system_prompt: str) -> None:
        # Deliberately not calling super().__init__: that reads an input/output file.
        self._tokenizer = tokenizer
        self.source = source
        self.dataset_type = dataset_type
        self.prompt = prompt
        self.system_prompt = system_prompt
        self.train_on_input = False
        self.assistant_prefix = ""  # validate refuses a prefix on DPO runs
        self._pairs = []

    def encode(self, record: dict[str, Any], response: str) -> tuple[list[int], list[int]]:
        if "messages" in record:
            return self._encode_messages(record["messages"], response)
        text = _format_prompt(self.prompt, record["prompt"], self.source)
        sample = (self._chat(text, response) if self.dataset_type == "chat_completion"
                  else self._text_completion(text, response))
        return sample["tokens"], sample["labels"]

    def _encode_messages(self, turns: list[dict[str, str]], response: str) -> tuple[list[int], list[int]]:
        if self.dataset_type == "text_completion":
            # As in evaluation (run_cell's raw template): the turns' text concatenated, after BOS.
            sample = self._text_completion("".join(t["content"] for t in turns), response)
            return sample["tokens"], sample["labels"]
        msgs = []
        if self.system_prompt and not any(t["role"] == "system" for t in turns):
            msgs.append(Message(role="system", content=self.system_prompt, masked=True))
        msgs += [Message(role=t["role"], content=t["content"], masked=True) for t in turns]
        msgs.append(Message(role="assistant", content=response, masked=False))
        sample = self._tokenizer({"messages": msgs})
        tokens, mask = sample["tokens"], sample["mask"]
        return tokens, [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]


class PreferenceDataset(Dataset):
    """Map-style DPO dataset of one split (records validated up front, tokenized per item)."""

    def __init__(self, tokenizer, *, source: str, split: str = "train",
                 dataset_type: str = "chat_completion", prompt: str = "{input}", system_prompt: str = "") -> None:
        if dataset_type not in DATASET_TYPES:
            raise ValueError(f"dataset_type must be one of {', '.join(DATASET_TYPES)}, got {dataset_type!r}")
        self.source = Path(source).expanduser().resolve()
        self.split = split
        self.dataset_type = dataset_type
        self.prompt = "{input}" if prompt is None else str(prompt)
        self.system_prompt = "" if system_prompt is None else str(system_prompt)
        self._records = load_preference_split(self.source, split)
        self._encoder = _Encoder(tokenizer, source=self.source, dataset_type=dataset_type,
                                 prompt=self.prompt, system_prompt=self.system_prompt)
        first = next((r for r in self._records if "prompt" in r), None)
        if first is not None:
            _format_prompt(self.prompt, first["prompt"], self.source)  # fail early on a bad template

    def __len__(self) -> int:
        return len(self._records)

    def record(self, index: int) -> dict[str, Any]:
        return dict(self._records[index])

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        rec = self._records[index]
        chosen_ids, chosen_labels = self._encoder.encode(rec, rec["chosen"])
        rejected_ids, rejected_labels = self._encoder.encode(rec, rec["rejected"])
        return {"chosen_input_ids": chosen_ids, "chosen_labels": chosen_labels,
                "rejected_input_ids": rejected_ids, "rejected_labels": rejected_labels}


def preference_dataset(tokenizer, *, source: str, split: str = "train", dataset_type: str = "chat_completion",
                       prompt: str = "{input}", system_prompt: str = "") -> PreferenceDataset:
    """Builder for one split of a chosen/rejected JSON file (see the module docstring).

    Args:
        tokenizer: the torchtune model tokenizer (the recipe passes it positionally).
        source: path to the ``.json`` file (a top-level list, or an object of splits).
        split: ``train``, ``validation`` or ``test`` (a top-level list is ``train``).
        dataset_type: ``chat_completion`` (chat template of the tokenizer) or ``text_completion``.
        prompt: format string for the user turn / text prompt; ``{input}`` is the record's ``prompt``.
        system_prompt: system turn (chat_completion only; omitted when empty).
    """
    return PreferenceDataset(tokenizer, source=source, split=split, dataset_type=dataset_type,
                             prompt=prompt, system_prompt=system_prompt)

"""Our JSON data format -> inspect-ai Samples, presented exactly as in training.

The file is `{"train": [{"input": ..., "output": ...}, ...], "validation": [...], "test": [...]}`.
Each record becomes one Sample: the prompt template (with `{input}` replaced by the record's input)
as the user message, preceded by the system prompt as a system message when one is set, and the
record's output as the target. Whether a chat template wraps those messages (chat_completion) or
they are concatenated raw (text_completion) is the runner's business (run_cell.py), as in training (text_completion has no system prompt).
"""
from __future__ import annotations

import json
from pathlib import Path

from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageSystem, ChatMessageUser

INPUT_PLACEHOLDER = "{input}"
SPLITS = ("train", "validation", "test")


def format_prompt(template: str, text: str) -> str:
    """The prompt template filled in exactly as training fills it: `template.format(input=text)`.

    (cruijff_kit.tools.torchtune.datasets formats the training prompt the same way, so literal
    braces are written {{ and }} in both.)
    """
    try:
        return template.format(input=text)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"prompt {template!r} cannot be formatted with input= ({exc!r}); the only "
                         "placeholder is {input}; write literal braces as {{ and }}") from None


def read_split(data_path: str | Path, split: str) -> list[dict]:
    """The records of one split; a clear error when the file, the split or a field is missing."""
    path = Path(data_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: dataset not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of splits ({', '.join(SPLITS)}) to lists")
    if split not in data or not isinstance(data[split], list):
        have = ", ".join(k for k, v in data.items() if isinstance(v, list)) or "none"
        raise ValueError(f"{path}: no split '{split}' (splits: {have})")
    records = data[split]
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "input" not in record or "output" not in record:
            raise ValueError(f"{path}: {split}[{i}] needs 'input' and 'output'")
    return records


def messages_for(text: str, prompt: str = INPUT_PLACEHOLDER, system_prompt: str = "") -> list:
    """The chat messages of one example: [system (if any), user]."""
    messages: list = []
    if system_prompt:
        messages.append(ChatMessageSystem(content=system_prompt))
    messages.append(ChatMessageUser(content=format_prompt(prompt, text)))
    return messages


def record_to_sample(record: dict, index: int, *, prompt: str = INPUT_PLACEHOLDER,
                     system_prompt: str = "") -> Sample:
    text, target = str(record["input"]), record["output"]
    target = [str(t) for t in target] if isinstance(target, list) else str(target)
    return Sample(input=messages_for(text, prompt, system_prompt), target=target, id=index + 1,
                  metadata={"input": text})


def load_dataset(data_path: str | Path, split: str = "validation", *, prompt: str = INPUT_PLACEHOLDER,
                 system_prompt: str = "", limit: int | None = None) -> MemoryDataset:
    """One split of a cruijff_kit JSON file as an inspect dataset (ids 1..N in file order)."""
    records = read_split(data_path, split)
    if limit is not None:
        records = records[:limit]
    samples = [record_to_sample(r, i, prompt=prompt, system_prompt=system_prompt)
               for i, r in enumerate(records)]
    return MemoryDataset(samples, name=f"{Path(data_path).stem}:{split}", location=str(data_path))

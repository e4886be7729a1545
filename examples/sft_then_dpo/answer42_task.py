"""inspect-ai task of the sft_then_dpo example: a question -> "42", scored by exact match.

Reads one split of data/answer42.json through cruijff_kit's dataset reader, so each question is shown
with the same prompt template and system prompt as in training. Scaffold passes data_path, split,
prompt and system_prompt; the design's scorers replace the default below.
"""
from inspect_ai import Task, task
from inspect_ai.solver import generate

from cruijff_kit.tools.inspect.dataset import load_dataset
from cruijff_kit.tools.inspect.scorers import build_scorers


@task
def answer42(data_path: str, split: str = "test", prompt: str = "{input}", system_prompt: str = "",
             limit: int | None = None) -> Task:
    return Task(dataset=load_dataset(data_path, split, prompt=prompt, system_prompt=system_prompt, limit=limit),
                solver=generate(), scorer=build_scorers([{"name": "match", "params": {"location": "begin"}}]))

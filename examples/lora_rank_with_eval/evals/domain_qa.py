"""Domain QA: "What is the chemical symbol for X?" -> the symbol, scored by exact match.

The questions in data/domain_qa_test.jsonl (`{"id", "input", "output"}` per line) are elements the
fine-tuning data (../data/domain_qa.json) does not contain. Each question is presented as in training:
`prompt` with {input} replaced, after the `system_prompt` turn when there is one. `cruijff-kit generate`
passes the sweep's prompt and system_prompt and the `args` of experiment.yaml.

Standalone:
  inspect eval evals/domain_qa.py@domain_qa --model hf/local -M model_path=results/run_000/epoch_0
"""
import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageSystem, ChatMessageUser
from inspect_ai.scorer import match
from inspect_ai.solver import generate

HERE = Path(__file__).resolve().parent


def load_samples(data_file: str, prompt: str, system_prompt: str) -> list[Sample]:
    path = Path(data_file)
    path = path if path.is_absolute() else HERE / path
    samples = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        messages = [ChatMessageSystem(content=system_prompt)] if system_prompt else []
        messages.append(ChatMessageUser(content=prompt.format(input=record["input"])))
        samples.append(Sample(id=record["id"], input=messages, target=record["output"]))
    return samples


@task
def domain_qa(data_file: str = "data/domain_qa_test.jsonl", prompt: str = "{input}",
              system_prompt: str = "") -> Task:
    """Chemical-symbol questions; `data_file` is relative to this file unless absolute."""
    return Task(
        dataset=MemoryDataset(load_samples(data_file, prompt, system_prompt), name="domain_qa"),
        solver=generate(),
        scorer=match(location="exact"),
    )

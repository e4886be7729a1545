"""inspect-ai task of the predictable_or_not sanity check: input -> expected output, exact match.

Reads one split of a scenario file (data/green/predictable_or_not/{pp,pu,up,uu}.json) through
cruijff_kit's dataset reader, so each question is presented with the same prompt template and
system prompt as in training. Scaffold passes data_path (the run's own scenario), split, prompt and
system_prompt; the design's scorers (exact match, numeric) replace the defaults below.

Standalone: inspect eval predictable_or_not_task.py@predictable_or_not \\
    -T data_path=data/green/predictable_or_not/up.json --model hf/local -M model_path=... -M do_sample=false
"""
from inspect_ai import Task, task
from inspect_ai.solver import generate

from cruijff_kit.tools.inspect.dataset import load_dataset
from cruijff_kit.tools.inspect.scorers import build_scorers

DEFAULT_SCORERS = [{"name": "match", "params": {"location": "exact"}},
                   {"name": "numeric", "params": {"tolerance": 0}}]


@task
def predictable_or_not(data_path: str, split: str = "validation", prompt: str = "{input}",
                       system_prompt: str = "", limit: int | None = None) -> Task:
    """Each example's input (5 comma-separated integers) -> its output (one integer)."""
    return Task(
        dataset=load_dataset(data_path, split, prompt=prompt, system_prompt=system_prompt, limit=limit),
        solver=generate(),
        scorer=build_scorers(DEFAULT_SCORERS),
    )

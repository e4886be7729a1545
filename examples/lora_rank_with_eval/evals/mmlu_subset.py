"""A few MMLU questions (0-shot) through the inspect_evals package: a general-knowledge check that
fine-tuning did not break the model.

inspect_evals is an optional dependency and is not installed with cruijff_kit; the task then fails
with a one-line message saying how to install it (`pip install inspect-evals`). MMLU's data comes from
the Hugging Face hub (cais/mmlu): download it once with network access, or the offline eval fails.
`cruijff-kit generate` checks this file statically (ast), so the sweep generates either way.
"""
from inspect_ai import Task, task, task_with


@task
def mmlu_subset(subjects: list[str] | None = None, limit: int = 20) -> Task:
    """The first `limit` MMLU questions of `subjects` (all subjects when empty)."""
    try:
        from inspect_evals.mmlu import mmlu_0_shot
    except ImportError:
        raise ImportError("mmlu_subset needs the inspect_evals package, which is not installed; "
                          "install it with `pip install inspect-evals` or drop mmlu_subset from "
                          "evaluation.tasks") from None
    full = mmlu_0_shot(subjects=list(subjects or []))
    return task_with(full, dataset=full.dataset[:limit], name="mmlu_subset")

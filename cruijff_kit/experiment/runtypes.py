"""The run types, in one table: what each `runs[].type` means to every stage.

    name         trains  data key     evaluated as       objective  baseline  needs checkpoint_path
    fine-tuned   yes     training     epoch checkpoint   sft
    dpo          yes     preference   epoch checkpoint   dpo
    control      no      -            base model         -          yes
    eval-only    no      -            given checkpoint   -                    yes

Every module asks this table (`RUN_TYPES[run.type].trains`, `run_type(run).data_key`, ...) instead of
comparing type names; the schema's `runs[].type` enum is the user-facing list of the same keys (a
test keeps them equal). A new run type is one row here plus the schema enum; see docs/extending.md.
"""
from __future__ import annotations

from dataclasses import dataclass

# training objectives (what the recipe optimises)
SFT, DPO = "sft", "dpo"

# what an eval cell of the run loads
EPOCH_CHECKPOINT = "epoch checkpoint"  # {output_dir}/epoch_N: the merged model (or adapter + its base)
BASE_MODEL = "base model"  # the design's base model itself
GIVEN_CHECKPOINT = "given checkpoint"  # the run's checkpoint_path


@dataclass(frozen=True)
class RunType:
    name: str
    trains: bool  # has a training job (and saves epoch_N checkpoints)
    data_key: str | None  # the data section it trains on (data.training / data.preference); None: trains on nothing
    evaluated_as: str  # EPOCH_CHECKPOINT | BASE_MODEL | GIVEN_CHECKPOINT
    objective: str | None  # training objective: "sft" | "dpo"; None: no training
    baseline: bool = False  # summarize compares the other runs' cells with it
    needs_checkpoint_path: bool = False  # the design must name the model it evaluates

    @property
    def per_epoch(self) -> bool:
        """Are its eval cells per saved epoch (`{task}_epoch{N}`) rather than one per task?"""
        return self.evaluated_as == EPOCH_CHECKPOINT


RUN_TYPES: dict[str, RunType] = {t.name: t for t in (
    RunType("fine-tuned", trains=True, data_key="training", evaluated_as=EPOCH_CHECKPOINT, objective=SFT),
    RunType("control", trains=False, data_key=None, evaluated_as=BASE_MODEL, objective=None, baseline=True),
    RunType("eval-only", trains=False, data_key=None, evaluated_as=GIVEN_CHECKPOINT, objective=None,
            needs_checkpoint_path=True),
    RunType("dpo", trains=True, data_key="preference", evaluated_as=EPOCH_CHECKPOINT, objective=DPO),
)}

OBJECTIVES = tuple(dict.fromkeys(t.objective for t in RUN_TYPES.values() if t.objective))  # ("sft", "dpo")


def run_type(run) -> RunType:
    """The table row of a run (anything with a `.type`)."""
    return RUN_TYPES[run.type]


def for_objective(objective: str) -> RunType:
    """The run type that trains with `objective` (SFT -> fine-tuned, DPO -> dpo)."""
    return next(t for t in RUN_TYPES.values() if t.objective == objective)


def baseline() -> RunType:
    """The run type summarize compares against (the base-model control)."""
    return next(t for t in RUN_TYPES.values() if t.baseline)


def training_names() -> tuple[str, ...]:
    return tuple(name for name, t in RUN_TYPES.items() if t.trains)

"""Typed in-memory experiment. Built once by `load.load_experiment`; every later step reads it."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.runtypes import RUN_TYPES, RunType

TRUE_STRINGS = {"true": True, "True": True, "false": False, "False": False}


def as_bool(value) -> bool:
    """YAML booleans and the legacy string booleans ('true'/'false') of setup_finetune.yaml."""
    return TRUE_STRINGS.get(value, value) if isinstance(value, str) else bool(value)


@dataclass(frozen=True)
class Controls:
    """Training settings shared by every run unless the run's `parameters` override them."""

    system_prompt: str = ""
    prompt: str = "{input}"
    assistant_prefix: str = ""  # the assistant turn starts with it, in training and at eval
    dataset_type: str = "chat_completion"
    epochs: int = 1
    batch_size: int = 4
    batch_size_val: int = 0  # 0 = same as batch_size
    gradient_accumulation_steps: int = 1
    lr: float = 3e-4
    lora_rank: int = 8
    lora_alpha: float = 0  # 0 = 2 x rank
    lora_dropout: float = 0.0
    lora_attn_modules: tuple = ("q_proj", "v_proj", "output_proj")
    apply_lora_to_mlp: bool = True
    weight_decay: float = 0.01
    num_warmup_steps: int = 0
    lr_scheduler: str = "cosine"
    max_seq_len: int = 512
    packed: bool = False
    train_on_input: bool = False
    validation_during_training: bool = True
    run_val_every_n_steps: int = 0
    seed: int = 42
    save_adapter_weights_only: bool = True  # adapter-only epochs (~1% of merged); eval merges in memory
    log_every_n_steps: int = 1
    max_steps_per_epoch: int | None = None
    dpo_beta: float = 0.1
    device: str = "cuda"
    dtype: str = "bf16"

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, raw: dict) -> Controls:
        values = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            if f.type in ("bool",):
                value = as_bool(value)
            elif f.name == "lora_attn_modules":
                value = tuple(value)
            values[f.name] = value
        built = cls(**values)
        if not built.lora_alpha:
            built = replace(built, lora_alpha=2 * built.lora_rank)
        return built


@dataclass(frozen=True)
class BaseModel:
    name: str
    path: Path
    size_gb: float = 0.0
    registry: str = ""  # registry key when the display name differs (e.g. name "tiny", registry "tiny-llama")
    component: dict | None = None  # explicit torchtune component block for unknown models


@dataclass(frozen=True)
class Dataset:
    path: str  # may contain {dataset_label}
    dataset_label: str = ""
    format: str = "json"
    size_kb: float = 0.0
    splits: dict = field(default_factory=dict)
    generate: dict | None = None  # preference pairs built by `prefs generate` (source resolved to an absolute path)

    def file_for(self, label: str) -> Path:
        return Path(self.path.replace("{dataset_label}", label or self.dataset_label))


@dataclass(frozen=True)
class Run:
    name: str
    type: str  # a key of experiment.runtypes.RUN_TYPES
    model: str
    parameters: dict = field(default_factory=dict)
    controls: Controls = field(default_factory=Controls)  # controls with this run's parameters applied
    dataset_label: str = ""
    checkpoint_path: Path | None = None
    stage: str = ""
    base_run: str = ""
    base_epoch: str | int = "last"
    slurm_overrides: dict = field(default_factory=dict)
    compute: dict = field(default_factory=dict)

    @property
    def kind(self) -> RunType:
        """This run's row of the run-type table."""
        return RUN_TYPES[self.type]

    @property
    def trains(self) -> bool:
        return self.kind.trains


@dataclass(frozen=True)
class Task:
    name: str
    script: Path
    function: str
    dataset: Path | None = None
    split: str = ""  # "" = test when the dataset has one, else validation (workers.inspect.evaluator.cell_split)
    description: str = ""
    prompt: str | None = None
    system_prompt: str | None = None
    assistant_prefix: str | None = None  # None: the run's controls.assistant_prefix
    scorers: tuple = ()
    prompt_sweep: bool = False  # eval prompts may differ from training (warned, shown by `cruijff-kit prompts`)


@dataclass(frozen=True)
class Cell:
    """One evaluation: a run's checkpoint (epoch number, `best` / `last` picked when the eval runs, or None
    for control/eval-only) on one task."""

    run: str
    task: str
    epoch: int | str | None
    vis_label: str = ""

    @property
    def dirname(self) -> str:
        return layout.cell_dirname(self.task, self.epoch)


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    value: float
    on_fail: str = "stop"


@dataclass(frozen=True)
class Stage:
    name: str
    description: str = ""
    gate: Gate | None = None


@dataclass(frozen=True)
class Evaluation:
    scorers: tuple = ()  # ({"name":..., "params": {...}}, ...)
    tasks: tuple = ()
    matrix: tuple = ()  # raw matrix rows (dicts)
    temperature: float = 0.0
    do_sample: bool = False
    max_tokens: int = 32
    seed: int = 42
    limit: int | None = None
    max_connections: int | None = None  # samples evaluated concurrently (inspect-ai)
    group: str = "checkpoint"  # eval cells per job: cell | checkpoint | run (workers/inspect/groups.py)
    compute: dict = field(default_factory=dict)  # SBATCH resources of every eval job (jobscript.job_overrides)


@dataclass(frozen=True)
class Experiment:
    name: str
    question: str
    date: str
    type: str
    dir: Path
    source: Path
    hypothesis: str = ""
    purpose: str = ""
    project: str = ""
    tools: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    controls: Controls = field(default_factory=Controls)
    models: tuple = ()
    training_data: Dataset | None = None
    preference_data: Dataset | None = None
    wandb_project: str = ""
    wandb_entity: str = ""
    runs: tuple = ()
    evaluation: Evaluation = field(default_factory=Evaluation)
    stages: tuple = ()
    raw: dict = field(default_factory=dict)  # the validated YAML (profile applied), for re-serialising

    @cached_property
    def _runs_by_name(self) -> dict:
        return {run.name: run for run in self.runs}

    def run(self, name: str) -> Run:
        return self._runs_by_name[name]

    def model(self, name: str) -> BaseModel:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def task(self, name: str) -> Task:
        for task in self.evaluation.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    @cached_property
    def cell_counts(self) -> dict:
        """Number of eval cells per run (estimates ask this once per run of a 1,000-run sweep)."""
        counts: dict = {}
        for cell in self.cells():
            counts[cell.run] = counts.get(cell.run, 0) + 1
        return counts

    def cells(self) -> list[Cell]:
        """Every (run, task, epoch) evaluation of the matrix, in a stable order."""
        from cruijff_kit.experiment.epochs import row_epochs  # (tools/ import this module: keep it lean)

        out: list[Cell] = []
        for row in self.evaluation.matrix:
            epochs = row_epochs(row)
            for task in row["tasks"]:
                for epoch in epochs:
                    out.append(Cell(row["run"], task, epoch, row.get("vis_label", "")))
        return out

    def data_section(self, run: Run) -> Dataset | None:
        """The data section a run trains on (its type's data key); data.training for runs that do not train."""
        return self.preference_data if run.kind.data_key == "preference" else self.training_data

    def dataset_file(self, run: Run) -> Path | None:
        """The file a run trains on (dpo without data.preference falls back to data.training)."""
        data = self.data_section(run) or self.training_data
        return data.file_for(run.dataset_label) if data else None

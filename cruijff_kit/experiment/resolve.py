"""Facts about one run that several workers need, derived once: `resolve_run(exp, run, settings)`.

    root model       the design's `models.base` entry the run starts from: its own `model`, or, for a
                     run whose model is not a base model, the one of its base_run chain
    spec             that model's registry entry (None, with `spec_error`, when it cannot be resolved)
    dataset_type     chat_completion | text_completion: base (non-instruct) models get text_completion
                     unless the design sets dataset_type explicitly (controls or the run's parameters)
    data file        what the run trains on (Experiment.dataset_file: its type's data section)
    output dir       settings.output_dir(experiment, run): where training writes epoch_N/
    base checkpoint  for a run with base_run: `{base output dir}/epoch_N` (N = the base's last epoch for
                     `last` and `best`, else the number), and for `best` the base output dir the job
                     picks the epoch from (tools/torchtune/pick_epoch)

The torchtune trainer, the inspect evaluator and the preference generator read these instead of
re-deriving them; problems (unknown model, base model with chat_completion, ...) stay with the worker
that reports them. Results are cached per (experiment, settings) pair.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.model import BaseModel, Experiment, Run
from cruijff_kit.experiment.runtypes import RunType

TEXT_COMPLETION = "text_completion"
CHAT_COMPLETION = "chat_completion"


@dataclass(frozen=True)
class ResolvedRun:
    run: Run
    kind: RunType
    model_name: str  # the root model's name (may be missing from models.base: then model is None)
    model: BaseModel | None
    spec: object | None  # models.registry.ModelSpec
    spec_error: UserError | None
    dataset_type: str
    dataset_type_explicit: bool
    data_file: Path | None
    output_dir: Path
    base_run: Run | None = None
    base_epoch: int | None = None  # the base run's epoch finetune.yaml names (last for `best`)
    base_checkpoint: Path | None = None
    pick_best_from: Path | None = None  # base_epoch best: the base run's output dir, resolved in the job

    @property
    def adapter_base(self) -> Path | None:
        """What the run's adapters apply to at eval: its base run's checkpoint (`epoch_best` for base_epoch best:
        the eval job picks it with pick_epoch, exactly as the training job does), else its base model."""
        if self.pick_best_from is not None:
            return layout.epoch_best_dir(self.pick_best_from)
        if self.base_checkpoint is not None:
            return self.base_checkpoint
        return self.model.path if self.model is not None else None

    def checkpoint(self, epoch: int | str) -> Path:
        """The run's own saved checkpoint of one epoch (`best` / `last`: the stand-in the eval job resolves)."""
        if epoch in layout.NAMED_EPOCHS:
            return layout.epoch_named_dir(self.output_dir, epoch)
        return layout.epoch_dir(self.output_dir, epoch)


def root_model_name(exp: Experiment, run: Run) -> str:
    """The run's model, followed along base_run while it is not one of the design's base models."""
    names = {m.name for m in exp.models}
    cur, seen = run, set()
    while cur.model not in names and cur.base_run and cur.name not in seen:
        seen.add(cur.name)
        cur = exp.run(cur.base_run)
    return cur.model


def root_model(exp: Experiment, run: Run) -> BaseModel:
    """The design's base model of a run (KeyError when the chain ends outside models.base)."""
    return exp.model(root_model_name(exp, run))


@lru_cache(maxsize=256)
def _lookup(name: str, registry_key: str, component_json: str, where: str, path: str):
    from cruijff_kit.models.registry import lookup

    try:
        return lookup(name=name, registry_key=registry_key, where=where, path=path,
                      component=json.loads(component_json) if component_json else None), None
    except UserError as exc:
        return None, exc


def model_lookup(exp: Experiment, name: str) -> tuple[BaseModel | None, object | None, UserError | None]:
    """(models.base entry, registry spec, error) of a model name of the design."""
    index = next((i for i, m in enumerate(exp.models) if m.name == name), None)
    if index is None:
        return None, None, UserError(f"'{name}' is not in models.base", where=str(exp.source))
    m = exp.models[index]
    spec, err = _lookup(m.name, m.registry, json.dumps(m.component, sort_keys=True) if m.component else "",
                        str(exp.source), f"models.base[{index}]")
    return m, spec, err


def explicit(exp: Experiment, run: Run, key: str) -> bool:
    """Did the design set this control itself (the run's parameters or controls), not a default?"""
    return key in (run.parameters or {}) or key in ((exp.raw or {}).get("controls") or {})


def dataset_type_of(spec, run: Run, is_explicit: bool) -> str:
    """The base-model rule: non-instruct models train (and are evaluated) as text_completion unless the
    design sets dataset_type itself."""
    if spec is not None and not spec.instruct and not is_explicit:
        return TEXT_COMPLETION
    return run.controls.dataset_type


def epoch_choice(run: Run, which) -> tuple[int, bool]:
    """(epoch number, best?) of a run's checkpoint named `last`, `best` or a number.
    `best` is known only once the run has trained: the number is its last epoch until the job picks."""
    last = run.controls.epochs - 1
    if which == "best":
        return last, True
    return (last if which == "last" else int(which)), False


def _resolve(exp: Experiment, run: Run, settings) -> ResolvedRun:
    name = root_model_name(exp, run)
    model, spec, err = model_lookup(exp, name)
    is_explicit = explicit(exp, run, "dataset_type")
    base = base_epoch = base_checkpoint = pick_best_from = None
    if run.base_run:
        base = exp.run(run.base_run)
        base_epoch, best = epoch_choice(base, run.base_epoch)
        base_out = settings.output_dir(exp.name, base.name)
        base_checkpoint = layout.epoch_dir(base_out, base_epoch)
        pick_best_from = base_out if best else None
    return ResolvedRun(run=run, kind=run.kind, model_name=name, model=model, spec=spec, spec_error=err,
                       dataset_type=dataset_type_of(spec, run, is_explicit), dataset_type_explicit=is_explicit,
                       data_file=exp.dataset_file(run), output_dir=settings.output_dir(exp.name, run.name),
                       base_run=base, base_epoch=base_epoch, base_checkpoint=base_checkpoint,
                       pick_best_from=pick_best_from)


_CACHE: list = []  # [(exp, settings, {run name: ResolvedRun})], the few most recent pairs


def resolve_run(exp: Experiment, run: Run, settings) -> ResolvedRun:
    """The resolved facts of one run, computed once per (experiment, settings) pair."""
    runs = next((found for e, s, found in _CACHE if e is exp and s is settings), None)
    if runs is None:
        runs = {}
        _CACHE.insert(0, (exp, settings, runs))
        del _CACHE[4:]
    if run.name not in runs or runs[run.name].run is not run:
        runs[run.name] = _resolve(exp, run, settings)
    return runs[run.name]


__all__ = ["ResolvedRun", "resolve_run", "root_model", "root_model_name", "model_lookup", "explicit",
           "dataset_type_of", "epoch_choice", "TEXT_COMPLETION", "CHAT_COMPLETION"]

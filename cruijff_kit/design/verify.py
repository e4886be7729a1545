"""Resource checks before anything runs, each logged to design-experiment.log:
model dirs hold a config and weights, datasets have the declared splits (actual counts logged),
eval task scripts define their @task, and the disk has room for the checkpoints.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit import logbook
from cruijff_kit.experiment.model import Experiment
from cruijff_kit.workers.inspect.taskscan import task_problem

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "original/*.pth")


@dataclass
class Check:
    action: str
    subject: str
    ok: bool
    result: str
    explanation: str = ""
    command: str = ""
    key: str = ""   # where in the design the checked thing is named (models.base[NAME].path, ...)
    fix: str = ""   # what to do when the check fails

    def line(self, source: Path | str) -> str:
        """The one-line error: the design file, the key path, what is wrong, and the fix."""
        return f"{source}: {self.key or self.action.lower()}: {self.action.lower()} {self.subject}: {self.result}" + (
            f"; {self.fix}" if self.fix else "")


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def check_model(path: Path) -> tuple[bool, str]:
    if not path.is_dir():
        return False, f"model directory not found: {path}"
    if not (path / "config.json").is_file():
        return False, f"no config.json in {path}"
    weights = [w for pattern in WEIGHT_PATTERNS for w in path.glob(pattern)]
    if not weights:
        return False, f"no weights (*.safetensors, *.bin, *.pth) in {path}"
    size = sum(w.stat().st_size for w in weights) / 1e9
    return True, f"config.json + {len(weights)} weight file(s), {size:.2f} GB"


def check_dataset(path: Path, declared: dict) -> tuple[bool, str, dict]:
    from cruijff_kit.errors import UserError
    from cruijff_kit.files import read_json

    if not path.exists():
        return False, f"dataset not found: {path}", {}
    try:
        data = read_json(path)
    except UserError as exc:
        return False, f"{path}: {exc.problems[0].message}", {}
    if not isinstance(data, dict):
        return False, f"{path}: expected top-level train/validation lists", {}
    counts = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    problems = []
    for split in ("train", *[s for s in declared if s != "train"]):
        if split not in counts:
            problems.append(f"missing split '{split}'")
        elif split in declared and declared[split] != counts[split]:
            problems.append(f"split '{split}' has {counts[split]} examples, design says {declared[split]}")
    train = data.get("train") if isinstance(data.get("train"), list) else []
    bad = next((i for i, r in enumerate(train) if not isinstance(r, dict) or not {"input", "output"} <= set(r)), None)
    if bad is not None:
        problems.append(f"train[{bad}] lacks input/output")
    text = ", ".join(f"{k}={v}" for k, v in counts.items())
    return (not problems), ("; ".join(problems) + f" (actual: {text})") if problems else f"splits {text}", counts


def _dataset_fix(result: str) -> str:
    if "not found" in result:
        return "create the file with the task's own preparation script, or fix data.training.path"
    if "design says" in result or "missing split" in result:
        return "make data.training.splits match the file (its actual counts are given), or regenerate the data"
    return ('write it as UTF-8 JSON: {"train": [{"input": ..., "output": ...}], "validation": [...]} '
            "(a regular file, not a pipe)")


def checkpoint_gb(exp: Experiment) -> float:
    """Disk the checkpoints will take: merged model per saved epoch, or ~1% of it for adapters."""
    total = 0.0
    for run in exp.runs:
        if not run.trains:
            continue
        try:
            size = exp.model(run.model).size_gb or 0.0
        except KeyError:
            size = 0.0
        per_epoch = size * (0.01 if run.controls.save_adapter_weights_only else 1.0)
        total += per_epoch * run.controls.epochs
    return total


def verify(exp: Experiment, scratch: Path, *, log_path: Path | None = None) -> VerifyReport:
    report = VerifyReport()
    used_models = {r.model for r in exp.runs}
    for model in exp.models:
        if model.name not in used_models:
            continue
        ok, text = check_model(model.path)
        report.checks.append(Check("VERIFY_MODEL", model.name, ok, text, "the base weights the runs start from",
                                   f"ls {model.path}", key=f"models.base[{model.name}].path",
                                   fix="put the model's HF files (config.json + weights) there, or point the path "
                                       "(or claude.local.md's models_dir) at them; a tiny CPU model: "
                                       "cruijff-kit models make-tiny DIR"))
    seen: set[Path] = set()
    for run in exp.runs:
        path = exp.dataset_file(run)
        if not run.trains or path is None or path in seen:
            continue
        seen.add(path)
        declared = exp.data_section(run).splits or {}
        ok, text, _ = check_dataset(path, declared)
        report.checks.append(Check("VERIFY_DATASET", path.name, ok, text, "splits and counts as designed",
                                   f"json load {path}", key="data.training.path", fix=_dataset_fix(text)))
    for task in exp.evaluation.tasks:
        problem = task_problem(task.script, task.function)
        report.checks.append(Check("VERIFY_EVAL_TASK", task.name, not problem,
                                   problem or f"{task.script.name} defines @task {task.function}",
                                   "the evaluation can be loaded", f"ast scan {task.script}",
                                   key=f"evaluation.tasks[{task.name}].script",
                                   fix="point script/function at a Python file that defines that @task "
                                       "(cruijff-kit task new writes one)"))
    from cruijff_kit.workers.inspect.prompts import scaffold_check  # once scaffolded: eval prompt == training's

    for p in scaffold_check(exp.dir) if exp.dir.is_dir() else []:
        report.checks.append(Check("VERIFY_PROMPTS", p.message.split(":")[0], False, p.line(),
                                   "the eval prompt tokens equal the training prompt tokens",
                                   f"cruijff-kit prompts {exp.dir}", key="controls.prompt",
                                   fix=f"re-scaffold, then compare the tokens with `cruijff-kit prompts {exp.dir}`"))
    need = checkpoint_gb(exp)
    probe = scratch
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 1e9
    report.checks.append(Check("CHECK_DISK", str(scratch), free > need * 1.2,
                               f"need ~{need:.2f} GB for checkpoints, {free:.1f} GB free",
                               "checkpoints (merged or adapter-only) x epochs x runs, with a 20% margin",
                               f"df {probe}", key="controls.save_adapter_weights_only",
                               fix="free space, move scratch_dir (claude.local.md) to a larger disk, or save "
                                   "adapter weights only"))
    if log_path is not None:
        for c in report.checks:
            logbook.log(log_path, c.action, f"{c.subject}: {'ok' if c.ok else 'FAILED'}", command=c.command,
                        result=c.result, explanation=c.explanation)
    return report

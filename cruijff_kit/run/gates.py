"""Stage gates: go/no-go checks between the stages of a staged design (verify base -> SFT -> eval -> DPO ...).

The design's `stages` (in design order) may each declare `gate: {metric: task.scorer.metric, op, value,
on_fail: stop|warn}`. A gate is evaluated once every eval job of its stage has ended: the metric is read
from the newest successful `.eval` log of each of the stage's cells that evaluate the task (their mean when
there are several), and compared with `op value`. Jobs of later stages wait until every earlier gated
stage has passed (or failed with `on_fail: warn`); a failed `stop` gate cancels them.

The gate definitions are re-read from `{exp}/experiment_summary.yaml` each time an Engine is made, so
relaxing a gate in the design and running `resubmit --failed` (or `run` again) re-evaluates it.
"""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cruijff_kit.workers.inspect.scores import cell_logs, cell_scores
from cruijff_kit.experiment.model import Gate, Stage
from cruijff_kit.files import yaml_load

DESIGN_FILE = "experiment_summary.yaml"
GATE_PREFIX = "gate "  # reason of a job cancelled by a failed gate
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
       "!=": operator.ne}
STOP, WARN = "stop", "warn"


@dataclass
class GateResult:
    stage: str
    metric: str
    op: str
    threshold: float
    on_fail: str
    passed: bool
    value: float | None = None
    cells: list = field(default_factory=list)  # job ids whose logs gave the value
    values: dict = field(default_factory=dict)  # job id -> value
    reason: str = ""  # why it failed (or how the value was formed)

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else ("warning" if self.on_fail == WARN else "failed")

    @property
    def proceeds(self) -> bool:
        return self.passed or self.on_fail == WARN

    def definition(self) -> dict:
        return {"metric": self.metric, "op": self.op, "value": self.threshold, "on_fail": self.on_fail}

    def as_dict(self) -> dict:
        return {**asdict(self), "outcome": self.outcome, "proceeds": self.proceeds}

    def cancel_reason(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{GATE_PREFIX}{self.stage} failed: {self.metric}={value} not {self.op} {self.threshold:g}"

    def numbers(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.4g}"
        return (f"{self.metric}={value} {self.op} {self.threshold:g}: {'yes' if self.passed else 'no'}; "
                f"cells: {', '.join(self.cells) or '-'}" + (f"; {self.reason}" if self.reason else ""))


def definition(gate: Gate) -> dict:
    return {"metric": gate.metric, "op": gate.op, "value": float(gate.value), "on_fail": gate.on_fail}


def read_design(exp_dir: Path) -> dict:
    path = Path(exp_dir) / DESIGN_FILE
    try:
        data = yaml_load(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_stages(exp_dir: Path, design: dict | None = None) -> list[Stage]:
    """The design's stages in design order, with their gates (tolerant: malformed entries are skipped)."""
    design = read_design(exp_dir) if design is None else design
    out = []
    for entry in design.get("stages") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        raw = entry.get("gate")
        gate = None
        if isinstance(raw, dict) and raw.get("metric") and raw.get("op") in OPS:
            try:
                gate = Gate(str(raw["metric"]), raw["op"], float(raw["value"]), raw.get("on_fail") or STOP)
            except (KeyError, TypeError, ValueError):
                gate = None
        out.append(Stage(str(entry["name"]), str(entry.get("description") or ""), gate))
    return out


def run_stages(design: dict) -> dict[str, str]:
    """{run name: stage} from the design (for jobs.json written before JobSpec carried `stage`)."""
    return {str(r.get("name")): str(r.get("stage") or "") for r in design.get("runs") or [] if isinstance(r, dict)}


def job_log_dir(exp_dir: Path, job) -> Path:
    """Where an eval job's inspect logs land: its output_dir, else `{cell}/logs` next to its script."""
    if job.output_dir:
        return Path(job.output_dir)
    return Path(exp_dir) / Path(job.script).parent / "logs"


def evaluate(exp_dir: Path, stage: Stage, eval_jobs: list) -> GateResult:
    """Evaluate a stage's gate over its eval jobs (JobSpec list); a missing metric fails with what was found."""
    gate = stage.gate
    task, scorer_metric = gate.metric.split(".", 1)
    result = GateResult(stage.name, gate.metric, gate.op, float(gate.value), gate.on_fail, passed=False)
    seen: dict[str, set] = {}
    for job in eval_jobs:
        found = cell_scores(cell_logs(job_log_dir(exp_dir, job)))
        if found.status == "success":
            seen.setdefault(job.task or "?", set()).update(found.metrics)
        if job.task != task or found.status != "success" or scorer_metric not in found.metrics:
            continue
        result.values[job.id] = found.metrics[scorer_metric]
        result.cells.append(job.id)
    if not result.values:
        if not eval_jobs:
            result.reason = f"stage {stage.name} has no eval jobs"
        else:
            what = "; ".join(f"{t}: {', '.join(sorted(m)) or 'no metrics'}" for t, m in sorted(seen.items()))
            result.reason = (f"no successful eval log of stage {stage.name} has {gate.metric} "
                             f"(found {what or 'no successful eval logs'})")
        return result
    values = list(result.values.values())
    result.value = sum(values) / len(values)
    if len(values) > 1:
        result.reason = f"mean of {len(values)} cells"
    result.passed = bool(OPS[gate.op](result.value, result.threshold))
    return result

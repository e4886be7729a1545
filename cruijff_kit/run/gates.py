"""Stage gates: go/no-go checks between the stages of a staged design (verify base -> SFT -> eval -> DPO ...).

The design's `stages` (in design order) may each declare `gate: {metric: task.scorer.metric, op, value,
on_fail: stop|warn}`. A gate is evaluated once every eval job of its stage has ended: the metric is read
from the newest successful `.eval` log of each of the stage's cells that evaluate the task (their mean when
there are several), and compared with `op value`. Jobs of later stages wait until every earlier gated
stage has passed (or failed with `on_fail: warn`); a failed `stop` gate cancels them.

The gate definitions are re-read from `{exp}/experiment_summary.yaml` each time an Engine is made, so
relaxing a gate in the design and running `resubmit --failed` (or `run` again) re-evaluates it.

The decisions are functions of the stages (a StagePlan: stages in design order and each job's stage), the
jobs and the state dict (`st["gates"]` holds one record per evaluated gate): blocking_gate, stale_gates,
decide, gate_rows. They change nothing but `st["gates"]`; the engine logs, reports and cancels.
"""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.experiment.model import Gate, Stage
from cruijff_kit.files import yaml_load
from cruijff_kit.run.state import TERMINAL, now
from cruijff_kit.workers.inspect.scores import cell_logs, cell_scores

DESIGN_FILE = layout.DESIGN
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
    for job in (cell for j in eval_jobs for cell in j.cells()):  # a grouped eval job: each of its cells
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


# -- decisions over stages, jobs and state ----------------------------------------------------------------
@dataclass
class StagePlan:
    """The design's stages (in order) and the stage of every job."""

    stages: list[Stage]
    job_stage: dict[str, str]  # job id -> stage name ("" when the design has no stages)
    jobs: list[JobSpec]

    @property
    def index(self) -> dict[str, int]:
        return {s.name: k for k, s in enumerate(self.stages)}

    def evals(self, stage: str) -> list[JobSpec]:
        """The eval jobs of a stage: what its gate is decided from."""
        return [j for j in self.jobs if j.kind == "eval" and self.job_stage[j.id] == stage]


def plan(exp_dir: Path, jobs: list[JobSpec]) -> StagePlan:
    """Stages and job stages from the design as it is now (relaxed gates take effect on the next invocation)."""
    design = read_design(exp_dir)
    fallback = run_stages(design)
    return StagePlan(read_stages(exp_dir, design), {j.id: j.stage or fallback.get(j.run, "") for j in jobs}, list(jobs))


def blocking_gate(sp: StagePlan, st: dict, job_id: str) -> str | None:
    """The first earlier gated stage whose gate has not (yet) let later stages proceed."""
    k = sp.index.get(sp.job_stage.get(job_id, ""))
    if k is None:
        return None
    records = st.get("gates") or {}
    for stage in sp.stages[:k]:
        if stage.gate and not (records.get(stage.name) or {}).get("proceeds"):
            return stage.name
    return None


def stale_gates(sp: StagePlan, st: dict) -> list[str]:
    """Drop gate results that did not pass or whose definition changed in the design: re-evaluated."""
    records = st.setdefault("gates", {})
    index = sp.index
    dropped = []
    for name in list(records):
        stage = sp.stages[index[name]] if name in index else None
        if stage is None or stage.gate is None or not records[name].get("passed") \
                or records[name].get("definition") != definition(stage.gate):
            del records[name]
            dropped.append(name)
    return dropped


def decide(sp: StagePlan, exp_dir: Path, st: dict, order: list[str]) -> list[tuple[GateResult, list[str]]]:
    """Evaluate every gate whose stage's eval jobs have all ended and record it in st["gates"].

    Returns (result, job ids of the later stages in `order`) per gate decided now; the caller cancels the
    later jobs of a result that does not proceed."""
    records = st.setdefault("gates", {})
    index = sp.index
    out = []
    for k, stage in enumerate(sp.stages):
        if stage.gate is None or stage.name in records:
            continue
        evals = sp.evals(stage.name)
        if any(st["jobs"][j.id]["state"] not in TERMINAL for j in evals):
            continue
        if any(blocking_gate(sp, st, j.id) for j in evals):
            continue  # the stage itself never ran past an earlier gate
        result = evaluate(exp_dir, stage, evals)
        records[stage.name] = {**result.as_dict(), "definition": definition(stage.gate), "evaluated": now()}
        out.append((result, [i for i in order if index.get(sp.job_stage[i], -1) > k]))
    return out


def log_entry(result: GateResult, later: list[str]) -> tuple[str, str, dict]:
    """(action, description, fields) of the run-experiment.log entry for a decided gate."""
    value = "missing" if result.value is None else f"{result.value:.6g}"
    action = {"passed": "GATE_PASSED", "failed": "GATE_FAILED", "warning": "GATE_WARNING"}[result.outcome]
    explanation = {"passed": f"stages after {result.stage} may start",
                   "failed": f"on_fail: stop: {len(later)} job(s) of later stages cancelled",
                   "warning": "on_fail: warn: later stages proceed"}[result.outcome]
    calculation = (f"mean of {len(result.values)} cells: " + ", ".join(f"{k}={v:.6g}" for k, v in result.values.items())
                   if len(result.values) > 1 else result.reason or "one cell")
    return action, f"gate of stage {result.stage}: {result.outcome}", dict(
        result=result.numbers(), explanation=explanation,
        input=f"{result.metric} from {', '.join(result.cells) or 'no cell'}", calculation=calculation,
        decision=f"{result.outcome} (on_fail {result.on_fail})",
        details=f"metric={result.metric} value={value} op={result.op} "
                f"threshold={result.threshold:g} cells={','.join(result.cells) or '-'}")


def gate_rows(sp: StagePlan, st: dict) -> list[dict]:
    """Every declared gate: its recorded result, or pending (for `status` and the Status block)."""
    records = st.get("gates") or {}
    rows = []
    for stage in sp.stages:
        if stage.gate is None:
            continue
        rec = records.get(stage.name)
        if rec:
            value = "missing" if rec.get("value") is None else f"{rec['value']:.4g}"
            text = (f"{rec['metric']} = {value} (needs {rec['op']} {rec['threshold']:g}, on_fail {rec['on_fail']}); "
                    f"cells: {', '.join(rec.get('cells') or []) or '-'}" + (f"; {rec['reason']}" if rec.get("reason") else ""))
            rows.append({"stage": stage.name, "outcome": rec["outcome"], "text": text, "record": rec})
        else:
            evals = sp.evals(stage.name)
            left = sum(1 for j in evals if (st["jobs"].get(j.id) or {}).get("state") not in TERMINAL)
            g = stage.gate
            rows.append({"stage": stage.name, "outcome": "pending", "record": None,
                         "text": f"{g.metric} {g.op} {g.value:g} (on_fail {g.on_fail}); "
                                 f"waits for {left} of {len(evals)} eval job(s)"})
    return rows

"""The run engine: dependency logic over jobs.json, driving one executor, recording every transition.

One `step` = poll every submitted job (outside the lock) -> apply what changed under the state lock
(log entry, compute.json, progress line) -> cascade (a job whose dependency failed or was cancelled
becomes `cancelled`, reason "dependency <id> failed": nothing ever hangs) -> submit the jobs that are
ready (afterok: every dependency completed, or submitted to the same executor, which then holds the job
until it completes) while at most `max_submit` of ours are queued/running -> rewrite the Status block
of experiment_summary.md.

Re-invoking `run` continues where the last one stopped: submitted, running and completed jobs are
skipped, interrupted ones rerun. A training job rerun while its output dir already holds `epoch_N`
checkpoints resumes (CK_RESUME=1 -> `resume_from_checkpoint=True`); a training job that ran out of
memory is retried once with half the batch size (CK_BATCH_SIZE).

Staged designs (cruijff_kit.run.gates): a job whose run belongs to stage k is not submitted until every
earlier stage that declares a gate has it evaluated as passed (or failed with `on_fail: warn`). A gate is
evaluated in `step` once all eval jobs of its stage have ended (GATE_PASSED / GATE_FAILED / GATE_WARNING in
run-experiment.log, the result in state.json under "gates"); a failed `stop` gate cancels every unfinished
job of the later stages ("gate <stage> failed: ..."). Gates are re-read from experiment_summary.yaml by each
invocation: results that did not pass (or whose definition changed) are dropped and evaluated again, and
gate-cancelled jobs are requeued by `run` and `resubmit --failed`.
"""
from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from cruijff_kit import logbook
from cruijff_kit.errors import ProblemList, UserError, closest
from cruijff_kit.files import read_json, replace_block
from cruijff_kit.fmt import fmt_seconds, fmt_time
from cruijff_kit.experiment.jobs import JOBS_FILE, JobSpec, read_jobs
from cruijff_kit.render import STATUS_BLOCK, render
from cruijff_kit.run import gates
from cruijff_kit.compute.records import write_compute
from cruijff_kit.run.executors.base import (
    OOM,
    Executor,
    JobStatus,
    SubmitError,
    get_executor,
    log_tail,
    looks_oom,
    resolve_log,
)
from cruijff_kit.run.state import (
    BY_USER,
    CANCELLED,
    COMPLETED,
    DEPENDENCY_PREFIX,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    STATES,
    TERMINAL,
    StateStore,
    ensure_jobs,
    is_submitted,
    now,
    reset_job,
    runner_alive,
    runner_record,
    seconds_between,
)

RUN_LOG = logbook.LOG_NAMES["run"]
SUMMARY_FILE = "experiment_summary.md"
STATUS_START, STATUS_END = STATUS_BLOCK
STAGES = ("train", "eval", "all")
DEFAULT_POLL = {"local": 0.25, "slurm": 10.0}
LOST_AFTER_POLLS = 5  # a SLURM job no tool knows any more, this many polls in a row: failed ("lost")
EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def experiment_dir(path: str | Path) -> Path:
    """An experiment dir, or a file inside one (experiment_summary.yaml, jobs.json)."""
    p = Path(path).expanduser().resolve()
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"experiment directory not found: {path}", where=str(path),
                        hint="give the directory `cruijff-kit scaffold` wrote (it holds jobs.json)")
    return p


def stage_of(job: JobSpec) -> str:
    return "eval" if job.kind == "eval" else "train"


class Engine:
    def __init__(self, exp_dir: str | Path, *, command: str = "run", out=print):
        self.exp_dir = experiment_dir(exp_dir)
        self.command = command
        self.out = out
        self.jobs = read_jobs(self.exp_dir)
        self.by_id = {j.id: j for j in self.jobs}
        self.experiment = (read_json(self.exp_dir / JOBS_FILE, {}) or {}).get("experiment") or self.exp_dir.name
        self._check_graph()
        self.order = self._topological()
        self.children: dict[str, list[str]] = {j.id: [] for j in self.jobs}
        for job in self.jobs:
            for dep in job.after:
                self.children[dep].append(job.id)
        self.store = StateStore(self.exp_dir)
        self.log_path = self.exp_dir / RUN_LOG
        self.executors: dict[str, Executor] = {}
        self.max_parallel = 1
        self.continuation_id = ""
        self.selected: list[str] = [j.id for j in self.jobs]
        self._settings = None
        self._missing: Counter = Counter()
        self._critical_depth = 0
        self._stop_pending = False
        design = gates.read_design(self.exp_dir)  # re-read on every invocation: relaxed gates take effect
        self.stages = gates.read_stages(self.exp_dir, design)
        self.stage_index = {s.name: k for k, s in enumerate(self.stages)}
        fallback = gates.run_stages(design)
        self.job_stage = {j.id: j.stage or fallback.get(j.run, "") for j in self.jobs}
        self._estimates: tuple[dict, str] | None = None

    # -- jobs.json ---------------------------------------------------------------------------------------
    def _check_graph(self) -> None:
        problems = ProblemList(str(self.exp_dir / JOBS_FILE))
        seen = set()
        for i, job in enumerate(self.jobs):
            if job.id in seen:
                problems.error(f"jobs[{i}].id", f"duplicate job id {job.id!r}", "re-run `cruijff-kit scaffold`")
            seen.add(job.id)
            for k, dep in enumerate(job.after):
                if dep not in self.by_id:
                    problems.error(f"jobs[{i}].after[{k}]", f"unknown job {dep!r}",
                                   closest(dep, self.by_id) or "re-run `cruijff-kit scaffold`")
            if not (self.exp_dir / job.script).is_file():
                problems.error(f"jobs[{i}].script", f"script not found: {self.exp_dir / job.script}",
                               f"re-run `cruijff-kit scaffold {self.exp_dir}`")
        problems.raise_if_errors()

    def _topological(self) -> list[str]:
        order, done, visiting = [], set(), set()

        def visit(job_id: str, path: list[str]) -> None:
            if job_id in done:
                return
            if job_id in visiting:
                raise UserError(f"dependency cycle: {' -> '.join(path + [job_id])}", where=str(self.exp_dir / JOBS_FILE),
                                hint="re-run `cruijff-kit scaffold`")
            visiting.add(job_id)
            for dep in self.by_id[job_id].after:
                visit(dep, path + [job_id])
            visiting.discard(job_id)
            done.add(job_id)
            order.append(job_id)

        for job in self.jobs:
            visit(job.id, [])
        return order

    def select(self, only: list[str] | None = None, stage: str = "all") -> list[str]:
        """Job ids of the runs in `only` (all when empty) and the stage (train: everything but eval)."""
        runs = {j.run for j in self.jobs}
        if only:
            problems = ProblemList("--only")
            for name in only:
                if name not in runs:
                    hint = closest(name, runs)
                    problems.error("", f"no run named {name!r} in this experiment",
                                   hint or f"runs: {', '.join(sorted(runs))}")
            problems.raise_if_errors()
        if stage not in STAGES:
            raise UserError(f"unknown stage {stage!r}", where="--stage", hint="use train, eval or all")
        return [i for i in self.order if (not only or self.by_id[i].run in only)
                and (stage == "all" or stage_of(self.by_id[i]) == stage)]

    def descendants(self, job_id: str) -> list[str]:
        out, stack = [], list(self.children[job_id])
        while stack:
            child = stack.pop()
            if child not in out:
                out.append(child)
                stack.extend(self.children[child])
        return [i for i in self.order if i in out]

    def ancestors(self, job_ids) -> set[str]:
        out, stack = set(), [d for i in job_ids for d in self.by_id[i].after]
        while stack:
            dep = stack.pop()
            if dep not in out:
                out.add(dep)
                stack.extend(self.by_id[dep].after)
        return out

    # -- helpers -----------------------------------------------------------------------------------------
    @property
    def settings(self):
        if self._settings is None:
            from cruijff_kit.settings import load_settings

            self._settings = load_settings()
        return self._settings

    def executor(self, name: str, *, require: bool = True) -> Executor:
        if name not in self.executors:
            seq = self.store.read()["local_seq"] if name == "local" else 0
            self.executors[name] = get_executor(name, self.exp_dir, max_parallel=self.max_parallel,
                                                local_seq=seq, require=require)
        return self.executors[name]

    def output_dir(self, job: JobSpec) -> Path | None:
        if job.kind != "train":
            return None
        if job.output_dir:
            return Path(job.output_dir)
        return self.settings.output_dir(self.experiment, job.run)

    def checkpoints(self, job: JobSpec) -> list[int]:
        """Epochs of saved checkpoints in a training job's output dir (epoch_N with files in it)."""
        out = self.output_dir(job)
        if out is None or not out.is_dir():
            return []
        epochs = []
        for entry in out.iterdir():
            m = EPOCH_DIR.match(entry.name)
            if m and entry.is_dir() and any(entry.iterdir()):
                epochs.append(int(m.group(1)))
        return sorted(epochs)

    def batch_size(self, job: JobSpec) -> int | None:
        if isinstance(job.meta.get("batch_size"), int):
            return job.meta["batch_size"]
        config = self.exp_dir / (job.meta.get("config") or str(Path(job.script).parent / "finetune.yaml"))
        try:
            from cruijff_kit.files import yaml_load

            value = (yaml_load(config.read_text()) or {}).get("batch_size")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) else None

    def rerun_env(self, job: JobSpec, js: dict) -> dict:
        """Overrides for a rerun: keep a halved batch size; resume a training job from its last epoch."""
        env = {k: v for k, v in (js.get("env") or {}).items() if k == "CK_BATCH_SIZE"}
        if job.kind == "train" and self.checkpoints(job):
            env["CK_RESUME"] = "1"
        return env

    def _log(self, action: str, description: str, **kw) -> None:
        logbook.log(self.log_path, action, description, **kw)

    def _done_count(self, st: dict) -> tuple[int, int]:
        sel = self.selected
        return sum(1 for i in sel if st["jobs"][i]["state"] in TERMINAL), len(sel)

    def _progress(self, st: dict, job: JobSpec, js: dict) -> None:
        k, n = self._done_count(st)
        where = f"[{k}/{n}]" if job.id in self.selected else "[-]"
        line = f"{where} {job.id} {js['state']}"
        if js["state"] in (COMPLETED, FAILED) and js.get("wall_s") is not None:
            line += f" in {js['wall_s']:.1f}s"
        if js.get("reason"):
            line += f" ({js['reason']})"
        if js["state"] == FAILED and js.get("log"):
            line += f"; log: {js['log']}"
        self.out(line)

    # -- transitions -------------------------------------------------------------------------------------
    def _set_state(self, st: dict, job: JobSpec, js: dict, new: str, *, reason: str = "", quiet: bool = False) -> None:
        old = js["state"]
        js["state"] = new
        if reason or new in TERMINAL:
            js["reason"] = reason
        self._log("STATE_CHANGE", f"{job.id}: {old} -> {new}", result=f"{old} -> {new}",
                  explanation=reason or f"{js.get('executor') or 'engine'} reported {new}",
                  job_id=js.get("native_id") or "-", state=new)
        if new == FAILED:
            tail = js.get("tail") or []
            self._log("JOB_FAILED", f"{job.id} failed: {reason or 'failed'}",
                      result=f"exit code {js.get('exit_code')}", explanation=f"log: {js.get('log') or '-'}",
                      job_id=js.get("native_id") or "-", details=" / ".join(tail[-3:]) or "-")
        if new in TERMINAL and not quiet:
            self._progress(st, job, js)

    def _apply(self, st: dict, job: JobSpec, js: dict, status: JobStatus) -> bool:
        if status.pid:
            js["pid"] = status.pid
        new = status.state
        if new == PENDING:
            return False
        if new == RUNNING:
            if js["state"] == RUNNING:
                return False
            js["started"] = status.started or now()
            self._set_state(st, job, js, RUNNING)
            return True
        if js["state"] == PENDING and (new != CANCELLED or status.started):
            # finished between two polls: record that it ran
            js["started"] = status.started or js.get("started") or now()
            self._set_state(st, job, js, RUNNING)
        js["started"] = js.get("started") or status.started
        js["ended"] = status.ended or now()
        js["exit_code"] = status.exit_code
        js["wall_s"] = status.elapsed_s if status.elapsed_s is not None else seconds_between(js["started"], js["ended"])
        js["peak_rss_mb"] = status.peak_rss_mb if status.peak_rss_mb is not None else js.get("peak_rss_mb")
        reason = status.reason
        if new == FAILED:
            js["tail"] = log_tail(js["log"]) if js.get("log") else []
            if reason == OOM or looks_oom(js["tail"]):
                reason = OOM
        if new == CANCELLED:
            reason = self._dependency_reason(st, job) or reason
        self._set_state(st, job, js, new, reason=reason)
        self._write_compute(job, js)
        if new == FAILED and reason == OOM:
            self._retry_oom(st, job, js)
        return True

    def _write_compute(self, job: JobSpec, js: dict) -> None:
        try:
            write_compute(self.exp_dir, job, js, self.output_dir(job) if job.kind == "train" else None)
        except OSError as exc:
            self.out(f"warning: could not write compute.json of {job.id}: {exc}")

    def _dependency_reason(self, st: dict, job: JobSpec) -> str:
        for dep in job.after:
            ds = st["jobs"][dep]
            if ds["state"] in (FAILED, CANCELLED) and not ds["reason"].startswith(INTERRUPTED):
                if ds["reason"].startswith(DEPENDENCY_PREFIX):
                    return ds["reason"]
                return f"{DEPENDENCY_PREFIX}{dep} {ds['state']}"
        return ""

    def _cancel_native(self, js: dict) -> None:
        if not is_submitted(js):
            return
        name = js.get("executor")
        if name == "local":
            if "local" in self.executors:
                self.executors["local"].cancel([js["native_id"]])
            return
        try:
            self.executor(name).cancel([js["native_id"]])
        except (UserError, ValueError):
            pass

    def _cascade(self, st: dict) -> bool:
        changed = False
        for job_id in self.order:
            js = st["jobs"][job_id]
            if js["state"] in TERMINAL:
                continue
            reason = self._dependency_reason(st, self.by_id[job_id])
            if reason:
                self._cancel_native(js)
                js["ended"] = now()
                self._set_state(st, self.by_id[job_id], js, CANCELLED, reason=reason)
                changed = True
        return changed

    def reset(self, st: dict, ids: list[str], why: str) -> list[str]:
        """Back to pending (not submitted) for a rerun; queued/running natives are cancelled first."""
        done = []
        for job_id in ids:
            job, js = self.by_id[job_id], st["jobs"][job_id]
            if js["state"] == COMPLETED:
                continue
            self._cancel_native(js)
            env = self.rerun_env(job, js)
            old = js["state"]
            reset_job(js)
            js["env"] = env
            self._log("STATE_CHANGE", f"{job_id}: {old} -> {PENDING}", result=f"{old} -> {PENDING}", explanation=why,
                      job_id="-", state=PENDING, details=" ".join(f"{k}={v}" for k, v in env.items()) or "-")
            done.append(job_id)
        st["all_complete_logged"] = False
        return done

    def _retry_oom(self, st: dict, job: JobSpec, js: dict) -> None:
        if job.kind != "train" or js.get("oom_retried"):
            return
        current = int((js.get("env") or {}).get("CK_BATCH_SIZE") or self.batch_size(job) or 0)
        if current < 2:
            self.out(f"{job.id} ran out of memory at batch size {current or '?'}: not retried")
            return
        half = current // 2
        self.reset(st, [job.id] + [d for d in self.descendants(job.id) if st["jobs"][d]["state"] != COMPLETED],
                   f"out of memory: retrying with batch_size {half}")
        js["env"]["CK_BATCH_SIZE"] = str(half)
        js["oom_retried"] = True
        self._log("RETRY_OOM", f"{job.id}: out of memory at batch_size {current}; retrying once with {half}",
                  command=f"CK_BATCH_SIZE={half}" + (" CK_RESUME=1" if js["env"].get("CK_RESUME") else ""),
                  result="requeued", explanation="OOM (SLURM OUT_OF_MEMORY or CUDA out of memory in the log)",
                  job_id="-")
        self.out(f"{job.id} ran out of memory: retrying once with batch_size {half}")

    # -- stage gates -------------------------------------------------------------------------------------
    def stage_evals(self, stage: str) -> list[JobSpec]:
        return [j for j in self.jobs if j.kind == "eval" and self.job_stage[j.id] == stage]

    def blocking_gate(self, st: dict, job_id: str) -> str | None:
        """The first earlier gated stage whose gate has not (yet) let later stages proceed."""
        k = self.stage_index.get(self.job_stage.get(job_id, ""))
        if k is None:
            return None
        records = st.get("gates") or {}
        for stage in self.stages[:k]:
            if stage.gate and not (records.get(stage.name) or {}).get("proceeds"):
                return stage.name
        return None

    def stale_gates(self, st: dict) -> list[str]:
        """Drop gate results that did not pass or whose definition changed in the design: re-evaluated."""
        records = st.setdefault("gates", {})
        dropped = []
        for name in list(records):
            stage = self.stages[self.stage_index[name]] if name in self.stage_index else None
            if stage is None or stage.gate is None or not records[name].get("passed") \
                    or records[name].get("definition") != gates.definition(stage.gate):
                del records[name]
                dropped.append(name)
        return dropped

    def _gates(self, st: dict) -> bool:
        """Evaluate every gate whose stage's eval jobs have all ended; a failed `stop` gate cancels later stages."""
        records = st.setdefault("gates", {})
        changed = False
        for k, stage in enumerate(self.stages):
            if stage.gate is None or stage.name in records:
                continue
            evals = self.stage_evals(stage.name)
            if any(st["jobs"][j.id]["state"] not in TERMINAL for j in evals):
                continue
            if any(self.blocking_gate(st, j.id) for j in evals):
                continue  # the stage itself never ran past an earlier gate
            result = gates.evaluate(self.exp_dir, stage, evals)
            value = "missing" if result.value is None else f"{result.value:.6g}"
            records[stage.name] = {**result.as_dict(), "definition": gates.definition(stage.gate),
                                   "evaluated": now()}
            action = {"passed": "GATE_PASSED", "failed": "GATE_FAILED", "warning": "GATE_WARNING"}[result.outcome]
            later = [i for i in self.order if self.stage_index.get(self.job_stage[i], -1) > k]
            explanation = {"passed": f"stages after {stage.name} may start",
                           "failed": f"on_fail: stop: {len(later)} job(s) of later stages cancelled",
                           "warning": "on_fail: warn: later stages proceed"}[result.outcome]
            self._log(action, f"gate of stage {stage.name}: {result.outcome}", result=result.numbers(),
                      explanation=explanation,
                      input=f"{result.metric} from {', '.join(result.cells) or 'no cell'}",
                      calculation=(f"mean of {len(result.values)} cells: "
                                   + ", ".join(f"{k}={v:.6g}" for k, v in result.values.items())
                                   if len(result.values) > 1 else result.reason or "one cell"),
                      decision=f"{result.outcome} (on_fail {result.on_fail})",
                      details=f"metric={result.metric} value={value} op={result.op} "
                              f"threshold={result.threshold:g} cells={','.join(result.cells) or '-'}")
            self.out(f"gate {stage.name}: {result.outcome} ({result.numbers()})")
            if not result.proceeds:
                for job_id in later:
                    js = st["jobs"][job_id]
                    if js["state"] in TERMINAL:
                        continue
                    self._cancel_native(js)
                    js["ended"] = now()
                    self._set_state(st, self.by_id[job_id], js, CANCELLED, reason=result.cancel_reason())
            changed = True
        return changed

    def gate_rows(self, st: dict) -> list[dict]:
        """Every declared gate: its recorded result, or pending."""
        records = st.get("gates") or {}
        rows = []
        for stage in self.stages:
            if stage.gate is None:
                continue
            rec = records.get(stage.name)
            if rec:
                value = "missing" if rec.get("value") is None else f"{rec['value']:.4g}"
                text = (f"{rec['metric']} = {value} (needs {rec['op']} {rec['threshold']:g}, on_fail {rec['on_fail']}); "
                        f"cells: {', '.join(rec.get('cells') or []) or '-'}" + (f"; {rec['reason']}" if rec.get("reason") else ""))
                rows.append({"stage": stage.name, "outcome": rec["outcome"], "text": text, "record": rec})
            else:
                evals = self.stage_evals(stage.name)
                left = sum(1 for j in evals if (st["jobs"].get(j.id) or {}).get("state") not in TERMINAL)
                g = stage.gate
                rows.append({"stage": stage.name, "outcome": "pending", "record": None,
                             "text": f"{g.metric} {g.op} {g.value:g} (on_fail {g.on_fail}); "
                                     f"waits for {left} of {len(evals)} eval job(s)"})
        return rows

    def cost(self, st: dict) -> dict:
        """Estimated and actual GPU-hours (and cost) per stage and in total (cruijff_kit.compute.costs)."""
        from cruijff_kit.compute import costs

        try:
            settings = self.settings
        except Exception as exc:  # noqa: BLE001 - settings problems are reported by the verbs that need them
            settings, note = None, f"no estimate: {exc}"
        if self._estimates is None:
            self._estimates = costs.run_estimates(self.exp_dir, settings) if settings else ({}, note)
        estimates, note = self._estimates
        return costs.stage_costs(self.exp_dir, self.jobs, self.job_stage, st["jobs"],
                                 stages=[s.name for s in self.stages], estimates=estimates,
                                 hourly=getattr(settings, "gpu_hourly_cost", 0.0), note=note)

    # -- polling -----------------------------------------------------------------------------------------
    def _poll(self, snapshot: dict) -> dict[str, dict[str, JobStatus]]:
        by_exec: dict[str, list[str]] = {}
        for job_id, js in snapshot["jobs"].items():
            if job_id in self.by_id and is_submitted(js):
                by_exec.setdefault(js["executor"], []).append(job_id)
        out = {}
        for name, ids in by_exec.items():
            if name == "local" and "local" not in self.executors:
                continue  # another (or a dead) runner's children: not ours to poll
            try:
                ex = self.executor(name)
            except (UserError, ValueError):
                continue
            natives = []
            for job_id in ids:
                ex.track(snapshot["jobs"][job_id]["native_id"], self.by_id[job_id])
                natives.append(snapshot["jobs"][job_id]["native_id"])
            out[name] = ex.poll(natives)
        return out

    def _apply_polls(self, st: dict, polls: dict) -> bool:
        changed = False
        for job_id in self.order:
            js = st["jobs"][job_id]
            name, native = js.get("executor"), js.get("native_id")
            if not native or name not in polls:
                continue
            if js["state"] in TERMINAL:
                # cancelled from another terminal while our local queue still holds it
                if name == "local" and native in polls[name] and polls[name][native].state not in TERMINAL:
                    self.executors["local"].cancel([native])
                continue
            status = polls[name].get(native)
            if status is None:
                self._missing[native] += 1
                if name != "local" and self._missing[native] >= LOST_AFTER_POLLS:
                    js["ended"] = now()
                    self._set_state(st, self.by_id[job_id], js, FAILED,
                                    reason=f"lost: {name} no longer knows job {native} and it left no exit code")
                    changed = True
                continue
            self._missing.pop(native, None)
            changed |= self._apply(st, self.by_id[job_id], js, status)
        return changed

    # -- submission --------------------------------------------------------------------------------------
    def _after(self, st: dict, job: JobSpec, executor_name: str, planned: dict | None = None) -> list[str] | None:
        """Native ids to wait on, or None when a dependency is not yet submitted to this executor.

        planned: {job id: placeholder id} of jobs a dry run would submit before this one."""
        after = []
        for dep in job.after:
            ds = st["jobs"][dep]
            if ds["state"] == COMPLETED:
                continue
            if is_submitted(ds) and ds["executor"] == executor_name:
                after.append(ds["native_id"])
            elif planned and dep in planned:
                after.append(planned[dep])
            else:
                return None
        return after

    def _submit_ready(self, st: dict, executor_name: str, max_submit: int | None) -> bool:
        ex = self.executor(executor_name)
        active = sum(1 for js in st["jobs"].values() if is_submitted(js) and js["executor"] == executor_name)
        changed = False
        for job_id in self.selected:
            js = st["jobs"][job_id]
            if js["state"] != PENDING or js["native_id"]:
                continue
            job = self.by_id[job_id]
            if self.blocking_gate(st, job_id):
                continue
            after = self._after(st, job, executor_name)
            if after is None:
                continue
            if max_submit and active >= max_submit:
                break
            self._submit(st, job, js, ex, after)
            if is_submitted(js):
                active += 1
            changed = True
        return changed

    def _submit(self, st: dict, job: JobSpec, js: dict, ex: Executor, after: list[str]) -> None:
        (self.exp_dir / job.exit_code_file).unlink(missing_ok=True)
        env = dict(js.get("env") or {})
        command = ex.describe(job, after, env)
        js["attempts"] = int(js.get("attempts") or 0) + 1
        try:
            native = ex.submit(job, after, env)
        except (SubmitError, OSError) as exc:
            js.update(executor=ex.name, submitted=now(), ended=now(), exit_code=None)
            self._set_state(st, job, js, FAILED, reason=str(exc))
            return
        js.update(native_id=native, executor=ex.name, submitted=now(), state=PENDING, started=None, ended=None,
                  exit_code=None, reason="", tail=[], log=resolve_log(job, native, self.exp_dir), pid=None,
                  wall_s=None, peak_rss_mb=None)
        if ex.name == "local":
            st["local_seq"] = ex.seq
        action = "SUBMIT_EVAL" if job.kind == "eval" else "SUBMIT_JOB"
        extra = f" (attempt {js['attempts']})" if js["attempts"] > 1 else ""
        self._log(action, f"Submitted {job.id}{extra}", command=command, result=f"{ex.name} job {native}",
                  explanation=f"after {', '.join(job.after)}" if job.after else "no dependencies",
                  job_id=native, details=" ".join(f"{k}={v}" for k, v in env.items()) or "-")
        self.out(f"submitted {job.id} as {native}" + (f" ({' '.join(f'{k}={v}' for k, v in env.items())})" if env else ""))
        self.store.write(st)  # a submitted id is never lost, even if we crash right after

    # -- one step / the loop -----------------------------------------------------------------------------
    @contextmanager
    def _critical(self):
        """Signals arriving inside are held until the state is written."""
        self._critical_depth += 1
        try:
            yield
        finally:
            self._critical_depth -= 1
            if self._critical_depth == 0 and self._stop_pending:
                self._stop_pending = False
                raise KeyboardInterrupt

    def step(self, executor_name: str | None, max_submit: int | None = None) -> dict:
        """Poll, apply, cascade, submit (when executor_name is given), rewrite the Status block."""
        polls = self._poll(self.store.read())
        with self._critical(), self.store.locked() as st:
            ensure_jobs(st, self.by_id)
            changed = self._apply_polls(st, polls)
            changed |= self._cascade(st)
            changed |= self._gates(st)
            if executor_name:
                changed |= self._submit_ready(st, executor_name, max_submit)
                changed |= self._cascade(st)
            if changed or not (self.exp_dir / SUMMARY_FILE).exists():
                self.write_summary(st)
            return st

    def _can_progress(self, st: dict) -> bool:
        """Some selected job is submitted, or could still be submitted by this invocation."""
        relevant = set(self.selected) | self.ancestors(self.selected)
        if any(is_submitted(st["jobs"][i]) for i in relevant):
            return True
        memo: dict[str, bool] = {}

        def possible(job_id: str) -> bool:
            if job_id not in memo:
                js = st["jobs"][job_id]
                if js["state"] == COMPLETED or is_submitted(js):
                    memo[job_id] = True
                elif js["state"] == PENDING and job_id in self.selected:
                    memo[job_id] = False
                    gate = self.blocking_gate(st, job_id)
                    memo[job_id] = all(possible(d) for d in self.by_id[job_id].after) and (
                        not gate or all(st["jobs"][e.id]["state"] in TERMINAL or possible(e.id)
                                        for e in self.stage_evals(gate)))
                else:
                    memo[job_id] = False
            return memo[job_id]

        return any(st["jobs"][i]["state"] == PENDING and not st["jobs"][i]["native_id"] and possible(i)
                   for i in self.selected)

    def prepare(self, executor_name: str, *, own_runner: bool) -> dict:
        """Before a loop: refuse a second live runner, clean up after a dead one, requeue interrupted jobs."""
        with self._critical(), self.store.locked() as st:
            ensure_jobs(st, self.by_id)
            runner = st.get("runner")
            if runner and runner.get("pid") != os.getpid() and runner_alive(runner):
                raise UserError(
                    f"another `cruijff-kit {runner.get('command', 'run')}` (pid {runner['pid']}, {runner.get('executor')}, "
                    f"since {fmt_time(runner.get('started'))}) is driving this experiment", where=str(self.exp_dir),
                    hint=f"watch it with `cruijff-kit status {self.exp_dir}`; stop it with Ctrl-C in its terminal "
                         f"or `cruijff-kit cancel {self.exp_dir}`")
            self.reconcile_dead_runner(st)
            dropped = self.stale_gates(st)
            if dropped:
                self.out(f"re-evaluating gate(s) from {gates.DESIGN_FILE}: {', '.join(dropped)}")
            requeue = [i for i in self.selected if st["jobs"][i]["state"] in (CANCELLED, FAILED)
                       and st["jobs"][i]["reason"].startswith(INTERRUPTED)]
            if requeue:
                self.reset(st, requeue, "interrupted earlier: rerun")
                self.out(f"rerunning {len(requeue)} interrupted job(s): {', '.join(requeue)}")
            gated = [i for i in self.selected if st["jobs"][i]["state"] == CANCELLED
                     and st["jobs"][i]["reason"].startswith(gates.GATE_PREFIX)]
            if gated:  # the gate is evaluated again (from the design as it is now) before they may start
                self.reset(st, gated, "stopped by a gate earlier: the gate is evaluated again")
                self.out(f"re-checking {len(gated)} job(s) stopped by a gate: {', '.join(gated)}")
            if own_runner:
                st["runner"] = runner_record(executor_name, self.command)
            return st

    def reconcile_dead_runner(self, st: dict) -> None:
        """Local jobs of a runner that died without cleaning up: kill leftovers, mark them interrupted."""
        runner = st.get("runner")
        if runner and runner_alive(runner) and runner.get("pid") != os.getpid():
            return
        from cruijff_kit.run.executors.local import kill_leftovers

        gone = f"runner pid {runner['pid']} stopped" if runner else "no runner"
        for job_id in self.order:
            js = st["jobs"][job_id]
            if js.get("executor") != "local" or not is_submitted(js):
                continue
            if js["state"] == RUNNING or js.get("pid"):
                kill_leftovers(js.get("pid"), js["native_id"])
                js["ended"] = now()
                self._set_state(st, self.by_id[job_id], js, CANCELLED, reason=f"{INTERRUPTED} ({gone})", quiet=True)
            else:
                reset_job(js, keep_env=True)
        if runner and runner.get("pid") != os.getpid():
            st["runner"] = None

    def run(self, executor_name: str, *, selected: list[str] | None = None, max_parallel: int = 1,
            max_submit: int | None = None, wait: bool = False, poll_interval: float | None = None) -> int:
        """Drive the selected jobs. Local (or --wait): until all are done; SLURM: one submission pass."""
        self.selected = list(selected if selected is not None else self.order)
        self.max_parallel = max(1, int(max_parallel or 1))
        blocking = executor_name == "local" or wait
        interval = poll_interval if poll_interval is not None else DEFAULT_POLL.get(executor_name, 1.0)
        t0 = time.monotonic()
        self.executor(executor_name)  # fail early: sbatch missing
        self.prepare(executor_name, own_runner=blocking)  # refuses a second live runner
        old_handlers = self._install_signals() if blocking else {}
        interrupted = False
        try:
            self._log("RUN_START", f"{self.command} {len(self.selected)} job(s) with the {executor_name} executor",
                      command=f"cruijff-kit {self.command} {self.exp_dir} --executor {executor_name}",
                      result=f"pid {os.getpid()}", explanation=("waits until done" if blocking else "submits and returns"),
                      details=f"max_parallel={self.max_parallel} max_submit={max_submit or '-'}")
            while True:
                st = self.step(executor_name, max_submit)
                if not blocking or not self._can_progress(st):
                    break
                time.sleep(interval)
            if not blocking and executor_name == "slurm" and not max_submit and self.selected == self.order:
                self._continue_on_cluster()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._restore_signals(old_handlers)
            st = self._finish(executor_name, interrupted=interrupted, blocking=blocking)
        return self._report(st, executor_name, blocking=blocking, interrupted=interrupted,
                            elapsed=time.monotonic() - t0, max_submit=max_submit)

    def _continue_on_cluster(self) -> None:
        """Jobs held by a gate: a SLURM continuation job decides the gate once its evals end (run/continuation.py)."""
        from cruijff_kit.run.executors import continuation

        snapshot = self.store.read()
        after = continuation.gate_waits(self, snapshot)
        if not after:
            return
        prev = (snapshot.get(continuation.KEY) or {}).get("native_id")
        live = {n for n, s in self.executor("slurm").poll([prev]).items() if s.state not in TERMINAL} if prev else set()
        with self._critical(), self.store.locked() as st:
            if continuation.already_waiting(st, after, live):
                self.continuation_id = st[continuation.KEY]["native_id"]
                return
            try:
                self.continuation_id = continuation.submit(self, st, after)
            except RuntimeError as exc:
                self.out(f"could not submit the continuation job ({exc}): run `cruijff-kit run {self.exp_dir}` "
                         f"again after the gate's eval jobs ended, or use --wait")
                return
        self.out(f"submitted continuation {self.continuation_id}: it decides the gate after job(s) "
                 f"{', '.join(after)} end and submits the next stage")

    def _finish(self, executor_name: str, *, interrupted: bool, blocking: bool) -> dict:
        local = self.executors.get("local")
        if local is not None:
            if interrupted:
                try:
                    polls = {"local": local.poll(list(local.entries))}
                except Exception:  # noqa: BLE001 - nothing may stop the cleanup below
                    polls = {}
            local.close()
        self._critical_depth += 1  # no second interrupt while we clean up
        try:
            with self.store.locked() as st:
                if interrupted and local is not None:
                    self._apply_polls(st, {"local": {k: v for k, v in polls.get("local", {}).items()
                                                     if v.state in (COMPLETED, FAILED)}})
                    for job_id in self.order:
                        js = st["jobs"][job_id]
                        if js.get("executor") != "local" or not is_submitted(js):
                            continue
                        entry = local.entries.get(js["native_id"])
                        if js["state"] == RUNNING or (entry is not None and entry.proc is not None):
                            js["ended"] = now()
                            self._set_state(st, self.by_id[job_id], js, CANCELLED, reason=INTERRUPTED, quiet=True)
                        else:
                            reset_job(js, keep_env=True)
                if interrupted:
                    self._log("INTERRUPTED", f"{self.command} interrupted", result="stopped",
                              explanation="local jobs killed and marked interrupted; run again to continue"
                              if local is not None else "SLURM jobs keep running; `status` follows them")
                runner = st.get("runner")
                if runner and runner.get("pid") == os.getpid():
                    st["runner"] = None
                if all(st["jobs"][i]["state"] == COMPLETED for i in self.order) and not st.get("all_complete_logged"):
                    st["all_complete_logged"] = True
                    self._log("ALL_COMPLETE", f"all {len(self.order)} jobs of {self.experiment} completed",
                              result=f"{len(self.order)} completed", explanation="every job in jobs.json completed")
                self.write_summary(st)
                return st
        finally:
            self._critical_depth -= 1
            self._stop_pending = False

    def _report(self, st: dict, executor_name: str, *, blocking: bool, interrupted: bool, elapsed: float,
                max_submit: int | None) -> int:
        counts = Counter(st["jobs"][i]["state"] for i in self.selected)
        text = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
        if interrupted:
            self.out(f"interrupted after {fmt_seconds(elapsed)}: {text}")
            self.out(f"run `cruijff-kit run {self.exp_dir}` again to continue (completed jobs are skipped)"
                     if executor_name == "local" else f"SLURM jobs keep running; `cruijff-kit status {self.exp_dir}`")
            return 130
        self.out(f"{'done' if blocking else 'submitted'} in {fmt_seconds(elapsed)}: {text or 'nothing selected'}")
        bad = counts[FAILED] + sum(1 for i in self.selected if st["jobs"][i]["state"] == CANCELLED
                                   and st["jobs"][i]["reason"] != BY_USER)
        if counts[FAILED] or bad:
            self.out(f"`cruijff-kit status {self.exp_dir}` shows the log tails; "
                     f"`cruijff-kit resubmit {self.exp_dir} --failed` reruns failed jobs and their dependents")
        gated = sorted({r["stage"] for r in self.gate_rows(st) if r["outcome"] == "failed"})
        if gated:
            self.out(f"gate(s) of stage {', '.join(gated)} stopped the later stages: after relaxing the gate in "
                     f"{self.exp_dir / gates.DESIGN_FILE}, `cruijff-kit resubmit {self.exp_dir} --failed` "
                     "re-evaluates it and continues")
        waiting = [i for i in self.selected if st["jobs"][i]["state"] == PENDING and not st["jobs"][i]["native_id"]]
        if waiting and blocking:
            self.out(f"{len(waiting)} job(s) wait on jobs outside --only/--stage: {', '.join(waiting[:5])}"
                     + (" ..." if len(waiting) > 5 else ""))
        elif waiting and not blocking and self.continuation_id:
            self.out(f"{len(waiting)} job(s) wait on a stage gate: continuation job {self.continuation_id} submits "
                     f"them on the cluster; follow with `cruijff-kit status {self.exp_dir}`")
        elif waiting and not blocking:
            limit = f" (--max-submit {max_submit})" if max_submit else ""
            self.out(f"{len(waiting)} job(s) not yet submitted{limit}: run again, or use --wait to drip-feed them")
        return 1 if bad else 0

    # -- signals -----------------------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        def handler(signum, frame):
            if self._critical_depth:
                self._stop_pending = True
                return
            raise KeyboardInterrupt

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread
                pass
        return old

    def _restore_signals(self, old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    # -- other verbs -------------------------------------------------------------------------------------
    def refresh(self) -> dict:
        """For `status`: when no live runner follows the experiment, poll SLURM and record what changed."""
        snapshot = self.store.read()
        if runner_alive(snapshot.get("runner")) or not any(
                is_submitted(js) and js.get("executor") not in (None, "local") for js in snapshot["jobs"].values()):
            return snapshot
        self.command = "status"
        return self.step(None)

    def cancel(self, ids: list[str]) -> list[str]:
        from cruijff_kit.run.executors.local import kill_leftovers

        with self._critical(), self.store.locked() as st:
            ensure_jobs(st, self.by_id)
            runner = st.get("runner")
            done = []
            slurm_natives: dict[str, list[str]] = {}
            for job_id in ids:
                js = st["jobs"][job_id]
                if js["state"] in TERMINAL:
                    continue
                if is_submitted(js):
                    if js["executor"] == "local":
                        if js.get("pid"):
                            kill_leftovers(js["pid"], js["native_id"], sig=signal.SIGTERM)
                    else:
                        slurm_natives.setdefault(js["executor"], []).append(js["native_id"])
                js["ended"] = now()
                self._set_state(st, self.by_id[job_id], js, CANCELLED, reason=BY_USER, quiet=True)
                done.append(job_id)
            continuation = (st.get("continuation") or {}).get("native_id")
            if continuation and continuation != os.environ.get("SLURM_JOB_ID") and not any(
                    js["state"] not in TERMINAL and js["native_id"] for js in st["jobs"].values()):
                slurm_natives.setdefault("slurm", []).append(continuation)  # nothing left for it to wait on
                st.pop("continuation")
            for name, natives in slurm_natives.items():
                self.executor(name).cancel(natives)
            self._cascade(st)
            if done:
                self._log("CANCEL", f"cancelled {len(done)} job(s)", command=f"cruijff-kit cancel {self.exp_dir}",
                          result=", ".join(done[:20]) + (" ..." if len(done) > 20 else ""),
                          explanation="requested by the user" + (f"; runner pid {runner['pid']} is told through the state file"
                                                                  if runner else ""))
            self.write_summary(st)
            return done

    def resubmit_targets(self, st: dict, *, include_cancelled: bool = False, only: list[str] | None = None) -> list[str]:
        """Failed jobs, jobs cancelled because a dependency failed (or by the user, when asked),
        and every dependent of those that has not completed."""
        chosen = []
        for job_id in self.order:
            js = st["jobs"][job_id]
            if only and self.by_id[job_id].run not in only:
                continue
            if js["state"] == FAILED or (js["state"] == CANCELLED and (
                    js["reason"].startswith(DEPENDENCY_PREFIX) or js["reason"].startswith(INTERRUPTED)
                    or js["reason"].startswith(gates.GATE_PREFIX) or include_cancelled)):
                chosen.append(job_id)
        for job_id in list(chosen):
            chosen += [d for d in self.descendants(job_id) if st["jobs"][d]["state"] in (FAILED, CANCELLED)]
        return [i for i in self.order if i in set(chosen)]

    # -- experiment_summary.md ---------------------------------------------------------------------------
    def status_block(self, st: dict) -> str:
        train_rows, eval_rows = [], []
        for job_id in self.order:
            job, js = self.by_id[job_id], st["jobs"].get(job_id) or {"state": PENDING}
            notes = []
            if js.get("reason"):
                notes.append(js["reason"])
            if (js.get("attempts") or 0) > 1:
                notes.append(f"attempt {js['attempts']}")
            env = js.get("env") or {}
            if env.get("CK_RESUME"):
                notes.append("resumed")
            if env.get("CK_BATCH_SIZE"):
                notes.append(f"batch_size {env['CK_BATCH_SIZE']}")
            row = {"run": job.run if job.kind in ("train", "eval") else f"{job.run} ({job.kind})",
                   "state": js["state"], "native": js.get("native_id") or "-",
                   "started": fmt_time(js.get("started")), "ended": fmt_time(js.get("ended")),
                   "duration": fmt_seconds(js.get("wall_s")) if js["state"] in TERMINAL else "-",
                   "note": "; ".join(notes).replace("|", "\\|") or "-",
                   "task": job.task or "-", "epoch": "base" if job.epoch is None else job.epoch}
            (eval_rows if job.kind == "eval" else train_rows).append(row)
        counts = Counter((st["jobs"].get(i) or {"state": PENDING})["state"] for i in self.order)
        return render("status_tables.md.j2", start=STATUS_START, end=STATUS_END, updated=fmt_time(now()),
                      command=self.command, counts=[f"{counts[s]} {s}" for s in STATES if counts[s]],
                      train_rows=train_rows, eval_rows=eval_rows, gates=self.gate_rows(st),
                      cost=self.cost(st))

    def write_summary(self, st: dict) -> Path:
        """Rewrite only the Status block of experiment_summary.md (append it when the markers are missing)."""
        path = self.exp_dir / SUMMARY_FILE
        block = self.status_block(st).rstrip("\n")
        text = path.read_text() if path.exists() else None
        if text is None:
            block = f"# {self.experiment}\n\n## Status\n{block}"
        elif not (STATUS_START in text and STATUS_END in text and text.index(STATUS_START) < text.index(STATUS_END)):
            block = "\n## Status\n" + block
        # locked read-modify-write: summarize may be rewriting the Results block of the same file
        replace_block(path, STATUS_START, STATUS_END, block)
        return path


def dry_run(engine: Engine, executor_name: str, selected: list[str], *, max_submit: int | None = None) -> int:
    """Print what `run` would submit now (dependencies shown by job id); write nothing."""
    ex = get_executor(executor_name, engine.exp_dir, require=False)
    st = engine.store.read()
    ensure_jobs(st, engine.by_id)
    planned: dict[str, str] = {}  # job id -> placeholder native id
    counts: Counter = Counter()
    active = sum(1 for js in st["jobs"].values() if is_submitted(js) and js["executor"] == executor_name)
    for job_id in selected:
        job, js = engine.by_id[job_id], st["jobs"][job_id]
        if js["state"] != PENDING or js["native_id"]:
            interrupted = js["state"] in (CANCELLED, FAILED) and js["reason"].startswith(INTERRUPTED)
            if not interrupted:
                counts[f"skipped ({js['state']}{', submitted' if js['native_id'] and js['state'] == PENDING else ''})"] += 1
                continue
        gate = engine.blocking_gate(st, job_id)
        if gate:
            engine.out(f"  wait    {job_id}: gate of stage {gate} not yet passed")
            counts["waiting"] += 1
            continue
        after = engine._after(st, job, executor_name, planned)
        if after is None:
            engine.out(f"  wait    {job_id}: needs {', '.join(d for d in job.after if st['jobs'][d]['state'] != COMPLETED)}")
            counts["waiting"] += 1
            continue
        if max_submit and active >= max_submit:
            engine.out(f"  later   {job_id}: --max-submit {max_submit} reached")
            counts["later (--max-submit)"] += 1
            continue
        env = engine.rerun_env(job, js) if js["state"] != PENDING else dict(js.get("env") or {})
        planned[job_id] = f"<{job_id}>"
        active += 1
        engine.out(f"  submit  {job_id}: {ex.describe(job, after, env)}")
        counts["would submit"] += 1
    summary = ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing selected"
    engine.out(f"dry run ({executor_name}): {summary}; nothing was submitted or written")
    return 0

"""The run engine: dependency logic over jobs.json, driving one executor, recording every transition.

One `step` = poll every submitted job (outside the lock) -> apply what changed under the state lock
(log entry, compute.json, progress line) -> cascade (a job whose dependency failed or was cancelled
becomes `cancelled`, reason "dependency <id> failed": nothing ever hangs) -> decide the stage gates whose
eval jobs ended -> submit the jobs that are ready (afterok: every dependency completed, or submitted to
an executor that holds dependencies) while at most `max_submit` of ours are queued/running -> rewrite
the Status block of experiment_summary.md.

Re-invoking `run` continues where the last one stopped: submitted, running and completed jobs are
skipped, interrupted ones rerun. How a job is rerun (resume from a checkpoint, a smaller batch after
running out of memory) is its trainer's rerun policy (cruijff_kit.workers.rerun_policy).

The seams around the loop: graph.py (jobs.json as a graph), gates.py (stage gates as functions of stages,
jobs and state), report.py (progress lines, closing report, Status block), dry_run.py, state.py, and
executors/ (the backends, whose declared capabilities decide blocking, polling and continuation).
A job whose run belongs to stage k is not submitted until every earlier gated stage has let it proceed;
a failed `stop` gate cancels the later stages ("gate <stage> failed: ..."), and `run` or `resubmit
--failed` re-evaluate it from the design as it is then.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from cruijff_kit import logbook
from cruijff_kit.compute.records import write_compute
from cruijff_kit.errors import UserError
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.run import gates, recovery, report
from cruijff_kit.run.executors import make_executor, needs_runner
from cruijff_kit.run.executors.base import NEVER_SATISFIED, OOM, Executor, JobStatus, SubmitError, log_tail, looks_oom, resolve_log
from cruijff_kit.run.graph import JobGraph, experiment_dir
from cruijff_kit.run.state import (
    CANCELLED,
    COMPLETED,
    DEPENDENCY_PREFIX,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    TERMINAL,
    StateStore,
    ensure_jobs,
    is_submitted,
    now,
    reset_job,
    seconds_between,
)
from cruijff_kit.workers import rerun_policy

RUN_LOG = logbook.LOG_NAMES["run"]


class Engine:
    def __init__(self, exp_dir: str | Path, *, command: str = "run", out=print, dry_run: bool = False):
        self.exp_dir = experiment_dir(exp_dir)
        self.command = command
        self.out = out
        self.graph = JobGraph.load(self.exp_dir)
        self.jobs, self.by_id, self.order = self.graph.jobs, self.graph.by_id, self.graph.order
        self.experiment = self.graph.experiment
        self.plan = gates.plan(self.exp_dir, self.jobs)  # re-read on every invocation: relaxed gates take effect
        self.job_stage = self.plan.job_stage
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
        self._estimates: tuple[dict, str] | None = None
        # a lost state.json: rebuilt from exit codes and checkpoints (a dry run only reads it that way)
        self.recovered = recovery.rebuild(self, write=not dry_run)

    # -- helpers -----------------------------------------------------------------------------------------
    @property
    def settings(self):
        if self._settings is None:
            from cruijff_kit.settings import load_settings

            self._settings = load_settings()
        return self._settings

    def executor(self, name: str, *, require: bool = True) -> Executor:
        if name not in self.executors:
            self.executors[name] = make_executor(name, self.exp_dir, max_parallel=self.max_parallel,
                                                 require=require, state=self.store.read())
        return self.executors[name]

    def output_dir(self, job: JobSpec) -> Path | None:
        if job.kind != "train":
            return None
        if job.output_dir:
            return Path(job.output_dir)
        return self.settings.output_dir(self.experiment, job.run)

    def rerun_env(self, job: JobSpec, js: dict) -> dict:
        """Overrides for a rerun, from the job's rerun policy (none: rerun as it was)."""
        policy = rerun_policy(job)
        return policy.rerun_env(job, js, self.output_dir(job), self.exp_dir) if policy else {}

    def log(self, action: str, description: str, **kw) -> None:
        logbook.log(self.log_path, action, description, **kw)

    def write_summary(self, st: dict) -> Path:
        return report.write_summary(self, st)

    # -- transitions -------------------------------------------------------------------------------------
    def set_state(self, st: dict, job: JobSpec, js: dict, new: str, *, reason: str = "", quiet: bool = False) -> None:
        old = js["state"]
        js["state"] = new
        if reason or new in TERMINAL:
            js["reason"] = reason
        self.log("STATE_CHANGE", f"{job.id}: {old} -> {new}", result=f"{old} -> {new}",
                 explanation=reason or f"{js.get('executor') or 'engine'} reported {new}",
                 job_id=js.get("native_id") or "-", state=new)
        if new == FAILED:
            tail = js.get("tail") or []
            self.log("JOB_FAILED", f"{job.id} failed: {reason or 'failed'}",
                     result=f"exit code {js.get('exit_code')}", explanation=f"log: {js.get('log') or '-'}",
                     job_id=js.get("native_id") or "-", details=" / ".join(tail[-3:]) or "-")
        if new in TERMINAL and not quiet:
            self.out(report.progress_line(self, st, job, js))

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
            self.set_state(st, job, js, RUNNING)
            return True
        if js["state"] == PENDING and (new != CANCELLED or status.started):
            # finished between two polls: record that it ran
            js["started"] = status.started or js.get("started") or now()
            self.set_state(st, job, js, RUNNING)
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
            why = self._dependency_reason(st, job)
            if why or reason == NEVER_SATISFIED:
                # a dependent that can never run: the backend may still hold it (a SLURM cluster without
                # kill_invalid_depend keeps it PENDING forever); cancel it there too (idempotent)
                self._cancel_native(js)
            reason = why or reason
        self.set_state(st, job, js, new, reason=reason)
        try:
            write_compute(self.exp_dir, job, js, self.output_dir(job) if job.kind == "train" else None)
        except OSError as exc:
            self.out(f"warning: could not write compute.json of {job.id}: {exc}")
        if new == FAILED and reason == OOM:
            self._retry_oom(st, job, js)
        return True

    def _dependency_reason(self, st: dict, job: JobSpec) -> str:
        for dep in job.after:
            ds = st["jobs"][dep]
            if ds["state"] in (FAILED, CANCELLED) and not ds["reason"].startswith(INTERRUPTED):
                if ds["reason"].startswith(DEPENDENCY_PREFIX):
                    return ds["reason"]
                return f"{DEPENDENCY_PREFIX}{dep} {ds['state']}"
        return ""

    def _cancel_native(self, js: dict) -> None:
        """Stop a submitted job; one of an executor that needs a runner only if this runner holds it."""
        if not is_submitted(js):
            return
        name = js.get("executor")
        try:
            if needs_runner(name) and name not in self.executors:
                return  # another runner's (or a dead runner's) child: reconcile_dead_runner/cancel handle it
            self.executor(name).cancel([js["native_id"]])
        except (UserError, ValueError):
            pass

    def cancel_job(self, st: dict, job_id: str, reason: str, *, quiet: bool = False) -> None:
        js = st["jobs"][job_id]
        self._cancel_native(js)
        js["ended"] = now()
        self.set_state(st, self.by_id[job_id], js, CANCELLED, reason=reason, quiet=quiet)

    def cascade(self, st: dict) -> bool:
        changed = False
        for job_id in self.order:
            if st["jobs"][job_id]["state"] in TERMINAL:
                continue
            reason = self._dependency_reason(st, self.by_id[job_id])
            if reason:
                self.cancel_job(st, job_id, reason)
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
            self.log("STATE_CHANGE", f"{job_id}: {old} -> {PENDING}", result=f"{old} -> {PENDING}", explanation=why,
                     job_id="-", state=PENDING, details=" ".join(f"{k}={v}" for k, v in env.items()) or "-")
            done.append(job_id)
        st["all_complete_logged"] = False
        return done

    def _retry_oom(self, st: dict, job: JobSpec, js: dict) -> None:
        """Once per job, when its rerun policy knows a smaller setting (torchtune: half the batch size)."""
        policy = rerun_policy(job)
        if policy is None or js.get("oom_retried"):
            return
        retry = policy.oom_retry(job, js, self.exp_dir)
        if not retry.env:
            if retry.note:
                self.out(f"{job.id} {retry.note}")
            return
        self.reset(st, [job.id] + [d for d in self.graph.descendants(job.id) if st["jobs"][d]["state"] != COMPLETED],
                   f"out of memory: retrying with {retry.note}")
        js["env"].update(retry.env)
        js["oom_retried"] = True
        self.log("RETRY_OOM", f"{job.id}: out of memory at {retry.before}; retrying once with {retry.note}",
                 command=" ".join(f"{k}={v}" for k, v in {**retry.env, **js["env"]}.items()),
                 result="requeued", explanation="OOM (SLURM OUT_OF_MEMORY or CUDA out of memory in the log)",
                 job_id="-")
        self.out(f"{job.id} ran out of memory: retrying once with {retry.note}")

    # -- stage gates and cost ----------------------------------------------------------------------------
    def _gates(self, st: dict) -> bool:
        """Decide every gate whose stage's eval jobs have all ended; a failed `stop` gate cancels later stages."""
        decided = gates.decide(self.plan, self.exp_dir, st, self.order)
        for result, later in decided:
            action, description, fields = gates.log_entry(result, later)
            self.log(action, description, **fields)
            self.out(f"gate {result.stage}: {result.outcome} ({result.numbers()})")
            if not result.proceeds:
                for job_id in later:
                    if st["jobs"][job_id]["state"] not in TERMINAL:
                        self.cancel_job(st, job_id, result.cancel_reason())
        return bool(decided)

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
                                 stages=[s.name for s in self.plan.stages], estimates=estimates,
                                 hourly=getattr(settings, "gpu_hourly_cost", 0.0), note=note)

    # -- polling -----------------------------------------------------------------------------------------
    def _poll(self, snapshot: dict) -> dict[str, dict[str, JobStatus]]:
        by_exec: dict[str, list[str]] = {}
        for job_id, js in snapshot["jobs"].items():
            if job_id in self.by_id and is_submitted(js):
                by_exec.setdefault(js["executor"], []).append(job_id)
        out = {}
        for name, ids in by_exec.items():
            if needs_runner(name) and name not in self.executors:
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

    def apply_polls(self, st: dict, polls: dict) -> bool:
        changed = False
        for job_id in self.order:
            js = st["jobs"][job_id]
            name, native = js.get("executor"), js.get("native_id")
            if not native or name not in polls:
                continue
            ex = self.executors[name]
            if js["state"] in TERMINAL:
                # cancelled from another terminal while our own queue still holds it
                if ex.needs_runner and native in polls[name] and polls[name][native].state not in TERMINAL:
                    ex.cancel([native])
                continue
            status = polls[name].get(native)
            if status is None:
                self._missing[native] += 1
                if ex.lost_after is not None and self._missing[native] >= ex.lost_after:
                    js["ended"] = now()
                    self.set_state(st, self.by_id[job_id], js, FAILED,
                                   reason=f"lost: {name} no longer knows job {native} and it left no exit code")
                    changed = True
                continue
            self._missing.pop(native, None)
            changed |= self._apply(st, self.by_id[job_id], js, status)
        return changed

    # -- submission --------------------------------------------------------------------------------------
    def waits_on(self, st: dict, job: JobSpec, ex: Executor, planned: dict | None = None) -> list[str] | None:
        """Native ids to wait on, or None when a dependency has not completed and `ex` cannot hold the job
        until it does (not submitted to `ex`, or `ex` holds no dependencies).

        planned: {job id: placeholder id} of jobs a dry run would submit before this one."""
        after = []
        for dep in job.after:
            ds = st["jobs"][dep]
            if ds["state"] == COMPLETED:
                continue
            if not ex.holds_dependencies:
                return None
            if is_submitted(ds) and ds["executor"] == ex.name:
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
            if gates.blocking_gate(self.plan, st, job_id):
                continue
            after = self.waits_on(st, job, ex)
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
            self.set_state(st, job, js, FAILED, reason=str(exc))
            return
        js.update(native_id=native, executor=ex.name, submitted=now(), state=PENDING, started=None, ended=None,
                  exit_code=None, reason="", tail=[], log=resolve_log(job, native, self.exp_dir), pid=None,
                  wall_s=None, peak_rss_mb=None)
        ex.save_state(st)
        action = "SUBMIT_EVAL" if job.kind == "eval" else "SUBMIT_JOB"
        extra = f" (attempt {js['attempts']})" if js["attempts"] > 1 else ""
        self.log(action, f"Submitted {job.id}{extra}", command=command, result=f"{ex.name} job {native}",
                 explanation=f"after {', '.join(job.after)}" if job.after else "no dependencies",
                 job_id=native, details=" ".join(f"{k}={v}" for k, v in env.items()) or "-")
        self.out(f"submitted {job.id} as {native}" + (f" ({' '.join(f'{k}={v}' for k, v in env.items())})" if env else ""))
        self.store.write(st)  # a submitted id is never lost, even if we crash right after

    # -- one step / the loop -----------------------------------------------------------------------------
    @contextmanager
    def critical(self):
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
        """Poll, apply, cascade, gates, submit (when executor_name is given), rewrite the Status block."""
        recovery.restore(self)  # lost under a live runner: its own memory, never a resubmission
        polls = self._poll(self.store.read())
        with self.critical(), self.store.locked() as st:
            ensure_jobs(st, self.by_id)
            changed = self.apply_polls(st, polls)
            changed |= self.cascade(st)
            changed |= self._gates(st)
            if executor_name:
                changed |= self._submit_ready(st, executor_name, max_submit)
                changed |= self.cascade(st)
            if changed or not (self.exp_dir / report.SUMMARY_FILE).exists():
                self.write_summary(st)
            recovery.remember(self, st)
            return st

    def _can_progress(self, st: dict) -> bool:
        """Some selected job is submitted, or could still be submitted by this invocation."""
        relevant = set(self.selected) | self.graph.ancestors(self.selected)
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
                    gate = gates.blocking_gate(self.plan, st, job_id)
                    memo[job_id] = all(possible(d) for d in self.by_id[job_id].after) and (
                        not gate or all(st["jobs"][e.id]["state"] in TERMINAL or possible(e.id)
                                        for e in self.plan.evals(gate)))
                else:
                    memo[job_id] = False
            return memo[job_id]

        return any(st["jobs"][i]["state"] == PENDING and not st["jobs"][i]["native_id"] and possible(i)
                   for i in self.selected)

    def run(self, executor_name: str, *, selected: list[str] | None = None, max_parallel: int = 1,
            max_submit: int | None = None, wait: bool = False, poll_interval: float | None = None) -> int:
        """Drive the selected jobs. An executor that needs a runner (or --wait): until all are done;
        otherwise one submission pass (and a continuation job for stage gates, where the executor can)."""
        from cruijff_kit.run import runner
        from cruijff_kit.run.executors import continuation

        self.selected = list(selected if selected is not None else self.order)
        self.max_parallel = max(1, int(max_parallel or 1))
        t0 = time.monotonic()
        ex = self.executor(executor_name)  # fail early: sbatch missing
        blocking = ex.needs_runner or wait
        interval = poll_interval if poll_interval is not None else ex.poll_interval
        runner.prepare(self, executor_name, own_runner=blocking)  # refuses a second live runner
        old_handlers = runner.install_signals(self) if blocking else {}
        interrupted = False
        try:
            self.log("RUN_START", f"{self.command} {len(self.selected)} job(s) with the {executor_name} executor",
                     command=f"cruijff-kit {self.command} {self.exp_dir} --executor {executor_name}",
                     result=f"pid {os.getpid()}", explanation=("waits until done" if blocking else "submits and returns"),
                     details=f"max_parallel={self.max_parallel} max_submit={max_submit or '-'}")
            while True:
                st = self.step(executor_name, max_submit)
                if not blocking or not self._can_progress(st):
                    break
                time.sleep(interval)
            if not blocking and ex.continues_gates and not max_submit and self.selected == self.order:
                continuation.continue_on_cluster(self, ex)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            runner.restore_signals(old_handlers)
            st = runner.finish(self, executor_name, interrupted=interrupted)
        return report.final(self, st, ex, blocking=blocking, interrupted=interrupted,
                            elapsed=time.monotonic() - t0, max_submit=max_submit)

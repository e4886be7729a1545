"""`cruijff-kit run --dry-run`: what `run` would submit now, with the command per job; writes nothing.

It walks the selection the way Engine._submit_ready does (same gate check, same dependency rule through
Engine.waits_on, same --max-submit count), with placeholder ids `<job id>` for jobs it would submit first.
"""
from __future__ import annotations

from collections import Counter

from cruijff_kit.run import gates
from cruijff_kit.run.executors import make_executor
from cruijff_kit.run.state import CANCELLED, COMPLETED, FAILED, INTERRUPTED, PENDING, ensure_jobs, is_submitted


def dry_run(engine, executor_name: str, selected: list[str], *, max_submit: int | None = None) -> int:
    """Print what `run` would submit now (dependencies shown by job id); write nothing."""
    ex = make_executor(executor_name, engine.exp_dir, require=False)
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
        gate = gates.blocking_gate(engine.plan, st, job_id)
        if gate:
            engine.out(f"  wait    {job_id}: gate of stage {gate} not yet passed")
            counts["waiting"] += 1
            continue
        after = engine.waits_on(st, job, ex, planned)
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

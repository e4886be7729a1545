"""Stage 3, running a scaffolded experiment: jobs.json -> local processes or SLURM jobs, state in .ck/state.json.

    cli.py / status.py / cancel.py / resubmit.py   the verbs (dry_run.py: `run --dry-run`)
    engine.py    the loop: poll, apply transitions, cascade, gates, submit (the only writer of state.json jobs)
    graph.py     jobs.json as a checked graph: order, children, --only/--stage selection
    gates.py     stage gates read from the design, decided from eval scores (functions of stages, jobs, state)
    runner.py    the process driving an experiment: one live runner, dead-runner cleanup, signals
    report.py    progress lines, the closing report, the Status block of experiment_summary.md
    state.py     state.json under an flock; runner liveness
    executors/   the registry (__init__.py), the one interface with declared capabilities (base.py) and its
                 backends: local.py, slurm.py (+ continuation.py). docs/executors.md: adding one.
"""

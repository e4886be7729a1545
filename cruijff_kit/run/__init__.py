"""Stage 3, running a scaffolded experiment: jobs.json -> local processes or SLURM jobs, state in .ck/state.json.

    cli.py / status.py / cancel.py / resubmit.py   the verbs
    engine.py    the loop: poll, apply transitions, cascade, gates, submit (the only writer of state.json jobs)
    gates.py     stage gates read from the design and decided from eval scores
    state.py     state.json under an flock; runner liveness
    executors/   the one executor interface (base.py) and its backends: local.py, slurm.py (+ continuation.py)
"""

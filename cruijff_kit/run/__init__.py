"""Running a scaffolded experiment: jobs.json -> local processes or SLURM jobs, state in .ck/state.json.

    engine.py    dependency logic, transitions, logs, Status tables (the only writer of state.json jobs)
    executor.py  the one executor interface (submit / poll / cancel) and shared helpers
    local.py     `bash SCRIPT` per job, dependency-aware queue, --max-parallel
    slurm.py     sbatch / squeue / sacct / scontrol / scancel
    state.py     state.json under an flock; runner liveness
    compute.py   compute.json per finished job
"""

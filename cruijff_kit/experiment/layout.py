"""Every path and file name of an experiment directory, in one place (stdlib only: tools/ may import it).

The scaffolded experiment directory is the contract between the pipeline's stages (design ->
scaffold -> run -> summarize): each stage reads what an earlier one wrote, so every name is spelled
here once and imported everywhere else. Constants are names relative to the directory in the left
column; functions take that directory and return a Path.

    {exp}/                       an experiment directory
      experiment_summary.yaml    DESIGN, design_file()        the design (scaffold writes the resolved copy)
      experiment_summary.md      SUMMARY_MD, summary_md()     the plan; Status / Results blocks rewritten in place
      jobs.json                  JOBS, jobs_file()            the job graph scaffold writes and run reads
      .ck/                       CK_DIR, ck_dir()             bookkeeping nobody edits by hand:
        state.json               STATE, state_file()            run state of every job (under STATE_LOCK)
        state.lock               STATE_LOCK
        manifest.json            MANIFEST, manifest_file()      hashes of rendered files (no-clobber); any RenderSet root
        continue.slurm           CONTINUATION                   the SLURM continuation job of a gated experiment
      analysis/                  ANALYSIS, analysis_dir()     summarize's tables and plots
      prefs/prefs.slurm          PREFS_DIR, PREFS_SCRIPT      the preference-generation job
      {run}/                     run_dir(), is_run_dir()      one per run
        setup_finetune.yaml      SETUP_FINETUNE                 the run's resolved parameters (flat, legacy format)
        finetune.yaml            FINETUNE_CONFIG                the torchtune config
        finetune.slurm           FINETUNE_SCRIPT                the training job script (RUN_FILES: these three)
        compute.json             COMPUTE, compute_file()        what the job cost (also in every eval cell dir)
        provenance.json          PROVENANCE, provenance_file()  what the job was made from (also in every cell dir)
        gpu_samples.csv          GPU_SAMPLES                    nvidia-smi samples of a GPU job (also in cell dirs)
        eval/                    EVAL_DIR
          {task}[_epoch{N}]/     cell_dirname(), cell_relpath(), cell_dir()   one eval cell
          {task}_epoch_best/     (matrix `epochs: best` / `last`: epoch_suffix(); resolved when the eval runs)
            eval_config.yaml     EVAL_CONFIG
            resolved_epoch.json  RESOLVED_EPOCH, resolved_epoch_file()   the epoch a best/last cell evaluated
            inspect.slurm        EVAL_SCRIPT
            logs/                LOGS, cell_logs()              inspect-ai's .eval logs
        eval_groups/             EVAL_GROUPS_DIR              grouped eval jobs (evaluation.group: checkpoint | run)
          {all|epoch{N}}/        group_dirname(), group_relpath()   one job that evaluates several cells
            eval_group.yaml      EVAL_GROUP_CONFIG              its cells (each keeps its own eval_config.yaml)
            inspect.slurm        EVAL_SCRIPT
            cells.json           EVAL_GROUP_STATE               each cell's outcome, written as the job goes
      <script>.exitcode          EXIT_CODE_SUFFIX, exit_code_file()   the status a job script writes when it ends
      slurm-%j.out               JOB_LOG, job_log()           a job's stdout/stderr (%j = job id), in its log dir
    is_scaffolded(exp)           jobs.json or .ck/ present
    globs from {exp}: RUN_COMPUTE_GLOB (training records), EVAL_LOG_GLOB (every cell's .eval logs);
    from {run}: CELL_COMPUTE_GLOB, cell_compute_files()

    {output_dir}/                a training run's outputs (where: settings.output_dir(exp, run))
      epoch_{N}/                 EPOCH_PREFIX, EPOCH_DIR (regex), epoch_dirname(), epoch_dir(), epoch_of(),
                                 saved_epochs()   a checkpoint per epoch (0-indexed)
      epoch_best, epoch_last     EPOCH_BEST, EPOCH_LAST, epoch_best_dir(), epoch_named_dir(), named_epoch_of()
                                 names (NAMED_EPOCHS), never folders: the job picks the epoch (pick_epoch)
      logs/                      LOGS, logs_dir()             torchtune's DiskLogger
      training_summary.json      TRAINING_SUMMARY, training_summary()   what our recipes report each epoch
"""
from __future__ import annotations

import re
from pathlib import Path

DESIGN = "experiment_summary.yaml"
SUMMARY_MD = "experiment_summary.md"
JOBS = "jobs.json"
CK_DIR = ".ck"
STATE = f"{CK_DIR}/state.json"
STATE_LOCK = f"{CK_DIR}/state.lock"
MANIFEST = f"{CK_DIR}/manifest.json"
CONTINUATION = f"{CK_DIR}/continue.slurm"
ANALYSIS = "analysis"
PREFS_DIR = "prefs"
PREFS_SCRIPT = f"{PREFS_DIR}/prefs.slurm"

SETUP_FINETUNE = "setup_finetune.yaml"
FINETUNE_CONFIG = "finetune.yaml"
FINETUNE_SCRIPT = "finetune.slurm"
RUN_FILES = (SETUP_FINETUNE, FINETUNE_CONFIG, FINETUNE_SCRIPT)  # what the torchtune worker writes per run
COMPUTE = "compute.json"
PROVENANCE = "provenance.json"  # written by tools/provenance.py from the job script, next to compute.json
GPU_SAMPLES = "gpu_samples.csv"  # written by tools/gpu_sampler.py on a GPU job; compute.json summarises it
EVAL_DIR = "eval"
EVAL_CONFIG = "eval_config.yaml"
EVAL_SCRIPT = "inspect.slurm"
LOGS = "logs"
EVAL_GROUPS_DIR = "eval_groups"
EVAL_GROUP_CONFIG = "eval_group.yaml"
EVAL_GROUP_STATE = "cells.json"
JOB_LOG = "slurm-%j.out"
EXIT_CODE_SUFFIX = ".exitcode"
TRAINING_SUMMARY = "training_summary.json"
RESOLVED_EPOCH = "resolved_epoch.json"  # {"epoch": "best", "resolved_epoch": N, ...}: written by the eval job
NAMED_EPOCHS = ("best", "last")  # epochs known only once the run has trained

# globs over an experiment dir
RUN_COMPUTE_GLOB = f"*/{COMPUTE}"  # every run's training compute record
CELL_COMPUTE_GLOB = f"{EVAL_DIR}/*/{COMPUTE}"  # (from a run dir) every eval cell's compute record
EVAL_LOG_GLOB = f"*/{EVAL_DIR}/*/{LOGS}/*.eval"  # every inspect-ai log of every cell

EPOCH_PREFIX = "epoch_"
EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


# -- the experiment directory ----------------------------------------------------------------------
def _in(name: str, doc: str):
    """A path helper `f(folder) -> Path(folder) / name` (name: one of the constants above)."""
    def path(folder: str | Path) -> Path:
        return Path(folder) / name

    path.__doc__ = doc
    return path


design_file = _in(DESIGN, "The design in an experiment dir.")
summary_md = _in(SUMMARY_MD, "The plan (Status / Results blocks rewritten in place).")
jobs_file = _in(JOBS, "The job graph scaffold writes and run reads.")
ck_dir = _in(CK_DIR, "The bookkeeping dir nobody edits by hand.")
state_file = _in(STATE, "The run state of every job.")
manifest_file = _in(MANIFEST, "The hashes of rendered files under a RenderSet root.")
analysis_dir = _in(ANALYSIS, "summarize's tables and plots.")


def is_scaffolded(exp_dir: str | Path) -> bool:
    """Has scaffold (or a run) touched this directory?"""
    return jobs_file(exp_dir).is_file() or ck_dir(exp_dir).is_dir()


# -- runs and eval cells ---------------------------------------------------------------------------
def run_dir(exp_dir: str | Path, run: str) -> Path:
    return Path(exp_dir) / run


def is_run_dir(path: str | Path) -> bool:
    """A directory scaffold rendered for a run (a training script or eval cells in it)."""
    path = Path(path)
    return path.is_dir() and ((path / FINETUNE_SCRIPT).exists() or (path / EVAL_DIR).is_dir())


def epoch_suffix(epoch: int | str | None) -> str:
    """`` (no epoch), `_epoch{N}`, or `_epoch_best` / `_epoch_last` for an epoch picked when the eval runs."""
    if epoch is None:
        return ""
    return f"_epoch_{epoch}" if epoch in NAMED_EPOCHS else f"_epoch{epoch}"


def cell_dirname(task: str, epoch: int | str | None) -> str:
    """`{task}` for a cell without epochs (control, eval-only), else `{task}_epoch{N}` / `{task}_epoch_best`."""
    return task + epoch_suffix(epoch)


def cell_relpath(run: str, dirname: str) -> str:
    """An eval cell's directory relative to the experiment dir."""
    return f"{run}/{EVAL_DIR}/{dirname}"


def cell_dir(exp_dir: str | Path, run: str, dirname: str) -> Path:
    return Path(exp_dir) / cell_relpath(run, dirname)


def cell_logs(exp_dir: str | Path, run: str, dirname: str) -> Path:
    return cell_dir(exp_dir, run, dirname) / LOGS


def group_dirname(epoch) -> str:
    """A grouped eval job's folder: `epoch{N}` for one checkpoint of a run, `all` for every cell of a run."""
    return "all" if epoch is None else f"epoch{epoch}"


def group_relpath(run: str, dirname: str) -> str:
    """A grouped eval job's directory relative to the experiment dir."""
    return f"{run}/{EVAL_GROUPS_DIR}/{dirname}"


def cell_compute_files(run_dir_: str | Path) -> list[Path]:
    """The compute records of a run's eval cells, sorted."""
    return sorted(Path(run_dir_).glob(CELL_COMPUTE_GLOB))


resolved_epoch_file = _in(RESOLVED_EPOCH, "Which epoch a `best` / `last` cell evaluated (written by the eval job "
                                          "when it resolves the epoch), in the cell dir.")
provenance_file = _in(PROVENANCE, "What a job was made from (tools/provenance.py), next to its compute record.")
compute_file = _in(COMPUTE, "A job's compute record, next to its script (run dir or eval cell dir).")
job_log = _in(JOB_LOG, "A job's stdout/stderr in its log dir (%j: the job id).")


def exit_code_file(script: str | Path) -> str:
    return str(script) + EXIT_CODE_SUFFIX


# -- a training run's output dir -------------------------------------------------------------------
def epoch_dirname(epoch: int | str) -> str:
    return f"{EPOCH_PREFIX}{epoch}"


def epoch_dir(output_dir: str | Path, epoch: int) -> Path:
    return Path(output_dir) / epoch_dirname(epoch)


EPOCH_BEST = f"{EPOCH_PREFIX}best"
EPOCH_LAST = f"{EPOCH_PREFIX}last"


def epoch_named_dir(output_dir: str | Path, which: str) -> Path:
    """Stands for the run's `best` (lowest validation loss) or `last` epoch: a name, never a folder; the job
    resolves it with tools/torchtune/pick_epoch once the run has trained."""
    if which not in NAMED_EPOCHS:
        raise ValueError(f"{which!r} is not one of {', '.join(NAMED_EPOCHS)}")
    return Path(output_dir) / epoch_dirname(which)


def epoch_best_dir(output_dir: str | Path) -> Path:
    """Stands for the run's best epoch by validation loss; the job resolves it with tools/torchtune/pick_epoch."""
    return epoch_named_dir(output_dir, "best")


def named_epoch_of(path: str | Path) -> str | None:
    """`best` / `last` when a checkpoint path is an epoch_best / epoch_last stand-in, else None."""
    name = Path(path).name
    return next((w for w in NAMED_EPOCHS if name == epoch_dirname(w)), None)


def epoch_of(name: str) -> int | None:
    """The epoch number of an `epoch_N` directory name, else None."""
    m = EPOCH_DIR.fullmatch(name)
    return int(m.group(1)) if m else None


def saved_epochs(output_dir: str | Path) -> list[int]:
    """Epoch numbers of the `epoch_N/` directories in an output dir, sorted."""
    out = Path(output_dir)
    return sorted(n for p in out.glob(f"{EPOCH_PREFIX}*") if p.is_dir() and (n := epoch_of(p.name)) is not None)


logs_dir = _in(LOGS, "torchtune's DiskLogger dir in a training run's output dir.")
training_summary = _in(TRAINING_SUMMARY, "What our recipes report each epoch, in a training run's output dir.")

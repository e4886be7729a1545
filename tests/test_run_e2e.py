"""End to end through SLURM: the tiny sanity check (real torchtune training, real inspect-ai evals).

scaffold sanity_checks/predictable_or_not --profile tiny (tiny model built locally) into a tmp scratch,
`run --executor slurm --wait`, then check every job COMPLETED in sacct and in our state, and that the
checkpoints exist. A second test kills a training job after its first epoch and checks `resubmit
--failed` resumes it from that epoch instead of restarting.

Slow: on a 2-core machine one tiny training job takes minutes. CK_E2E_RUNS=run1,run2 limits the first
test to those runs (default: all 8).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from run_fixtures import state, table_states, wait_for

from cruijff_kit import logbook

REPO = Path(__file__).resolve().parent.parent
SANITY = REPO / "sanity_checks" / "predictable_or_not"
FINETUNE_TEMPLATE = REPO / "cruijff_kit" / "templates" / "torchtune" / "finetune.slurm.j2"
EXP_NAME = "predictable_or_not"
NEEDED = ("cruijff_kit.scaffold.scaffold", "cruijff_kit.workers.torchtune.trainer", "cruijff_kit.workers.inspect.evaluator",
          "cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val",
          "cruijff_kit.tools.torchtune.datasets", "cruijff_kit.tools.inspect.run_cell", "cruijff_kit.models.tiny",
          "torchtune", "inspect_ai")

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def _find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module", autouse=True)
def prerequisites():
    missing = [m for m in NEEDED if not _find(m)]
    assert not missing, f"modules this test needs are missing: {', '.join(missing)} (pip install -e '.[train]')"
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch is not installed: start a local SLURM with `bash scripts/slurm-local.sh up`")
    if subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode != 0:
        up = subprocess.run(["bash", str(REPO / "scripts" / "slurm-local.sh"), "up"], capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
        if up.returncode != 0:
            pytest.skip(f"the local SLURM does not answer and `slurm-local.sh up` failed: {up.stderr.strip()[-300:]}")


@pytest.fixture
def tiny_experiment(scratch, cli) -> Path:
    made = cli("models", "make-tiny", str(scratch / "models" / "tiny-llama"), timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    proc = cli("scaffold", str(SANITY), "--profile", "tiny", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exp = scratch / "ck-sanity-checks" / EXP_NAME
    assert (exp / "jobs.json").is_file()
    return exp


def sacct_states(ids) -> dict[str, str]:
    out = subprocess.run(["sacct", "--parsable2", "-n", "-X", "-j", ",".join(ids), "-o", "JobID,State"],
                         capture_output=True, text=True, timeout=60).stdout
    return {line.split("|")[0]: line.split("|")[1].split()[0] for line in out.splitlines() if "|" in line}


def jobs_of(exp: Path) -> list[dict]:
    return json.loads((exp / "jobs.json").read_text())["jobs"]


# The whole sanity check, 18 jobs one after another on the 2-CPU node: about 19 minutes on CI, so past the suite's
# 20-minute default (pyproject) on a slower runner.
@pytest.mark.timeout(3600)
def test_tiny_sanity_check_through_slurm(tiny_experiment, cli):
    exp = tiny_experiment
    only = [r for r in os.environ.get("CK_E2E_RUNS", "").split(",") if r]
    args = ["run", str(exp), "--executor", "slurm", "--wait", "--poll-interval", "3"]
    if only:
        args += ["--only", *only]
    proc = cli(*args, timeout=4 * 3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    st = state(exp)
    jobs = [j for j in jobs_of(exp) if not only or j["run"] in only]
    assert jobs and all(st["jobs"][j["id"]]["state"] == "completed" for j in jobs)
    natives = [st["jobs"][j["id"]]["native_id"] for j in jobs]
    assert set(wait_for(lambda: (lambda s: s if len(s) == len(natives) and set(s.values()) == {"COMPLETED"} else None)(
        sacct_states(natives)), 60, 1, "sacct COMPLETED").values()) == {"COMPLETED"}

    kinds = [j["kind"] for j in jobs]
    assert "train" in kinds and "eval" in kinds, kinds  # both branches below must run
    for job in jobs:
        if job["kind"] == "train":
            epochs = job["meta"]["epochs"]
            assert epochs >= 1
            out = Path(job["output_dir"])
            for epoch in range(epochs):
                files = {p.name for p in (out / f"epoch_{epoch}").iterdir()}
                assert "adapter_model.safetensors" in files and "model.safetensors" in files, (epoch, files)
            compute = json.loads((exp / job["run"] / "compute.json").read_text())
            assert compute["executor"] == "slurm" and compute["exit_code"] == 0
            assert compute["tokens_per_s"] > 0 and compute["wall_s"] > 0  # merged from training_summary.json
        else:
            cell = exp / Path(job["script"]).parent
            assert list((cell / "logs").glob("*.eval")), f"no inspect log in {cell}/logs"
            assert json.loads((cell / "compute.json").read_text())["state"] == "completed"
    assert "failed" not in table_states(exp).values()
    if not only:
        assert any(e.action == "ALL_COMPLETE" for e in logbook.read(exp / "run-experiment.log"))
        assert_sanity_science(exp, cli)


def assert_sanity_science(exp: Path, cli) -> None:
    """What the sanity check exists for, read from the real training logs and eval logs."""
    from cruijff_kit.workers.torchtune.losses import read_losses

    outputs = {j["run"]: Path(j["output_dir"]) for j in jobs_of(exp) if j["kind"] == "train"}
    assert len(outputs) == 8, sorted(outputs)
    final_val = {}
    for run, out in outputs.items():
        losses = read_losses(out)
        val_steps = [step for step, _ in losses.val]
        # val loss every run_val_every_n_steps (10 in the tiny profile) plus each epoch end (25, 50)
        assert {10, 20, 30, 40}.issubset(val_steps), (run, val_steps)
        train = [loss for _, loss in losses.train]
        assert train[-1] < train[0], (run, train[0], train[-1])  # loss decreases
        final_val[run] = losses.val[-1][1]
        assert list(out.glob("logs/wandb/offline-run-*/*.wandb")), f"no offline W&B run for {run}"
    # output-only: the constant target (up) is learnt, random outputs (uu) are not
    assert final_val["up_output_only"] < 0.5 * final_val["uu_output_only"], final_val
    proc = cli("summarize", str(exp), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = (exp / "analysis" / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 10, rows  # header + one row per eval cell
    assert {f"loss_dataset_label-{s}.png" for s in ("pp", "pu", "up", "uu")} <= {
        p.name for p in (exp / "analysis").glob("*.png")}
    report = (exp / "analysis" / "summary.md").read_text()
    assert all(run in report for run in outputs)


def _recipe_pids(native: str) -> list[int]:
    """The training process(es) of SLURM job `native` (python running the recipe)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURM_JOB_ID={native}".encode() in env and b"lora_finetune_single_device_val" in cmd:
            pids.append(int(entry.name))
    return pids


def test_kill_after_epoch0_then_resume(tiny_experiment, cli):
    # the only real resubmit-resume test must never disable itself: the template has to honour CK_RESUME
    assert "CK_RESUME" in FINETUNE_TEMPLATE.read_text(), \
        "templates/torchtune/finetune.slurm.j2 must turn CK_RESUME=1 into resume_from_checkpoint=True"
    exp, run = tiny_experiment, "pp_output_only"
    job = next(j for j in jobs_of(exp) if j["id"] == f"{run}.train")
    out = Path(job["output_dir"])
    proc = cli("run", str(exp), "--executor", "slurm", "--only", run, "--stage", "train", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    native = state(exp)["jobs"][job["id"]]["native_id"]

    # wait until epoch 0 is saved (its checkpoint and the recipe state), then kill the training process
    wait_for(lambda: (out / "epoch_0" / "adapter_model.safetensors").exists()
             and any((out / "recipe_state").glob("*.pt")), 3600, 2, "epoch_0 checkpoint")
    assert not (out / "epoch_1").exists()
    pids = wait_for(lambda: _recipe_pids(native), 60, 0.5, "the recipe process")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    def failed():
        data = json.loads(cli("status", str(exp), "--json", timeout=60).stdout)
        return next(j for j in data["jobs"] if j["id"] == job["id"])["state"] == "failed"

    wait_for(failed, 120, 2, "the killed job to be failed")
    proc = cli("resubmit", str(exp), "--failed", "--only", run, "--wait", "--poll-interval", "3", timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    js = state(exp)["jobs"][job["id"]]
    assert js["state"] == "completed" and js["attempts"] == 2 and js["env"].get("CK_RESUME") == "1"
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary.get("resumed_from_epoch") == 0  # resumed after epoch 0, not restarted
    assert (out / f"epoch_{job['meta']['epochs'] - 1}" / "adapter_model.safetensors").exists()
    assert sacct_states([js["native_id"]])[js["native_id"]] == "COMPLETED"

"""#14 item 7: every job on a GPU samples nvidia-smi into its compute.json; status, estimate and summarize use it.

This machine has no GPU and no nvidia-smi: the sampled jobs see a small executable `nvidia-smi` script placed
first on PATH (a stand-in for the absent hardware tool) that prints fixed CSV lines for two GPUs. The jobs
are real job scripts (templates/job.sh.j2) run by the real local executor.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from run_fixtures import Fake, build, marker, state

from cruijff_kit.compute.costs import cost_lines, stage_costs
from cruijff_kit.compute.estimates import fitting_batch_size, read_prior
from cruijff_kit.experiment.jobs import read_jobs
from cruijff_kit.tools import gpu_sampler

# GPU 0: 50 %, 4000 MiB, 200 W; GPU 1: 100 %, 8000 MiB, [N/A] W
FAKE_SMI = """#!/bin/sh
case "$*" in *"--query-gpu=utilization.gpu,memory.used,power.draw"*"--format=csv,noheader,nounits"*) ;;
  *) echo "unexpected arguments: $*" >&2; exit 9;; esac
echo "50, 4000, 200.0"
echo "100, 8000, [N/A]"
"""


def _fake_smi(folder: Path, text: str = FAKE_SMI) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(text)
    smi.chmod(0o755)
    return folder


def _path_without_smi() -> str:
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and not (Path(p) / "nvidia-smi").exists())


def _experiment(tmp_path: Path, gpus: int = 1) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    return build(tmp_path / "exp", [Fake("a.train", marker(marks, "a.train", 2.0)),
                                    Fake("a.eval.task_epoch0", marker(marks, "a.eval", 0.1), after=["a.train"])],
                 gpus=gpus)


def test_gpu_job_records_samples_and_summary(tmp_path, scratch, cli):
    bin_dir = _fake_smi(tmp_path / "bin")
    exp = _experiment(tmp_path)
    assert "cruijff_kit.tools.gpu_sampler" in (exp / "a" / "finetune.slurm").read_text()
    env = {"PATH": f"{bin_dir}{os.pathsep}{_path_without_smi()}", "CK_GPU_SAMPLE_S": "0.2"}
    proc = cli("run", str(exp), "--executor", "local", env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((exp / "a" / "compute.json").read_text())
    gpu = record["gpu"]
    assert gpu["columns"] == ["t_s", "gpu", "utilization_pct", "memory_used_mib", "power_w"]
    assert len(gpu["samples"]) >= 4 and {row[1] for row in gpu["samples"]} == {0, 1}  # >= 2 times x 2 GPUs
    assert [row[2:] for row in gpu["samples"][:2]] == [[50.0, 4000.0, 200.0], [100.0, 8000.0, None]]
    summary = gpu["summary"]
    assert summary["samples"] >= 2 and summary["gpus"] == 2 and summary["duration_s"] <= record["wall_s"] + 1
    assert (summary["peak_memory_mib"], summary["mean_utilization_pct"]) == (8000.0, 75.0)
    assert (summary["mean_power_w"], summary["peak_power_w"]) == (200.0, 200.0)
    assert (exp / "a" / "eval" / "task_epoch0" / "compute.json").is_file()

    status = cli("status", str(exp), "--no-refresh")
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("a.train"))
    assert "GPU peak 7.8 GiB, util 75%" in line
    data = json.loads(cli("status", str(exp), "--json", "--no-refresh").stdout)
    assert data["jobs"][0]["gpu"]["peak_memory_mib"] == 8000.0
    costs = stage_costs(exp, read_jobs(exp), {}, state(exp)["jobs"], stages=[], estimates={}, hourly=None)
    assert costs["total"]["gpu_peak_memory_mib"] == 8000.0 and costs["total"]["gpu_mean_utilization_pct"] == 75.0
    lines = cost_lines(costs)
    assert "GPU PEAK GiB" in lines[0] and lines[2].split()[-2:] == ["7.8", "75%"]


def test_without_nvidia_smi_nothing_is_recorded_and_the_job_succeeds(tmp_path, scratch, cli):
    exp = _experiment(tmp_path)
    proc = cli("run", str(exp), "--executor", "local", env={"PATH": _path_without_smi()}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert state(exp)["jobs"]["a.train"]["state"] == "completed"
    assert not list(exp.rglob("gpu_samples.csv"))
    record = json.loads((exp / "a" / "compute.json").read_text())
    assert "gpu" not in record and record["exit_code"] == 0
    costs = stage_costs(exp, read_jobs(exp), {}, state(exp)["jobs"], stages=[], estimates={}, hourly=None)
    assert "GPU PEAK GiB" not in cost_lines(costs)[0]


def test_cpu_jobs_start_no_sampler(tmp_path, scratch):
    exp = _experiment(tmp_path, gpus=0)
    assert "gpu_sampler" not in (exp / "a" / "finetune.slurm").read_text()


def test_failing_nvidia_smi_writes_nothing(tmp_path, monkeypatch):
    bin_dir = _fake_smi(tmp_path / "bin", "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{_path_without_smi()}")
    assert gpu_sampler.main([str(tmp_path), "--interval", "0.1"]) == 0
    assert not (tmp_path / "gpu_samples.csv").exists()


def test_sampler_stops_on_term(tmp_path):
    import subprocess
    import time

    bin_dir = _fake_smi(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{_path_without_smi()}"}
    proc = subprocess.Popen([sys.executable, "-m", "cruijff_kit.tools.gpu_sampler", str(tmp_path), "--interval", "0.1"],
                            env=env)
    time.sleep(1.5)
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    samples = gpu_sampler.read_samples(tmp_path / "gpu_samples.csv")
    assert len(samples) >= 4 and len(samples) % 2 == 0  # whole samples: both GPUs each time


# -- estimate: batch size from the measured peak --------------------------------------------------------
def test_estimate_batch_size_uses_measured_gpu_peak(tmp_path):
    from types import SimpleNamespace

    record = {"kind": "train", "exit_code": 0, "wall_s": 100.0, "tokens": 10000, "tokens_per_s": 100.0,
              "model": "Llama-3.1-8B-Instruct", "batch_size": 4, "max_seq_len": 1024,
              "peak_memory_gb": 20.0}
    path = tmp_path / "run" / "compute.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    plain = read_prior(path)
    assert plain.gpu_peak_memory_gb == 0.0 and plain.measured_gpu_peak_gb == 20.0
    record["gpu"] = {"summary": {"peak_memory_mib": 60 * 1024, "mean_utilization_pct": 90.0}}
    path.write_text(json.dumps(record))
    measured = read_prior(path)
    assert measured.gpu_peak_memory_gb == 60.0 and measured.measured_gpu_peak_gb == 60.0
    run = SimpleNamespace(controls=SimpleNamespace(device="cuda", batch_size=16, max_seq_len=1024))
    # 16 GB of weights on an 80 GB GPU (x0.9 headroom): per example (20-16)/4 = 1 GB -> 56 fit; (60-16)/4 = 11 -> 5
    assert fitting_batch_size(run, 16.0, 1, "H100", plain) == 16
    assert fitting_batch_size(run, 16.0, 1, "H100", measured) == 4


def test_gpu_check_prints_the_sampled_figures(tmp_path):
    """scripts/gpu-check.sh's figures step, run on an experiment whose job recorded nvidia-smi samples."""
    import subprocess

    text = (Path(__file__).resolve().parent.parent / "scripts" / "gpu-check.sh").read_text()
    figures = text.split("<<'PYEOF'\n")[-1].split("\nPYEOF")[0]
    job = tmp_path / "exp" / "run_ft"
    job.mkdir(parents=True)
    (job / "compute.json").write_text(json.dumps({"job": "run_ft.train", "wall_s": 12.5, "gpu": {"summary": {
        "peak_memory_mib": 8000.0, "mean_utilization_pct": 75.0, "mean_power_w": 200.0, "peak_power_w": 310.0}}}))
    env = {**os.environ, "ROOT": str(tmp_path), "SCRATCH": str(tmp_path), "WALL": "20"}
    out = subprocess.run([sys.executable, "-c", figures], env=env, capture_output=True, text=True, check=True).stdout
    assert "run_ft.train" in out and out.splitlines()[-1].split()[1:] == ["12.5", "8000", "75", "200", "310"]


def test_summarize_cost_table_has_gpu_columns_when_present():
    from types import SimpleNamespace

    from cruijff_kit.summarize.report import cost_table

    row = {"stage": "s1", "estimated_gpu_hours": None, "actual_gpu_hours": 0.5, "estimated_cost": None,
           "actual_cost": None, "jobs": 1, "jobs_timed": 1}
    plain = cost_table(SimpleNamespace(cost={"hourly_cost": None, "stages": [row], "total": {**row, "stage": "total"}}))
    assert "GPU utilization" not in plain["header"]
    measured = {**row, "gpu_peak_memory_mib": 8192.0, "gpu_mean_utilization_pct": 75.0}
    table = cost_table(SimpleNamespace(cost={"hourly_cost": None, "stages": [measured],
                                             "total": {**measured, "stage": "total"}}))
    assert table["header"][-2:] == ["GPU peak memory (GiB)", "GPU utilization"]
    assert table["rows"][0][-2:] == ["8.0", "75%"]


@pytest.mark.slow
def test_scaffolded_training_job_records_gpu_metrics(tmp_path, scratch, cli):
    """A real scaffolded torchtune job (tiny model on the CPU, asking SLURM for a GPU) run by the local executor."""
    from conftest_scaffold import tiny_design, write_design

    made = cli("models", "make-tiny", str(scratch / "models" / "tiny-llama"), timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    design = tiny_design(tmp_path, [{"name": "tiny_a", "type": "fine-tuned", "model": "tiny-llama",
                                     "slurm_overrides": {"gpus": 1}}])
    design["evaluation"]["matrix"] = [{"run": "tiny_a", "tasks": ["next_value"], "epochs": [0]}]
    proc = cli("scaffold", str(write_design(tmp_path, design)), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exp = tmp_path / "exp"
    assert "#SBATCH --gres=gpu:1" in (exp / "tiny_a" / "finetune.slurm").read_text()
    bin_dir = _fake_smi(tmp_path / "bin")
    env = {"PATH": f"{bin_dir}{os.pathsep}{_path_without_smi()}", "CK_GPU_SAMPLE_S": "0.5"}
    proc = cli("run", str(exp), "--executor", "local", env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for path in (exp / "tiny_a" / "compute.json", exp / "tiny_a" / "eval" / "next_value_epoch0" / "compute.json"):
        record = json.loads(path.read_text())
        assert record["gpu"]["summary"]["peak_memory_mib"] == 8000.0 and record["gpu"]["summary"]["samples"] >= 2
    assert json.loads((exp / "tiny_a" / "compute.json").read_text())["tokens_per_s"] > 0  # training_summary too

"""The single-node SLURM from scripts/slurm-local.sh behaves like a real cluster: sbatch, sacct, dependencies.

`make test` runs `bash scripts/slurm-local.sh up` first; the session fixture calls `up` again (a fast no-op when
the cluster already runs). Every wait is bounded; the whole module takes about 15 s once the cluster is up.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm-local.sh"

pytestmark = pytest.mark.slurm

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE")


def _run(*args: str, env: dict, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(args)} -> rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def slurm_env() -> dict:
    """Start (or confirm) the cluster; return an environment whose SLURM_CONF points at it."""
    if os.geteuid() != 0 and not _cluster_answers():
        if not (_which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0):
            pytest.skip("the local SLURM is not running and starting it needs root: run `make slurm-up` as root")
    up = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600,
                        stdin=subprocess.DEVNULL)
    if up.returncode:
        pytest.fail(f"slurm-local.sh up failed (rc {up.returncode}):\n{up.stdout}\n{up.stderr}")
    line = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    match = re.fullmatch(r"export SLURM_CONF=(\S+)\n?", line)
    assert match, f"unexpected `env` output: {line!r}"
    return {**os.environ, "SLURM_CONF": match.group(1)}


def _which(name: str) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


def _cluster_answers() -> bool:
    try:
        return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def sbatch(env: dict, cwd: Path, script: str, *opts: str) -> str:
    proc = _run("sbatch", "--parsable", f"--chdir={cwd}", f"--output={cwd}/%j.out", *opts, "--wrap", script,
                env=env)
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit(), proc.stdout
    return job_id


def sacct_state(env: dict, job_id: str) -> tuple[str, str] | None:
    """(State, ExitCode) of the job allocation itself, or None while accounting has not seen the job yet."""
    out = _run("sacct", "-j", job_id, "-X", "--parsable2", "-n", "-o", "State,ExitCode", env=env).stdout.strip()
    if not out:
        return None
    state, exit_code = out.splitlines()[0].split("|")
    return state, exit_code


def wait_terminal(env: dict, job_id: str, timeout: float = 30) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = sacct_state(env, job_id)
        if seen and seen[0].startswith(TERMINAL):
            return seen
        time.sleep(0.2)
    squeue = _run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T %r", env=env, check=False).stdout
    raise AssertionError(f"job {job_id} not finished after {timeout}s: sacct {seen}, squeue {squeue!r}")


def wait_squeue_state(env: dict, job_id: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T", env=env, check=False).stdout.strip()
        if state == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never became {wanted} within {timeout}s (last: {state!r})")


def test_status_reports_node_and_accounting(slurm_env):
    out = _run("bash", str(SCRIPT), "status", env=slurm_env).stdout
    assert re.search(r"\b(idle|mixed|allocated)\b", out), out
    assert "accounting: ok" in out, out


def test_job_completes_and_sacct_reports_it(slurm_env, tmp_path):
    job = sbatch(slurm_env, tmp_path, "echo hello from $SLURM_JOB_ID")
    assert wait_terminal(slurm_env, job) == ("COMPLETED", "0:0")
    assert (tmp_path / f"{job}.out").read_text().strip() == f"hello from {job}"


def test_failing_job_is_failed_with_its_exit_code(slurm_env, tmp_path):
    job = sbatch(slurm_env, tmp_path, "exit 3")
    assert wait_terminal(slurm_env, job) == ("FAILED", "3:0")


def test_afterok_dependent_of_failed_job_is_cancelled_never_run(slurm_env, tmp_path):
    parent = sbatch(slurm_env, tmp_path, "sleep 1; exit 3")
    child = sbatch(slurm_env, tmp_path, f"touch {tmp_path}/child-ran", f"--dependency=afterok:{parent}")
    assert wait_terminal(slurm_env, parent) == ("FAILED", "3:0")
    state, _ = wait_terminal(slurm_env, child, timeout=20)   # kill_invalid_depend: cancelled within ~1-2 s
    assert state.startswith("CANCELLED"), state
    reason = _run("squeue", "-h", "-t", "all", "-j", child, "-o", "%r", env=slurm_env).stdout.strip()
    assert reason == "DependencyNeverSatisfied", reason
    assert not (tmp_path / "child-ran").exists()
    # a dependent submitted after the parent already failed is accepted and cancelled at once
    late = sbatch(slurm_env, tmp_path, f"touch {tmp_path}/late-ran", f"--dependency=afterok:{parent}")
    assert wait_terminal(slurm_env, late, timeout=20)[0].startswith("CANCELLED")
    assert not (tmp_path / "late-ran").exists()


def test_scancel_of_running_job_is_cancelled(slurm_env, tmp_path):
    job = sbatch(slurm_env, tmp_path, "sleep 300")
    wait_squeue_state(slurm_env, job, "RUNNING")
    _run("scancel", job, env=slurm_env)
    state, _ = wait_terminal(slurm_env, job, timeout=20)
    assert state.startswith("CANCELLED"), state   # sacct prints "CANCELLED by <uid>"


def test_two_one_cpu_jobs_run_concurrently(slurm_env, tmp_path):
    cpus = _run("sinfo", "-h", "-o", "%c", env=slurm_env).stdout.split()
    if not cpus or int(cpus[0]) < 2:
        pytest.skip("the node has fewer than 2 CPUs")
    # each job announces itself, then waits (bounded) to see the other: both succeed only if they overlap
    script = ("touch {d}/{me}; for i in $(seq 100); do [ -e {d}/{other} ] && exit 0; sleep 0.2; done; exit 1")
    a = sbatch(slurm_env, tmp_path, script.format(d=tmp_path, me="a", other="b"), "-c", "1")
    b = sbatch(slurm_env, tmp_path, script.format(d=tmp_path, me="b", other="a"), "-c", "1")
    assert wait_terminal(slurm_env, a) == ("COMPLETED", "0:0")
    assert wait_terminal(slurm_env, b) == ("COMPLETED", "0:0")


def test_sacct_reports_max_rss_of_the_batch_step(slurm_env, tmp_path):
    """MaxRSS lives on the step (ID.batch), not on the allocation line; sampled every second."""
    job = sbatch(slurm_env, tmp_path,
                 "python3 -c 'import time; x = bytearray(100 * 2**20); x[::4096] = b\"1\" * len(x[::4096]); "
                 "time.sleep(2.5)'")
    assert wait_terminal(slurm_env, job) == ("COMPLETED", "0:0")
    rss = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not rss:
        rss = _run("sacct", "-j", f"{job}.batch", "--parsable2", "-n", "-o", "MaxRSS", env=slurm_env).stdout.strip()
        time.sleep(0.2)
    match = re.fullmatch(r"([\d.]+)([KMG]?)", rss)
    assert match, f"no MaxRSS for {job}.batch: {rss!r}"
    size = float(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)]
    assert size >= 90 * 2**20, rss


def test_impossible_requests_are_rejected_at_submit(slurm_env, tmp_path):
    """No GPUs, no features, and no more CPUs than the node has: sbatch fails at once instead of pending."""
    cpus = int(_run("sinfo", "-h", "-o", "%c", env=slurm_env).stdout.split()[0])
    for opts, message in ((["--gres=gpu:1"], "Invalid generic resource"),
                          (["--constraint=x"], "Invalid feature specification"),
                          ([f"--cpus-per-task={cpus + 1}"], "More processors requested than permitted")):
        proc = _run("sbatch", "--parsable", f"--chdir={tmp_path}", *opts, "--wrap", "true", env=slurm_env,
                    check=False)
        assert proc.returncode != 0 and message in proc.stderr, (opts, proc.stdout, proc.stderr)

"""Hostile input through the real CLI: every case exits 2 with one clear first line (file, key path, fix),
never a traceback, and writes nothing; job scripts rendered from odd-but-valid input never run an injected line.
"""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from conftest_scaffold import small_design, write_design
from hostile_cases import (
    BAD_DATA_FILES, BAD_TASK_SCRIPTS, DANGEROUS_DIRS, HOSTILE, JOBS_DAMAGED, LATE, PWNED, SCAFFOLD_TOO,
    SETTINGS_NOT_UTF8, SETTINGS_TEXTS, write_bad_file,
)

from cruijff_kit.errors import UserError
from cruijff_kit.render import render

def first_error(stderr: str) -> str:
    """The first line that is neither progress (`[scaffold] ...`) nor a warning."""
    lines = [line for line in stderr.splitlines() if not line.startswith(("[", "warning:"))]
    assert lines, stderr
    return lines[0]


def assert_one_line(proc, path, where: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    first = first_error(proc.stderr)
    assert first.startswith(f"{path}: "), first
    assert where in first and "; " in first, first  # file, key path, what is wrong; the fix


@pytest.mark.parametrize("name,fn,where", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_design_is_one_line_exit_2(name, fn, where, tmp_path, scratch, cli):
    design = small_design(tmp_path)
    fn(design)
    path = write_design(tmp_path, design)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    verbs = ("validate", "scaffold") if name in SCAFFOLD_TOO else ("validate",)
    for verb in verbs:
        assert_one_line(cli(verb, str(path)), path, where)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing may be written"
    for i in (1, 2):
        assert not __import__("os").path.exists(PWNED.format(i))


def test_at_least_twenty_hostile_designs():
    assert len(HOSTILE) >= 20


@pytest.mark.parametrize("text", SETTINGS_TEXTS)
def test_hostile_settings_are_one_line(text, tmp_path, cli):
    settings = tmp_path / "claude.local.md"
    settings.write_text(text)
    proc = cli("config", "show", env={"CK_SETTINGS": str(settings)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    first = proc.stderr.splitlines()[0]
    # like a compiler (and every other settings error): claude.local.md:LINE: label: 'value' what is wrong; the fix
    assert re.match(rf"{re.escape(str(settings))}:\d+: [a-z_ ]+: '", first) and "; " in first, first
    assert first.isprintable(), first


def test_settings_not_utf8_is_one_line(tmp_path, cli):
    settings = tmp_path / "claude.local.md"
    settings.write_bytes(SETTINGS_NOT_UTF8)
    proc = cli("config", "show", env={"CK_SETTINGS": str(settings)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == f"{settings}:1: not UTF-8 text: byte 0xff at offset 26; save the file as UTF-8"


# -- render-time guard -----------------------------------------------------------------------------
def _job(**changes) -> str:
    ctx = dict(job_name="r.train", job_id="r.train", log="/x/slurm-%j.out", source="/x/experiment_summary.yaml",
               exit_code_file="/x/.ck/r.exitcode", workdir="/x", python="python", runner="m", config_file="c.yaml",
               res={"time": "01:00:00", "cpus": 4, "mem": "8G", "gpus": 1, "account": "a", "partition": "p",
                    "constraint": "c"},
               env={"module_loads": [], "conda_env": "", "venv": "", "exports": {}, "wandb_mode_default": "offline"})
    for key, value in changes.items():
        if key in ctx["res"]:
            ctx["res"] = {**ctx["res"], key: value}
        else:
            ctx[key] = value
    return render("inspect/inspect.slurm.j2", **ctx)


@pytest.mark.parametrize("key", ["job_name", "job_id", "log", "source", "time", "mem", "account", "partition",
                                 "constraint", "cpus", "gpus"])
def test_sbatch_value_filter_refuses_control_characters(key):
    _job()  # the benign context renders
    with pytest.raises(UserError) as exc:
        _job(**{key: "x\ntouch /tmp/ck-pwned"})
    assert "contains a newline and cannot go into a job script" in exc.value.lines()[0]


def _executed_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_rendered_scripts_run_no_injected_line(tmp_path, scratch, cli):
    """Odd but valid free text (prompts with newlines, quotes, $(...)) never adds a line a shell runs."""
    plain = tmp_path / "plain"
    odd = tmp_path / "odd"
    for folder, prompt, system in ((plain, "Numbers: {input}", "s"),
                                   (odd, "$(touch /tmp/ck-pwned-3)\n`id`\n{input}';id;'", "\n; id #\n$(id)")):
        folder.mkdir()
        design = small_design(folder)
        design["controls"].update(prompt=prompt, system_prompt=system)
        proc = cli("scaffold", str(write_design(folder, design)))
        assert proc.returncode == 0, proc.stderr
    scripts = sorted(p.relative_to(plain) for p in plain.rglob("*.slurm"))
    assert len(scripts) == 6  # 2 finetune + 4 eval cells
    for rel in scripts:
        a, b = (plain / rel).read_text(), (odd / rel).read_text()
        subprocess.run(["bash", "-n", str(odd / rel)], check=True)
        norm = [line.replace(str(plain), "<d>") for line in _executed_lines(a)]
        assert [line.replace(str(odd), "<d>") for line in _executed_lines(b)] == norm, rel
        sbatch = [line for line in b.splitlines() if line.startswith("#SBATCH")]
        assert len(sbatch) >= 3, rel  # job name, time, memory at least: the check below is not vacuous
        for line in sbatch:
            assert re.fullmatch(r"#SBATCH --[a-z-]+=\S+", line), line
        assert "touch" not in b and "`id`" not in b


def test_design_copy_keeps_the_odd_prompt(tmp_path, scratch):
    from cruijff_kit.experiment.load import load_experiment

    design = small_design(tmp_path)
    design["controls"]["prompt"] = "line one\n{input}\n$(id)"
    exp = load_experiment(write_design(tmp_path, design))
    assert exp.controls.prompt == "line one\n{input}\n$(id)"
    assert yaml.safe_load(yaml.safe_dump({"p": exp.controls.prompt}))["p"] == exp.controls.prompt


# -- the experiment directory ----------------------------------------------------------------------
@pytest.mark.parametrize("target", DANGEROUS_DIRS)
def test_dangerous_experiment_dir_is_refused(target, tmp_path, scratch, cli):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious\n")
    design = small_design(tmp_path)
    design["experiment"]["dir"] = str(home) if target == "~" else target
    path = write_design(tmp_path, design)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for args in (("scaffold", str(path)), ("design", "verify", str(path))):
        proc = cli(*args, env={"HOME": str(home)})
        assert_one_line(proc, path, "experiment.dir: ")
        assert "Traceback" not in proc.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "nothing may be written"


def test_busy_folder_with_force_and_owned_folders(tmp_path, scratch, cli):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    design = small_design(tmp_path)
    design["experiment"]["dir"] = "busy"
    path = write_design(tmp_path, design)
    assert cli("scaffold", str(path)).returncode == 2
    proc = cli("scaffold", str(path), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (busy / ".ck" / "manifest.json").is_file() and (busy / "notes.txt").read_text() == "mine\n"
    assert cli("scaffold", str(path)).returncode == 0  # ours now: no --force needed


def test_design_verify_claims_only_its_own_folder(tmp_path, scratch, cli):
    design = small_design(tmp_path)
    path = write_design(tmp_path, design)
    proc = cli("design", "verify", str(path))
    assert "Traceback" not in proc.stderr
    exp = tmp_path / "exp"
    assert (exp / ".ck").is_dir() and (exp / "design-experiment.log").is_file()
    proc = cli("scaffold", str(path))  # verify made it ours: scaffold may write there
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name,fn,expected", LATE, ids=[c[0] for c in LATE])
def test_late_failures_are_validate_errors(name, fn, expected, tmp_path, scratch, cli):
    design = small_design(tmp_path)
    fn(design)
    path = write_design(tmp_path, design)
    proc = cli("validate", str(path))
    assert_one_line(proc, path, "")
    assert any(line.startswith(f"{path}: {expected}") for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.parametrize("kind", BAD_TASK_SCRIPTS)
def test_hostile_task_script_is_a_one_line_error(kind, tmp_path, scratch, cli):
    design = small_design(tmp_path)
    write_bad_file(tmp_path / "numbers_task.py", kind)
    path = write_design(tmp_path, design)
    for args in (("scaffold", str(path)), ("design", "verify", str(path), "--no-log")):
        proc = cli(*args, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert any("numbers_task.py" in line for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.parametrize("kind", BAD_DATA_FILES)
def test_hostile_data_file_is_one_line(kind, tmp_path, scratch, cli):
    design = small_design(tmp_path)
    data = tmp_path / "data" / "numbers.json"
    write_bad_file(data, kind)
    path = write_design(tmp_path, design)
    # scaffold: a file it can read but not use is an error; a FIFO is never opened (it would block): a warning
    proc = cli("scaffold", str(path), timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith(f"{path}: data.training.path: {data}")]
    if kind == "fifo":
        assert proc.returncode == 0, proc.stderr
        assert f"warning: {path}: data.training.path: {data}" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 2 and said and "; fix the data file" in said[0], proc.stderr
    # design verify reads the file and names it (its models are missing too: that must not be all it says)
    proc = cli("design", "verify", str(path), "--no-log", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = next((ln for ln in proc.stderr.splitlines() if "verify_dataset" in ln), "")
    assert line.startswith(f"{path}: data.training.path: verify_dataset numbers.json: {data}: "), proc.stderr
    assert "; write it as UTF-8 JSON" in line, line
    models = [ln for ln in proc.stderr.splitlines() if "verify_model" in ln]
    assert models and all("; put the model's HF files" in ln for ln in models), proc.stderr


@pytest.mark.parametrize("content", JOBS_DAMAGED)
def test_corrupt_jobs_json_is_one_line(content, tmp_path):
    from cruijff_kit.experiment.jobs import read_jobs

    (tmp_path / "jobs.json").write_bytes(content)
    with pytest.raises(UserError) as exc:
        read_jobs(tmp_path)
    line = exc.value.lines()[0]
    assert line.startswith(str(tmp_path / "jobs.json")) and "; " in line and "\n" not in line


def test_missing_task_script_warns_in_validate_and_stops_scaffold(tmp_path, scratch, cli):
    design = small_design(tmp_path)
    (tmp_path / "numbers_task.py").unlink()
    path = write_design(tmp_path, design)
    proc = cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "task script not found" in proc.stderr
    proc = cli("scaffold", str(path))
    assert_one_line(proc, path, "evaluation.tasks[0].script: task script not found")


def test_design_that_is_a_fifo_is_refused_at_once(tmp_path, cli):
    import os

    fifo = tmp_path / "experiment_summary.yaml"
    os.mkfifo(fifo)
    for verb in ("validate", "scaffold"):
        proc = cli(verb, str(fifo), timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert first_error(proc.stderr) == f"{fifo}: is not a regular file; pass an experiment_summary.yaml"


def test_exit_file_records_128_plus_signal_when_the_job_is_killed(tmp_path):
    """SLURM's time limit sends TERM to the batch shell and its children: the exit-code file must say 143."""
    import os
    import signal
    import sys
    import time

    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(60)\n")
    script = tmp_path / "job.sh"
    script.write_text(_job(workdir=str(tmp_path), exit_code_file=str(tmp_path / "job.exitcode"),
                           python=sys.executable, runner="sleeper"))
    proc = subprocess.Popen(["bash", str(script)], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:  # until the payload runs (pgrep: the job's session only)
        if subprocess.run(["pgrep", "-f", "-s", str(proc.pid), "sleeper"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)  # the batch shell first, then the rest of the job
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert (tmp_path / "job.exitcode").read_text().strip() == "143"


def test_a_full_disk_is_one_line_and_writes_nothing_half(tmp_path, scratch):
    """Writes failing past a 4 KiB file-size limit (EFBIG, as a full disk gives ENOSPC): no traceback."""
    import os
    import sys

    design = small_design(tmp_path)
    path = write_design(tmp_path, design)
    shell = f"trap '' XFSZ; ulimit -f 4; exec {sys.executable} -m cruijff_kit scaffold {path}"
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert first_error(proc.stderr).startswith("cruijff-kit: cannot write: File too large; free disk space"), proc.stderr
    # all or nothing: files are written to temporaries and renamed into place only when every one was written
    in_place = [p.name for p in (tmp_path / "exp").rglob("*") if p.is_file() and not p.name.endswith(".ck-tmp")]
    assert in_place == [], in_place


def test_numeric_keys_beside_names_are_unknown_keys_not_a_crash(tmp_path, scratch, cli):
    """YAML 1.2 reads `1e100:` as a float key; sorting it with string keys crashed validate (fuzz, 5/1000)."""
    design = small_design(tmp_path)
    path = write_design(tmp_path, design)
    path.write_text(path.read_text().replace("controls:\n", "controls:\n  1e100: true\n  7b: []\n", 1))
    proc = cli("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(ln.startswith(f"{path}: controls.1e+100: unknown key; ") for ln in lines), proc.stderr
    assert any(ln.startswith(f"{path}: controls.7b: unknown key; ") for ln in lines), proc.stderr

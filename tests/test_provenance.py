"""provenance.json: written inside each job, next to compute.json: what the job was made from."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from conftest_scaffold import small_design, write_design

from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings

from conftest import REPO


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_provenance_tool_records_hashes_versions_and_commit(tmp_path):
    data = tmp_path / "d.json"
    data.write_text('{"train": [{"input": "1", "output": "2"}]}')
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    out = tmp_path / "run" / "provenance.json"
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.tools.provenance", str(out), "--file", f"dataset={data}",
                           "--file", f"task_script={tmp_path / 'gone.py'}", "--model", f"base_model={model}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["files"]["dataset"]["sha256"] == _sha(data) and record["files"]["dataset"]["bytes"] == len(
        data.read_bytes())
    assert record["files"]["task_script"]["missing"] is True  # recorded, never a failure of the job
    assert record["models"]["base_model"]["config_sha256"] == _sha(model / "config.json")
    assert record["models"]["base_model"]["weights"] == [{"file": "model.safetensors", "bytes": 64}]
    assert set(record["packages"]) >= {"torch", "torchtune", "inspect-ai", "transformers", "cruijff-kit"}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert record["cruijff_kit"]["commit"] == head.stdout.strip()


def test_every_job_script_writes_provenance_next_to_compute_json(tmp_path, scratch):
    o = scaffold(write_design(tmp_path, small_design(tmp_path)), settings=load_settings(), quiet=True)
    scripts = sorted(o.exp.dir.glob("*/finetune.slurm")) + sorted(o.exp.dir.glob("*/eval/*/inspect.slurm"))
    assert len(scripts) == 6
    for script in scripts:
        text = script.read_text().splitlines()
        lines = [line for line in text if "cruijff_kit.tools.provenance" in line]
        assert len(lines) == 1, script
        # run exactly that line where the job runs (its workdir: the folder of the script and of compute.json),
        # after the job's own environment activation: the line calls the activated env's `python`
        activate = [line for line in text if line.startswith("source ") and "/bin/activate" in line]
        proc = subprocess.run(["bash", "-c", "\n".join(activate[:1] + lines)], cwd=script.parent,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        record = json.loads((script.parent / "provenance.json").read_text())
        assert record["files"]["dataset"]["sha256"] == _sha(tmp_path / "data" / "numbers.json")
        if script.name == "inspect.slurm":
            assert record["files"]["task_script"]["sha256"] == _sha(tmp_path / "numbers_task.py")
            assert "model" in record["models"]
        else:
            assert record["models"]["base_model"]["path"].endswith("Llama-3.2-1B-Instruct") or \
                record["models"]["base_model"]["path"].endswith("Qwen2.5-3B")


def test_rescaffold_keeps_the_files_submitted_jobs_ran_with(tmp_path, scratch, cli):
    design = small_design(tmp_path)
    path = write_design(tmp_path, design)
    assert cli("scaffold", str(path)).returncode == 0
    exp = tmp_path / "exp"
    ran = {f: (exp / "llama_r4" / f).read_bytes() for f in ("finetune.slurm", "finetune.yaml", "setup_finetune.yaml")}
    other = (exp / "qwen_base_r8" / "finetune.yaml").read_bytes()
    (exp / ".ck" / "state.json").write_text(json.dumps({"jobs": {
        "llama_r4.train": {"state": "completed", "native_id": "local-1", "submitted": "2026-01-01T00:00:00"},
        "qwen_base_r8.train": {"state": "pending", "native_id": None, "submitted": None}}}))
    design["controls"]["lr"] = 0.0005  # changes every finetune.yaml
    write_design(tmp_path, design)
    proc = cli("scaffold", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "kept as submitted" in proc.stdout and "llama_r4/finetune.yaml" in proc.stdout
    assert {f: (exp / "llama_r4" / f).read_bytes() for f in ran} == ran
    assert (exp / "qwen_base_r8" / "finetune.yaml").read_bytes() != other  # not submitted: re-rendered
    proc = cli("scaffold", str(path), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (exp / "llama_r4" / "finetune.yaml").read_bytes() != ran["finetune.yaml"]

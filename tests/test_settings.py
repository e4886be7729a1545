"""claude.local.md parsing, defaults, sources and derived paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from cruijff_kit.cli import main as cli_main
from cruijff_kit.errors import UserError
from cruijff_kit.settings import load_settings, parse_settings

FULL = """# My cluster
## Paths
- Scratch directory: /scratch/gpfs/me
- Models directory: /scratch/gpfs/me/models

## SLURM
- SLURM account: msalganik
- **Partition**: gpu
- Constraint: `gpu80`
- Default time: 02:00:00
- Default GPUs: 1
- Full-GPU constraint: gpu80
- Shared/MIG partition: mig
- Module loads: anaconda3/2024.6, cudatoolkit/12.4
- Conda env: cruijff
- W&B entity: my-lab
- GPU hourly cost: 1.74
"""


def test_full_file():
    s = parse_settings(FULL, "/home/me/claude.local.md")
    assert s.scratch_dir == "/scratch/gpfs/me" and s.models_dir == "/scratch/gpfs/me/models"
    assert s.slurm_account == "msalganik" and s.slurm_partition == "gpu" and s.slurm_constraint == "gpu80"
    assert s.slurm_time == "02:00:00" and s.slurm_gpus == 1 and s.shared_partition == "mig"
    assert s.module_loads == ["anaconda3/2024.6", "cudatoolkit/12.4"] and s.conda_env == "cruijff"
    assert s.wandb_entity == "my-lab" and s.gpu_hourly_cost == 1.74
    assert s.executor == "slurm"  # an account implies a cluster
    assert s.sources["slurm_partition"] == "/home/me/claude.local.md:8"
    assert s.experiment_dir("x") == Path("/scratch/gpfs/me/ck-experiments/x")
    assert s.experiment_dir("x", "sanity_check") == Path("/scratch/gpfs/me/ck-sanity-checks/x")
    assert s.output_dir("exp", "run1") == Path("/scratch/gpfs/me/ck-outputs/exp/ck-out-run1")


def test_missing_fields_fall_back_to_defaults():
    s = parse_settings("- Scratch directory: /tmp/s\n- Conda env: <your env>\n", "c.md")
    assert s.slurm_account == "" and s.executor == "local" and s.conda_env == ""
    assert s.models == Path("/tmp/s/models")
    assert "slurm_account" not in s.sources


def test_no_file_gives_local_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("CK_SETTINGS", raising=False)
    monkeypatch.delenv("CK_SCRATCH", raising=False)
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.scratch == tmp_path / "ck-scratch" and s.executor == "local" and s.source_file == ""


def test_bad_number_is_a_user_error():
    with pytest.raises(UserError) as err:
        parse_settings("- Default GPUs: two\n", "c.md")
    assert err.value.lines()[0] == "c.md:1: default gpus: 'two' is not a whole number; write e.g. `- Default GPUs: 1`"


def test_config_show_names_sources(tmp_path, monkeypatch, capsys):
    path = tmp_path / "claude.local.md"
    path.write_text("- Scratch directory: /tmp/scr\n- SLURM account: lab\n")
    monkeypatch.setenv("CK_SETTINGS", str(path))
    monkeypatch.delenv("CK_SCRATCH", raising=False)
    assert cli_main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "scratch_dir" in out and f"[{path}:1]" in out and "slurm_account" in out and f"[{path}:2]" in out
    assert "/tmp/scr/ck-experiments" in out


def test_example_file_parses(repo):
    example = repo / "claude.local.md.example"
    if not example.exists():
        pytest.skip("claude.local.md.example not written yet")
    s = parse_settings(example.read_text(), str(example))
    assert s.scratch_dir and s.sources

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


# -- settings that survive real templates ([compat] item 3) ---------------------------------------
UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream" / "claude.local.upstream.md"


@pytest.mark.parametrize("raw, value", [
    ("(none)", None), ("<partition>", None), ("TBD", None), ("N/A", None), ("", None), ("none", None),
    ("`<your_slurm_account>`", None), ("/scratch/gpfs/<group>/<user>", None), ("-", None), ("?", None),
    ("gpu  (use 'mig' for small jobs)", "gpu"), ("`gpu80` (e.g. 80GB cards)", "gpu80"),
    ("gpu80 — full card", "gpu80"), ("0:59:00 # under an hour", "0:59:00"), ("'cruijff'", "cruijff"),
    ("`cruijff` (recommended)", "cruijff"),
])
def test_clean_value(raw, value):
    from cruijff_kit.settings import clean_value

    assert clean_value(raw)[0] == value


def test_prose_after_value_is_dropped_and_reported():
    s = parse_settings("- Partition: gpu  (use 'mig' for small jobs)\n- Default time: 02:00:00 (two hours)\n", "c.md")
    assert s.slurm_partition == "gpu" and s.slurm_time == "02:00:00"
    assert [u[2] for u in s.unused] == ["kept 'gpu', ignored \"(use 'mig' for small jobs)\"",
                                        "kept '02:00:00', ignored '(two hours)'"]


def test_upstream_file():
    s = parse_settings(UPSTREAM.read_text(), str(UPSTREAM))
    assert s.scratch_dir == "/tmp/ck-upstream-scratch/SOCLAB/rs1234"
    assert s.models_dir == "/tmp/ck-upstream-scratch/SOCLAB/pretrained-llms"
    assert s.slurm_account == "soclab" and s.executor == "slurm"
    assert s.slurm_partition == "" and "slurm_partition" not in s.sources  # (none)
    assert s.slurm_constraint == "gpu80" and s.slurm_time == "0:59:00" and s.slurm_gpus == 1
    assert s.full_gpu_constraint == "gpu80" and s.shared_partition == "nomig"
    assert s.conda_env == "cruijff" and s.sources["conda_env"].endswith(":27")
    assert s.module_loads == ["anaconda3/2025.6", "cudatoolkit/12.6"]
    assert s.wandb_entity == ""  # a placeholder
    why = {line.split("**")[1]: reason for _, line, reason in s.unused if "**" in line}
    assert why["Partition"] == "placeholder: left unset" and why["Entity"] == "placeholder: left unset"
    assert why["Cluster"] == "informational, not a setting"
    assert why["Favourite colour"] == "label not understood"


def test_upstream_wandb_entity_and_env_name_by_section():
    text = "## Weights & Biases\n- **Entity**: `my-lab`\n## Conda Environment Setup\n**Environment name**: `ck`\n"
    s = parse_settings(text, "c.md")
    assert s.wandb_entity == "my-lab" and s.conda_env == "ck"
    assert parse_settings("## Other\n- Entity: x\n", "c.md").wandb_entity == ""


def test_value_that_cannot_go_on_sbatch_line_is_one_line_error():
    with pytest.raises(UserError) as err:
        parse_settings("- Account: my\"lab\n", "c.md")
    assert err.value.lines() == ["c.md:1: account: 'my\"lab' cannot go on an #SBATCH line; write the bare value, "
                                 "or leave the line out to keep it unset"]
    with pytest.raises(UserError, match="not a valid default time"):
        parse_settings("- Default time: two hours\n", "c.md")
    # a number with a unit in words is not cut to the number: '2' alone is 2 minutes to SLURM, '32' 32 MB
    with pytest.raises(UserError) as err:
        parse_settings("# settings\n- Default time: 2 hours\n", "c.md")
    assert err.value.lines()[0].startswith("c.md:2: default time: '2 hours' is not a valid default time; ")
    with pytest.raises(UserError, match="'32 GB' is not a valid default mem"):
        parse_settings("- Default mem: 32 GB\n", "c.md")


def test_config_show_lists_lines_it_did_not_understand(monkeypatch, capsys):
    monkeypatch.setenv("CK_SETTINGS", str(UPSTREAM))
    monkeypatch.delenv("CK_SCRATCH", raising=False)
    assert cli_main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "lines that set nothing" in out
    assert f"{UPSTREAM}:23: placeholder: left unset: - **Partition**: (none)" in out
    assert f"{UPSTREAM}:61: label not understood: - **Favourite colour**: teal" in out


def test_every_job_script_activates_conda_and_loads_modules(tmp_path, scratch, monkeypatch):
    """Upstream's claude.local.md: each rendered job script loads the modules and activates the conda env,
    and no script carries a placeholder."""
    from conftest_scaffold import check_script, small_design, write_design

    from cruijff_kit.scaffold.scaffold import scaffold

    settings = tmp_path / "claude.local.md"
    settings.write_text(UPSTREAM.read_text().replace("/tmp/ck-upstream-scratch", str(tmp_path / "up")))
    monkeypatch.setenv("CK_SETTINGS", str(settings))
    monkeypatch.delenv("CK_SCRATCH", raising=False)
    path = write_design(tmp_path, small_design(tmp_path))
    scaffold(path, settings=load_settings(), quiet=True)
    scripts = sorted((tmp_path / "exp").rglob("*.slurm"))
    assert len(scripts) >= 5  # 2 finetune + 3 eval cells at least
    for script in scripts:
        text = script.read_text()
        assert "module load anaconda3/2025.6 ||" in text and "module load cudatoolkit/12.6 ||" in text, script
        check_script(script)
        assert "conda activate cruijff" in text, script
        assert "(none)" not in text and "<" not in text.split("set -uo pipefail")[0], script
        assert "#SBATCH --account=soclab" in text and "--partition" not in text, script


def test_non_utf8_settings_file_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "claude.local.md"
    path.write_bytes(b"- Scratch directory: /tmp/x\n- Conda env: caf\xe9\n")
    monkeypatch.setenv("CK_SETTINGS", str(path))
    assert cli_main(["config", "show"]) == 2
    assert capsys.readouterr().err.strip() == f"{path}:2: not UTF-8 text: byte 0xe9 at offset 44; save the file as UTF-8"

"""`epochs: best` / `last` in the evaluation matrix: accepted forms, one-line errors for bad ones, cells with
stable names whose jobs follow training, the stand-in checkpoint every verb handles, and the resolution in
the eval job (the rule pick_epoch uses, recorded in resolved_epoch.json) that summarize shows."""
from __future__ import annotations

import json

import pytest
import yaml

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.epochs import epoch_text, job_epoch, row_epochs
from cruijff_kit.experiment.jobs import read_jobs
from cruijff_kit.experiment.load import load_experiment

from conftest_eval import design
from conftest_scaffold import ck

FT = {"name": "ft", "type": "fine-tuned", "model": "tiny-llama"}
CTL = {"name": "ctl", "type": "control", "model": "tiny-llama"}


def _design(tmp_path, epochs, *, runs=None, controls=None, extra_rows=()):
    return design(tmp_path, runs=runs or [FT, CTL], controls=controls,
                  matrix=[{"run": "ft", "tasks": ["const"], "epochs": epochs},
                          {"run": "ctl", "tasks": ["const"], "epochs": None}, *extra_rows])


# -- accepted forms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs, dirnames", [
    ("best", ["const_epoch_best"]),
    ("last", ["const_epoch_last"]),
    ([0, 1], ["const_epoch0", "const_epoch1"]),
    ([0, "best", "last"], ["const_epoch0", "const_epoch_best", "const_epoch_last"]),
])
def test_good_epoch_forms_load_into_cells(tmp_path, scratch, capsys, epochs, dirnames):
    path = _design(tmp_path, epochs)
    res = ck(capsys, "validate", str(path))
    assert res.returncode == 0, res.stderr
    exp = load_experiment(path)
    assert [c.dirname for c in exp.cells() if c.run == "ft"] == dirnames
    assert [c.dirname for c in exp.cells() if c.run == "ctl"] == ["const"]


def test_row_epochs_and_epoch_text():
    assert row_epochs({"epochs": "best"}) == ["best"] and row_epochs({"epochs": None}) == [None]
    assert row_epochs({"epochs": [0, "last"]}) == [0, "last"]
    assert [epoch_text(None), epoch_text(1), epoch_text("best"), epoch_text("best", 1), epoch_text("last", 3)] == \
        ["base", "1", "best", "best (1)", "last (3)"]


# -- bad forms: one line each, exit 2, no traceback ----------------------------------------------------
BAD = [
    ("bestest", None, "evaluation.matrix[0].epochs: 'bestest' is not valid here; did you mean best?"),
    (["best", "lastt"], None, "evaluation.matrix[0].epochs[1]: 'lastt' is not valid here; did you mean last?"),
    ([0, 2], None, "evaluation.matrix[0].epochs[1]: epoch 2 does not exist (ft trains 2 epochs)"),
    (["best", "best"], None, "evaluation.matrix[0].epochs[1]: best is listed twice (also epochs[0])"),
    ([], None, "evaluation.matrix[0].epochs: [] is not valid here"),
    ("best", {"validation_during_training": False},
     "evaluation.matrix[0].epochs: best needs validation losses but ft sets validation_during_training: false"),
]


@pytest.mark.parametrize("epochs, controls, expected", BAD, ids=[str(b[0]) + ("-noval" if b[1] else "") for b in BAD])
def test_bad_epoch_forms_give_one_line(tmp_path, scratch, capsys, epochs, controls, expected):
    path = _design(tmp_path, epochs, controls=controls)
    res = ck(capsys, "validate", str(path))
    assert res.returncode == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("warning")]
    assert "Traceback" not in res.stderr
    assert len(errors) == 1 and expected in errors[0], res.stderr


def test_control_cannot_name_best(tmp_path, scratch, capsys):
    path = design(tmp_path, runs=[FT, CTL], matrix=[{"run": "ft", "tasks": ["const"], "epochs": [1]},
                                                    {"run": "ctl", "tasks": ["const"], "epochs": "best"}])
    res = ck(capsys, "validate", str(path))
    assert res.returncode == 2 and "evaluation.matrix[1].epochs: control runs are evaluated once" in res.stderr


def test_last_and_its_number_warn_of_a_double_evaluation(tmp_path, scratch, capsys):
    res = ck(capsys, "validate", str(_design(tmp_path, [1, "last"])))
    assert res.returncode == 0
    assert "evaluation.matrix[0].epochs[1]: last is epoch 1 of ft, also listed: evaluated twice" in res.stderr


# -- scaffold, run --dry-run, status, expand, summary: the cells exist before their epoch is known --------
@pytest.fixture
def scaffolded(tmp_path, scratch, capsys):
    path = _design(tmp_path, [0, "best", "last"])
    res = ck(capsys, "scaffold", str(path))
    assert res.returncode == 0, res.stderr
    return tmp_path / "exp", scratch / "ck-outputs" / "evx" / "ck-out-ft", path


def test_scaffold_renders_stand_in_checkpoints_after_training(scaffolded):
    exp_dir, out, _ = scaffolded
    jobs = {j.id: j for j in read_jobs(exp_dir)}
    for which in ("best", "last"):
        job = jobs[f"ft.eval.const_epoch_{which}"]
        assert job.after == ["ft.train"] and job.epoch == which and job.meta["cell"] == f"const_epoch_{which}"
        config = yaml.safe_load((exp_dir / job.meta["config"]).read_text())
        assert config["model_path"] == str(out / f"epoch_{which}") and config["epoch"] == which
        assert config["vis_label"] == f"ft_epoch_{which}"
        assert f"--model model={out / f'epoch_{which}'}" in (exp_dir / job.script).read_text()  # provenance
    assert yaml.safe_load((exp_dir / "ft/eval/const_epoch0/eval_config.yaml").read_text())["model_path"] == \
        str(out / "epoch_0")


def test_design_summary_lists_the_named_cells(scaffolded, capsys):
    exp_dir, _, path = scaffolded
    res = ck(capsys, "design", "summary", str(path))
    assert res.returncode == 0, res.stderr
    summary = (exp_dir / "experiment_summary.md").read_text()
    assert "| ft | const | best | - |" in summary and "`<run>/eval/<task>_epoch_best/`" in summary
    assert "| ft | const | best | pending | - |" in summary and "| ft | const | last | pending | - |" in summary


def test_dry_run_and_status_list_the_cells(scaffolded, capsys):
    exp_dir, out, _ = scaffolded
    res = ck(capsys, "run", str(exp_dir), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "ft.eval.const_epoch_best" in res.stdout and "ft.eval.const_epoch_last" in res.stdout
    res = ck(capsys, "status", str(exp_dir), "--json")
    jobs = {j["id"]: j for j in json.loads(res.stdout)["jobs"]}
    assert jobs["ft.eval.const_epoch_best"]["epoch"] == "best"
    assert jobs["ft.eval.const_epoch_best"]["resolved_epoch"] is None  # not run yet
    assert jobs["ft.eval.const_epoch0"]["resolved_epoch"] == 0
    # once the job recorded its pick, status shows it
    cell = layout.cell_dir(exp_dir, "ft", "const_epoch_best")
    layout.resolved_epoch_file(cell).write_text(json.dumps({"epoch": "best", "resolved_epoch": 1}))
    res = ck(capsys, "status", str(exp_dir))
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("ft.eval.const_epoch_best"))
    assert line.endswith("best = epoch 1")
    job = next(j for j in read_jobs(exp_dir) if j.id == "ft.eval.const_epoch_best")
    assert job_epoch(exp_dir, job) == ("best", 1)


def test_design_verify_and_expand_keep_named_epochs(scaffolded, capsys):
    _, _, path = scaffolded
    data = yaml.safe_load(path.read_text())
    data["variables"] = {"lora_rank": [8]}
    data["runs"] = [{**FT, "name": "tiny-llama_rank8"}]
    data["evaluation"]["matrix"] = [{"run": "tiny-llama_rank8", "tasks": ["const"], "epochs": ["best", "last"]}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    res = ck(capsys, "design", "expand", str(path), "--force")
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(path.read_text())["evaluation"]["matrix"] == [
        {"run": "tiny-llama_rank8", "tasks": ["const"], "epochs": ["best", "last"]}]
    res = ck(capsys, "design", "verify", str(path))
    assert "Traceback" not in res.stderr and "epochs" not in res.stderr, res.stderr


def test_prompts_reads_the_tokenizer_of_a_stand_in_checkpoint(scaffolded, tmp_path):
    from cruijff_kit.workers.inspect.prompts import _tokenizer_dir

    _, out, _ = scaffolded
    base = tmp_path / "base"
    base.mkdir()
    (base / "tokenizer.json").write_text("{}")
    config = {"model_path": str(out / "epoch_best"), "base_model_path": str(base)}
    assert _tokenizer_dir(config, {}) == base  # not trained yet: the base model's tokenizer
    for e in (0, 1):
        (out / f"epoch_{e}").mkdir(parents=True)
        (out / f"epoch_{e}" / "tokenizer.json").write_text("{}")
    (out / "training_summary.json").write_text(json.dumps(
        {"epochs": [{"epoch": 0, "val_loss": 0.3}, {"epoch": 1, "val_loss": 0.9}]}))
    assert _tokenizer_dir(config, {}) == out / "epoch_0"


# -- resolution inside the eval job ----------------------------------------------------------------------
def _trained(out, losses):
    for e in range(len(losses)):
        (out / f"epoch_{e}").mkdir(parents=True)
    (out / "training_summary.json").write_text(json.dumps(
        {"epochs": [{"epoch": e, "val_loss": v} for e, v in enumerate(losses)]}))
    return out


def test_resolve_cell_picks_as_pick_epoch_and_records_it(tmp_path):
    from cruijff_kit.tools.inspect.cell_epoch import resolve_cell
    from cruijff_kit.tools.torchtune.pick_epoch import pick

    out = _trained(tmp_path / "ck-out-ft", [2.0, 0.5, 0.9])
    cells = {}
    for which in ("best", "last"):
        cell = tmp_path / "exp" / "ft" / "eval" / f"const_epoch_{which}"
        cell.mkdir(parents=True)
        config = {"run": "ft", "cell": cell.name, "epoch": which, "model_path": str(out / f"epoch_{which}"),
                  "_path": str(cell / "eval_config.yaml")}
        cells[which] = (resolve_cell(config), json.loads((cell / "resolved_epoch.json").read_text()))
    (best, best_record), (last, last_record) = cells["best"], cells["last"]
    assert best["model_path"] == str(out / "epoch_1") and best["resolved_epoch"] == 1 == pick(out, "best")
    assert best_record["resolved_epoch"] == 1 and best_record["val_loss"] == 0.5 and best_record["epoch"] == "best"
    assert last["model_path"] == str(out / "epoch_2") and last_record["resolved_epoch"] == 2
    plain = {"run": "ft", "model_path": str(out / "epoch_0")}
    assert resolve_cell(plain) is plain


def test_best_without_validation_losses_is_one_line_naming_the_run(tmp_path):
    from cruijff_kit.tools.inspect.cell_epoch import resolve_cell
    from cruijff_kit.tools.inspect.run_cell import CellError

    out = _trained(tmp_path / "ck-out-ft", [None, None])
    with pytest.raises(CellError) as exc:
        resolve_cell({"run": "ft", "model_path": str(out / "epoch_best")})
    message = str(exc.value)
    assert "\n" not in message and "run ft recorded no validation loss" in message
    assert "validation_during_training: true" in message and "epochs: last" in message
    with pytest.raises(CellError, match="run ft: cannot pick its last epoch: .* has no epoch_N"):
        resolve_cell({"run": "ft", "model_path": str(tmp_path / "untrained" / "epoch_last")})


def test_run_cell_exits_2_with_the_line(tmp_path, capsys):
    from cruijff_kit.tools.inspect import run_cell

    out = _trained(tmp_path / "ck-out-ft", [None])
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "eval_config.yaml").write_text(yaml.safe_dump(
        {"run": "ft", "task": "const", "task_script": "t.py", "task_function": "t", "epoch": "best",
         "model_path": str(out / "epoch_best"), "log_dir": str(cell / "logs")}))
    assert run_cell.main([str(cell / "eval_config.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run ft recorded no validation loss" in err[0]
    assert not (cell / "resolved_epoch.json").exists()


def test_summarize_shows_the_resolved_epoch(scaffolded, capsys):
    from cruijff_kit.summarize.collect import collect, rows

    exp_dir, _, _ = scaffolded
    cell = layout.cell_dir(exp_dir, "ft", "const_epoch_best")
    layout.resolved_epoch_file(cell).write_text(json.dumps({"epoch": "best", "resolved_epoch": 1}))
    collected = collect(exp_dir, progress=lambda line: None)
    by_dir = {c.dirname: c for c in collected.cells}
    assert by_dir["const_epoch_best"].epoch_text == "best (1)"
    assert by_dir["const_epoch_last"].epoch_text == "last"  # not run yet
    assert by_dir["const_epoch0"].epoch_text == "0" and by_dir["const"].epoch_text == "base"
    table = {(r["run"], r["epoch"]): r["resolved_epoch"] for r in rows(collected)}
    assert table[("ft", "best")] == 1 and table[("ft", 0)] == 0 and table[("ft", "last")] is None

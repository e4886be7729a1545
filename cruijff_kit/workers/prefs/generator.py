"""Preference generation as a job: `data.preference.generate` -> `{exp dir}/prefs/prefs.slurm`.

When a design builds its preference file from a trained run (`data.preference.generate: {from_run, epoch,
source, split, k, scorer, params, max_tokens, temperature, limit, use_reference}`), scaffold renders one
job, id `prefs.{from_run}` (kind `prefs`, stage = the stage named `prefs` if the design has one, else
from_run's stage), that waits for `{from_run}.train` and runs

  cruijff-kit prefs generate --checkpoint {from_run output_dir}/epoch_N --dataset SOURCE --out data.preference.path ...

with from_run's prompt, system prompt, dataset type (base models: text_completion), seed, device and dtype,
once per split needed (the generate split, plus `validation` when a DPO run reading the file validates).
`epoch: best` is resolved inside the job (cruijff_kit.tools.torchtune.pick_epoch). Every dpo run reading
that preference file gets `after: ["prefs.{from_run}"]` as well as its base_run's train job.

  check(exp, settings, problems)   scaffold-time problems (from_run that does not train, bad epoch, ...)
  render(exp, settings, files, jobs) -> list[JobSpec]   adds prefs/prefs.slurm, links the dpo jobs
"""
from __future__ import annotations

import json

from cruijff_kit.errors import ProblemList
from cruijff_kit.experiment import layout
from cruijff_kit.experiment.model import Experiment
from cruijff_kit.experiment.resolve import epoch_choice, resolve_run
from cruijff_kit.experiment.jobs import JobSpec
from cruijff_kit.jobscript import job_environment
from cruijff_kit.render import render as render_template
from cruijff_kit.settings import Settings

SCRIPT = layout.PREFS_SCRIPT
AT = "data.preference.generate"


def generate_spec(exp: Experiment) -> dict | None:
    ds = exp.preference_data
    return ds.generate if ds is not None and ds.generate else None


def job_id(exp: Experiment) -> str:
    return f"prefs.{generate_spec(exp)['from_run']}"


def _epoch(exp: Experiment, gen: dict) -> tuple[int, bool]:
    """(epoch number, best?) of from_run's checkpoint to sample from."""
    return epoch_choice(exp.run(gen["from_run"]), gen.get("epoch", "last"))


def consumers(exp: Experiment) -> list:
    """The runs that train on the generated preference file (their type's data key is `preference`)."""
    path = str(exp.preference_data.file_for("")) if exp.preference_data else ""
    return [r for r in exp.runs if r.kind.data_key == "preference" and str(exp.dataset_file(r)) == path]


def check(exp: Experiment, settings: Settings, problems: ProblemList) -> None:
    gen = generate_spec(exp)
    if gen is None:
        return
    try:
        run = exp.run(gen["from_run"])
    except KeyError:
        return  # load already reported the unknown run
    if not run.trains:
        problems.error(f"{AT}.from_run", f"'{run.name}' is a {run.type} run and saves no checkpoint to sample from",
                       "name a fine-tuned (SFT) run")
        return
    epoch, _best = _epoch(exp, gen)
    if not 0 <= epoch < run.controls.epochs:
        problems.error(f"{AT}.epoch", f"epoch {epoch} does not exist ({run.name} trains {run.controls.epochs} epochs)",
                       f"epochs are 0-indexed: use 0..{run.controls.epochs - 1}, last or best")
    if "{dataset_label}" in exp.preference_data.path:
        problems.error("data.preference.path", "a generated preference file cannot depend on {dataset_label}",
                       "give one file name")
    if not consumers(exp):
        problems.warn(AT, "no dpo run reads the generated preference file", "add a run with type: dpo")


def _args(exp: Experiment, settings: Settings, gen: dict) -> list[str]:
    run = exp.run(gen["from_run"])
    resolved = resolve_run(exp, run, settings)
    c = run.controls
    args = ["--dataset", str(gen["source"]), "--out", str(exp.preference_data.file_for("")),
            "--prompt", c.prompt, "--system-prompt", c.system_prompt,
            "--dataset-type", resolved.dataset_type, "--seed", str(c.seed), "--device", c.device,
            "--dtype", c.dtype]
    if c.save_adapter_weights_only:  # the epoch dir holds only the adapter: name the model it applies to
        args += ["--base-model", str(resolved.model.path)]
    for key, flag in (("k", "--k"), ("scorer", "--scorer"), ("max_tokens", "--max-tokens"),
                      ("temperature", "--temperature"), ("limit", "--limit")):
        if gen.get(key) is not None:
            args += [flag, str(gen[key])]
    for key, value in (gen.get("params") or {}).items():
        text = (("true" if value else "false") if isinstance(value, bool)
                else json.dumps(value) if isinstance(value, (list, dict)) else str(value))
        args += ["--scorer-param", f"{key}={text}"]
    if gen.get("use_reference"):
        args.append("--use-reference")
    return args


def render(exp: Experiment, settings: Settings, files, jobs: list[JobSpec]) -> list[JobSpec]:
    """Add prefs/prefs.slurm; make the dpo train jobs in `jobs` wait for it. Returns [the prefs job]."""
    from cruijff_kit.workers.inspect.evaluator import cell_resources

    gen = generate_spec(exp)
    if gen is None:
        return []
    run = exp.run(gen["from_run"])
    epoch, best = _epoch(exp, gen)
    checkpoint = resolve_run(exp, run, settings).checkpoint(epoch)
    out = exp.preference_data.file_for("")
    split = gen.get("split") or "train"
    readers = consumers(exp)
    splits = [split] + (["validation"] if split != "validation" and any(
        r.controls.validation_during_training for r in readers) else [])
    stage = "prefs" if exp.stage("prefs") is not None else run.stage
    jid = job_id(exp)
    job = JobSpec(id=jid, kind="prefs", run=run.name, script=SCRIPT, after=[f"{run.name}.train"],
                  log=str(layout.job_log(exp.dir / layout.PREFS_DIR)), output_dir=str(out.parent), stage=stage,
                  epoch=None if best else epoch,
                  meta={"out": str(out), "source": str(gen["source"]), "splits": splits,
                        "checkpoint": str(checkpoint), "epoch": "best" if best else epoch,
                        "from_run": run.name})
    text = render_template(
        "prefs/prefs.slurm.j2", job_name=jid, job_id=jid, log=job.log, res=cell_resources(exp, settings, run),
        env=job_environment(settings, exp.dir), workdir=str(exp.dir), exit_code_file=str(exp.dir / job.exit_code_file),
        source=str(layout.design_file(exp.dir)), from_run=run.name, out_dir=str(out.parent),
        checkpoint=str(checkpoint), pick_best_from=str(checkpoint.parent) if best else "",
        args=_args(exp, settings, gen), splits=splits)
    files.add(SCRIPT, text, executable=True)
    names = {r.name for r in readers}
    for other in jobs:
        if other.kind == "train" and other.run in names and jid not in other.after:
            other.after.append(jid)
    return [job]


__all__ = ["check", "render", "generate_spec", "consumers", "job_id", "SCRIPT"]

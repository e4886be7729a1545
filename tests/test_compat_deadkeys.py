"""[compat] No dead keys: every leaf of the design schema changes some rendered file (the design copy
excepted) when changed, or is on a short, documented list. A key that does nothing is a bug: render it
or refuse it. Leaves under runs[].parameters mirror controls and are changed through controls."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest_scaffold import small_design, write_design

from cruijff_kit.errors import UserError
from cruijff_kit.scaffold.scaffold import scaffold
from cruijff_kit.settings import load_settings

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "cruijff_kit" / "experiment" / "schema.json").read_text())
# Leaves that describe the experiment for people (and the design copy, summary and estimates) but change
# no job file, each with why.
METADATA = {
    "experiment.question": "the research question: summary and design copy",
    "experiment.hypothesis": "summary only", "experiment.purpose": "summary only",
    "experiment.project": "summary only", "experiment.researcher": "summary only",
    "experiment.date": "summary only",
    "experiment.type": "experiment vs sanity_check: only the default directory (experiment.dir is set here)",
    "tools.preparation": "one allowed value", "tools.evaluation": "one allowed value",
    "variables": "the sweep definition; runs carry the values (design expand)",
    "models.base[].size_gb": "disk estimates in the summary",
    "data.training.format": "one allowed value", "data.training.size_kb": "estimates in the summary",
    "data.training.splits.train": "estimates in the summary",
    "data.training.splits.validation": "estimates in the summary",
    "data.training.splits.test": "estimates in the summary",
    "evaluation.tasks[].description": "summary only",
    "profiles": "applied before rendering (--profile); tested in test_compat_yaml",
    "evaluation.tasks[].prompt_sweep": "turns a refused eval prompt into a warning (test_compat_conventions)",
}
# Not walked here: they need another base design (DPO data, preference generation, stages, chained runs,
# eval-only checkpoints, explicit model components); tests/test_dpo.py, test_prefs.py, test_gates.py and
# test_scaffold.py render them. runs[].parameters.* go through the same code as controls.*.
ELSEWHERE = ("data.preference", "data.training.generate", "stages[]", "runs[].parameters.", "runs[].stage",
             "runs[].base_run", "runs[].base_epoch", "runs[].checkpoint_path", "controls.dpo_beta",
             "models.base[].component", "models.base[].registry")


def _resolve(node):
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def leaves(node=SCHEMA, path=""):
    node = _resolve(node)
    props = dict(node.get("properties", {}))
    for sub in node.get("allOf", []):
        props.update(_resolve(sub).get("properties", {}))
    if props:
        for key, child in props.items():
            yield from leaves(child, f"{path}.{key}" if path else key)
    elif node.get("type") == "array" and _resolve(node.get("items") or {}).get("properties"):
        yield from leaves(node["items"], path + "[]")
    else:
        yield path, node


def _no_validation(d):
    d["controls"]["validation_during_training"] = False


def _control_only(d):
    d["evaluation"]["matrix"] = [r for r in d["evaluation"]["matrix"] if r["run"] == "llama_base"]


def _expanded(d):
    """The base as `design expand --controls` writes it: variables x models -> runs and matrix."""
    from cruijff_kit.experiment.expand import expand

    d["models"]["base"] = d["models"]["base"][:1]
    d["variables"] = {"lora_rank": [4]}
    d.pop("runs")
    d["evaluation"].pop("matrix")
    d.update(expand(d, controls=True))


def _replicated(d):
    """controls.replicates acts where variables do: `design expand` makes the {name}_s0.. runs scaffold renders."""
    d["controls"]["replicates"] = 2
    _expanded(d)


# leaf -> change to the base design, or (prepare the base, change) (a function of the design dict); generic by type otherwise
SPECIAL = {
    "experiment.name": lambda d: d["experiment"].update(name="renamed"),
    "experiment.dir": lambda d: d["experiment"].update(dir="exp2"),
    "controls.dataset_type": lambda d: d["controls"].update(dataset_type="text_completion", system_prompt=""),
    "controls.system_prompt": lambda d: d["controls"].update(system_prompt="Other."),
    "controls.prompt": lambda d: d["controls"].update(prompt="N: {input}"),
    "controls.lora_attn_modules": lambda d: d["controls"].update(lora_attn_modules=["q_proj"]),
    "controls.device": lambda d: d["controls"].update(device="cpu", dtype="fp32"),
    "controls.max_steps_per_epoch": lambda d: d["controls"].update(max_steps_per_epoch=3),
    "controls.batch_size_val": lambda d: d["controls"].update(batch_size_val=7),
    "controls.apply_lora_to_mlp": lambda d: d["controls"].update(apply_lora_to_mlp=False),
    "controls.validation_during_training": lambda d: d["controls"].update(validation_during_training=False),
    "models.base[].name": lambda d: (d["models"]["base"][0].update(name="Llama-3.2-1B"),
                                     [r.update(model="Llama-3.2-1B", parameters={"system_prompt": ""}) for r in
                                      d["runs"] if r["model"] == "Llama-3.2-1B-Instruct"]),
    "models.base[].path": lambda d: d["models"]["base"][0].update(path="/elsewhere/Llama-3.2-1B-Instruct"),
    "data.training.path": lambda d: d["data"]["training"].update(path="data/other.json"),
    "data.training.dataset_label": lambda d: d["data"]["training"].update(dataset_label="other"),
    "output.wandb_entity": lambda d: d["output"].update(wandb_entity="lab"),
    "runs[].name": lambda d: (d["runs"][0].update(name="renamed"), d["evaluation"]["matrix"][0].update(run="renamed")),
    "runs[].type": lambda d: (d["runs"][0].update(type="control"), d["evaluation"]["matrix"][0].update(epochs=None)),
    "runs[].model": lambda d: d["runs"][0].update(model="Qwen2.5-3B", parameters={"system_prompt": ""}),
    "runs[].slurm_overrides.gpus": (_no_validation, lambda d: d["runs"][0].update(slurm_overrides={"gpus": 2})),
    "runs[].compute.gpus": (_no_validation, lambda d: d["runs"][0].update(compute={"gpus": 2})),
    "evaluation.scorers[].name": lambda d: d["evaluation"]["scorers"][0].update(name="includes", params={}),
    "evaluation.scorers[].params": lambda d: d["evaluation"]["scorers"][0].update(params={"location": "begin"}),
    "evaluation.tasks[].name": lambda d: (d["evaluation"]["tasks"][0].update(name="t2"),
                                          [r.update(tasks=["t2"]) for r in d["evaluation"]["matrix"]]),
    "evaluation.tasks[].script": lambda d: d["evaluation"]["tasks"][0].update(script="copy_task.py"),
    "evaluation.tasks[].function": lambda d: d["evaluation"]["tasks"][0].update(function="predictable_or_not_v2"),
    "evaluation.tasks[].dataset": lambda d: d["evaluation"]["tasks"][0].update(dataset="data/other.json"),
    "evaluation.tasks[].split": lambda d: d["evaluation"]["tasks"][0].update(split="train"),
    # an eval prompt must equal what a fine-tuned run trained on: it matters for runs that did not train
    "evaluation.tasks[].prompt": (_control_only, lambda d: d["evaluation"]["tasks"][0].update(prompt="Q {input}")),
    "evaluation.tasks[].system_prompt": (_control_only,
                                         lambda d: d["evaluation"]["tasks"][0].update(system_prompt="Other.")),
    "evaluation.tasks[].assistant_prefix": (_control_only,
                                            lambda d: d["evaluation"]["tasks"][0].update(assistant_prefix="A:")),
    "controls.assistant_prefix": lambda d: d["controls"].update(assistant_prefix="Answer:"),
    "evaluation.tasks[].scorers": lambda d: d["evaluation"]["tasks"][0].update(scorers=["includes"]),
    "evaluation.matrix[].run": lambda d: d["evaluation"]["matrix"].__setitem__(
        1, {"run": "qwen_base_r8", "tasks": ["next_value"], "epochs": [0]}),
    "evaluation.matrix[].tasks": lambda d: (d["evaluation"]["tasks"].append(
        {"name": "t2", "script": "numbers_task.py", "function": "predictable_or_not"}),
        d["evaluation"]["matrix"][0].update(tasks=["t2"])),
    "evaluation.matrix[].epochs": lambda d: d["evaluation"]["matrix"][0].update(epochs=[1]),
    # grouping shows only where a run has several cells per checkpoint (or epochs): two epochs, one job
    "evaluation.group": (lambda d: d["evaluation"]["matrix"][0].update(epochs=[0, 1]),
                         lambda d: d["evaluation"].update(group="run")),
    "evaluation.matrix[].vis_label": lambda d: d["evaluation"]["matrix"][0].update(vis_label="v"),
    "evaluation.temperature": lambda d: d["evaluation"].update(temperature=0.7, do_sample=True),
    "evaluation.do_sample": lambda d: d["evaluation"].update(temperature=0.7, do_sample=True),
    "controls.replicates": (_expanded, _replicated),
    # the default is true (adapter-only): the change that matters is to merged checkpoints
    "controls.save_adapter_weights_only": lambda d: d["controls"].update(save_adapter_weights_only=False),
    "evaluation.system_prompt": lambda d: (d["evaluation"].update(system_prompt=""),
                                           d["controls"].update(system_prompt="")),
}


def _generic(path: str, node: dict):
    parts = path.replace("[]", "").split(".")

    def target(d):
        cur = d
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
            if isinstance(cur, list):
                cur = cur[0]
        return cur

    def change(d):
        obj = target(d)
        key, old = parts[-1], target(d).get(parts[-1])
        if "enum" in node:
            obj[key] = next(v for v in node["enum"] if v != old)
        elif node.get("type") == "boolean" or "anyOf" in node:
            obj[key] = not old if isinstance(old, bool) else True
        elif node.get("type") in ("integer", ["integer", "null"]):
            obj[key] = (old or node.get("minimum", 1) or 1) + 1
        elif node.get("type") == "number":
            obj[key] = (old or 0.05) / 2 if node.get("maximum") else (old or 0.05) * 2
        elif key == "time":
            obj[key] = "3:00:00"
        elif key == "mem":
            obj[key] = "77G"
        else:
            obj[key] = f"{old or 'x'}2"
    return change


def rendered(tmp: Path, design: dict) -> dict:
    path = write_design(tmp, design)
    out = scaffold(path, settings=load_settings(), quiet=True, dry_run=True)
    return {rel: text for rel, (text, _) in out.files.files.items() if rel != "experiment_summary.yaml"}


def _cases():
    for path, node in leaves():
        if path in METADATA or any(path.startswith(p) for p in ELSEWHERE):
            continue
        yield pytest.param(path, SPECIAL.get(path) or _generic(path, node), id=path)


def test_every_leaf_is_walked_or_listed():
    walked = {p.id for p in _cases()}
    listed = {p for p, _ in leaves() if p in METADATA or any(p.startswith(e) for e in ELSEWHERE)}
    assert walked | listed == {p for p, _ in leaves()}


@pytest.mark.parametrize("path, change", list(_cases()))
def test_leaf_changes_a_rendered_file(path, change, tmp_path, scratch):
    import shutil

    base = small_design(tmp_path)
    shutil.copy(tmp_path / "numbers_task.py", tmp_path / "copy_task.py")
    (tmp_path / "data" / "other.json").write_text((tmp_path / "data" / "numbers.json").read_text())
    text = (tmp_path / "numbers_task.py").read_text()
    (tmp_path / "numbers_task.py").write_text(text + "\n\n@task\ndef predictable_or_not_v2(**kwargs):\n"
                                              "    return predictable_or_not(**kwargs)\n")
    if isinstance(change, tuple):
        prepare, change = change
        prepare(base)
    before = rendered(tmp_path, base)
    changed = copy.deepcopy(base)
    change(changed)
    try:
        after = rendered(tmp_path, changed)
    except UserError as exc:
        pytest.fail(f"{path}: the changed design does not scaffold: {exc.lines()[:3]}")
    assert after != before, f"{path} changed nothing that scaffold renders: render it or refuse it"

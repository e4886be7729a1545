"""Upstream cruijff_kit 0.3.x files -> ours (the `cruijff-kit migrate` verb is design/migrate.py).

Three kinds of file: an experiment_summary.yaml (design), a setup_finetune.yaml and a claude.local.md.
Designs and setup files are edited line by line (a key renamed in place, a line removed, a line added),
never round-tripped through a YAML dumper, so comments and layout survive. Every change is printed with
its reason; whatever has no equivalent here is named, never dropped silently. `--write` keeps the
original as FILE.bak and replaces FILE atomically. claude.local.md needs no rewrite (settings.py reads
upstream's format as is): migrate shows how each line was read.

The tables below are also what `validate` and `setup_finetune` consult to say "upstream key: run migrate".
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.errors import UserError

MIGRATE_HINT = "run `cruijff-kit migrate FILE` (prints every change; --write applies them)"
STANDARD_CHECKPOINTS = "ck-out-{run_name}/epoch_{N}"

# design key path (regex on a key path such as runs[2].parameters.x) -> what became of it upstream-side
DESIGN_KEYS = [
    (r"experiment\.directory", "upstream key, now experiment.dir"),
    (r"experiment\.seed", "upstream key, now controls.seed"),
    (r"evaluation\.scorer", "upstream key, now evaluation.scorers (a list of {name, params})"),
    (r"data\.training\.label", "upstream key, now data.training.dataset_label"),
    (r"output\.base_directory", "upstream key; outputs always go to {scratch}/ck-outputs/{experiment}"),
    (r"output\.checkpoint_pattern", f"upstream key; checkpoints always go to {STANDARD_CHECKPOINTS}"),
    (r"data\.data_generation", "upstream key; cruijff_kit has no tabular-to-text generator"),
    (r"runs\[\d+\]\.parameters\.(eval_)?dataset_path", "upstream key; a run's data is data.training.path "
     "with {dataset_label}"),
]
# setup_finetune.yaml: upstream key -> our key (value kept)
SETUP_RENAMES = {"torchtune_model_name": "model_name", "cpus_per_task": "cpus", "base_recipe": "custom_recipe"}
SETUP_DROPPED = {
    "input_key": "our data files hold `input`/`output` fields",
    "output_key": "our data files hold `input`/`output` fields",
    "training_samples": "no subset option: cut the data file, or set max_steps_per_epoch for about "
                        "that many samples per epoch",
}
_RECIPE = re.compile(r"^(?:[\w.]*\.)?lora_(finetune|dpo)_(single_device|distributed)(?:_val)?"
                     r"(?:_(?:stable|nightly|distributed_stable))+(?:\.py)?$")  # stock names stay torchtune's


def upstream_hint(path: str) -> tuple[str, str] | None:
    """(message, hint) when a design key path is an upstream cruijff_kit key, else None."""
    for pattern, message in DESIGN_KEYS:
        if re.fullmatch(pattern, path):
            return message, MIGRATE_HINT
    return None


def recipe_name(value: str) -> str:
    """Upstream recipe names (`..._nightly`, `..._stable`, `..._distributed_stable`) -> ours; '' if not one."""
    m = _RECIPE.match(str(value).strip())
    if not m:
        return ""
    if m.group(2) == "distributed":
        return "lora_finetune_distributed"
    return f"cruijff_kit.tools.torchtune.custom_recipes.lora_{m.group(1)}_single_device_val"


# -- the edit model --------------------------------------------------------------------------------
@dataclass
class Migration:
    path: Path
    kind: str  # design | setup | settings
    lines: list[str]
    changes: list[str] = field(default_factory=list)  # "line N: what; why"
    cannot: list[str] = field(default_factory=list)  # what has no equivalent here
    _edits: list[tuple[int, int, list[str]]] = field(default_factory=list)

    def replace(self, first: int, last: int, new: list[str], what: str, why: str) -> None:
        """Lines first..last-1 (0-based) become `new`."""
        self._edits.append((first, last, new))
        self.changes.append(f"line {first + 1}: {what}; {why}")

    def text(self) -> str:
        lines = list(self.lines)
        for first, last, new in sorted(self._edits, key=lambda e: e[0], reverse=True):
            lines[first:last] = new
        return "".join(lines)


def _child(node, key: str):
    for k, v in getattr(node, "value", []) if node is not None and node.tag.endswith(":map") else []:
        if getattr(k, "value", None) == key:
            return k, v
    return None


def _end(value, lines: list[str] | None = None) -> int:
    """Exclusive end line of a value node. A block collection ends where the next key begins: at that
    line when only indentation precedes the mark, else after the mark's line."""
    mark = value.end_mark
    if mark.column == 0:
        return mark.line
    if lines is not None and mark.line < len(lines) and not lines[mark.line][:mark.column].strip():
        return mark.line
    return mark.line + 1


def _rename(m: Migration, key_node, new: str, why: str) -> None:
    line = m.lines[key_node.start_mark.line]
    col = key_node.start_mark.column
    old = key_node.value
    if line[col:col + len(old)] != old:  # a quoted key: rewrite the first occurrence on the line
        col = line.index(old)
    m.replace(key_node.start_mark.line, key_node.start_mark.line + 1,
              [line[:col] + new + line[col + len(old):]], f"{old} -> {new}", why)


def _remove(m: Migration, key_node, value_node, why: str) -> None:
    """Delete a key and its value when they own their lines; inline (flow) entries and the first key of
    a `- ` list item are left for the researcher (named, never half-deleted)."""
    first, line = key_node.start_mark.line, m.lines[key_node.start_mark.line]
    end = _end(value_node, m.lines)
    owns_start = line[:key_node.start_mark.column].strip() == ""
    tail = ""
    if end > value_node.end_mark.line:  # the value ends inside its last line: what follows must be a comment
        tail = m.lines[value_node.end_mark.line][value_node.end_mark.column:].strip()
    if not owns_start or (tail and not tail.startswith("#")):
        m.cannot.append(f"line {first + 1}: {key_node.value} ({why}) is written inline; remove it by hand")
        return
    m.replace(first, end, [], f"removed {key_node.value}", why)


def _indent(node) -> str:
    return " " * node.start_mark.column


def _add_control(m: Migration, controls, entry: str, what: str, why: str) -> None:
    """Add `entry` ("key: value") to the design's existing controls block (block or flow style)."""
    block = controls[1]
    if block.tag.endswith(":map") and block.value and not block.flow_style:
        at = _end(block, m.lines)
        m.replace(at, at, [f"{_indent(block.value[0][0])}{entry}\n"], what, why)
    else:
        line = controls[0].start_mark.line
        m.replace(line, _end(block, m.lines), [f"controls:\n  {entry}\n"] if not block.value else
                  [f"controls: {{{_flow_body(m, block)}, {entry}}}\n"], what, why)


def _source(m: Migration, node) -> str:
    """A one-line scalar as written (its quotes kept)."""
    return m.lines[node.start_mark.line][node.start_mark.column:node.end_mark.column]


def _migrate_prefixes(m: Migration, root, tasks: list) -> None:
    """Upstream sets assistant_prefix per task; here training starts the assistant turn with it too
    (controls.assistant_prefix), so the eval prompt stays the one the model learned from."""
    found = [(i, _child(t, "assistant_prefix")) for i, t in enumerate(tasks)]
    prefixes = [(i, p[1]) for i, p in found if p]
    controls = _child(root, "controls")
    if not prefixes or (controls and _child(controls[1], "assistant_prefix")):
        return
    values = {node.value for _, node in prefixes}
    node = prefixes[0][1]
    if len(values) > 1 or len(prefixes) < len(tasks) or node.start_mark.line != node.end_mark.line:
        m.cannot.append("evaluation.tasks[].assistant_prefix: the tasks do not all share one prefix, and a run "
                        "trains with one: set controls.assistant_prefix (or a run's parameters.assistant_prefix) "
                        "and mark the tasks that differ prompt_sweep: true")
    elif controls is None:
        m.cannot.append(f"evaluation.tasks[].assistant_prefix {node.value!r}: no controls block to put it in; add "
                        f"`assistant_prefix: {_source(m, node)}` under controls so training uses it too")
    else:
        _add_control(m, controls, f"assistant_prefix: {_source(m, node)}", "added controls.assistant_prefix",
                     "the tasks' assistant prefix; training now starts the assistant turn with it too")


# -- experiment_summary.yaml ---------------------------------------------------------------------------
def migrate_design(m: Migration, root) -> None:
    exp = _child(root, "experiment")
    meta = exp[1] if exp else None
    if meta is not None and _child(meta, "directory"):
        k, v = _child(meta, "directory")
        if _child(meta, "dir"):
            _remove(m, k, v, "experiment.dir is already set")
        else:
            _rename(m, k, "dir", "upstream's experiment.directory is our experiment.dir")
    if meta is not None and _child(meta, "seed"):
        k, v = _child(meta, "seed")
        _remove(m, k, v, "the training seed lives in controls.seed")
        controls = _child(root, "controls")
        kept = _child(controls[1], "seed") if controls else None
        if kept and kept[1].value != v.value:
            m.cannot.append(f"experiment.seed {v.value} differs from controls.seed {kept[1].value}, which is kept")
        if controls is None:
            m.cannot.append(f"experiment.seed {v.value}: no controls block to put it in; add `seed: {v.value}` "
                            "under controls")
        elif _child(controls[1], "seed") is None:
            _add_control(m, controls, f"seed: {v.value}", "added controls.seed", "moved from experiment.seed")
    output = _child(root, "output")
    if output:
        for key, derived in (("base_directory", "{scratch}/ck-outputs/{experiment}"),
                             ("checkpoint_pattern", "{scratch}/ck-outputs/{experiment}/" + STANDARD_CHECKPOINTS)):
            found = _child(output[1], key)
            if found:
                _remove(m, *found, f"outputs always go to {derived} (derived from claude.local.md)")
                if key == "checkpoint_pattern" and found[1].value != STANDARD_CHECKPOINTS:
                    m.cannot.append(f"output.checkpoint_pattern {found[1].value!r}: checkpoints are always "
                                    f"{STANDARD_CHECKPOINTS}")
                if key == "base_directory" and not _same_dir(found[1].value, _derived_outputs(meta)):
                    m.cannot.append(f"output.base_directory {found[1].value!r}: outputs go under the scratch "
                                    "directory of claude.local.md (ck-outputs/{experiment}); move them there "
                                    "if this path differs")
    data = _child(root, "data")
    training = _child(data[1], "training") if data else None
    if training and _child(training[1], "label"):
        k, v = _child(training[1], "label")
        if _child(training[1], "dataset_label"):
            _remove(m, k, v, "data.training.dataset_label is already set")
        else:
            _rename(m, k, "dataset_label", "upstream's data.training.label is our dataset_label")
    if training and _child(training[1], "format"):
        fmt = _child(training[1], "format")[1].value
        if fmt != "json":
            m.cannot.append(f"data.training.format {fmt!r}: cruijff_kit reads JSON ({{train: [...], "
                            "validation: [...]}}); convert the file")
    if data and _child(data[1], "data_generation"):
        _remove(m, *_child(data[1], "data_generation"), "no tabular-to-text generator here")
        m.cannot.append("data.data_generation: generate the data with upstream's tool first; the design then "
                        "uses the file at data.training.path")
    evaluation = _child(root, "evaluation")
    if evaluation:
        _migrate_scorer(m, evaluation[1])
        tasks = _child(evaluation[1], "tasks")
        task_nodes = tasks[1].value if tasks and tasks[1].tag.endswith(":seq") else []
        _migrate_prefixes(m, root, task_nodes)
        for i, task in enumerate(task_nodes):
            _task_function(m, task, i)
    for i, run in enumerate(_seq(_child(root, "runs"))):
        params = _child(run, "parameters")
        for key in ("dataset_path", "eval_dataset_path"):
            found = _child(params[1], key) if params else None
            if found:
                m.cannot.append(f"runs[{i}].parameters.{key}: per-run data files are data.training.path with "
                                "{dataset_label} in it and a dataset_label per run")


def _derived_outputs(meta) -> str:
    from cruijff_kit.settings import load_settings

    name = _child(meta, "name") if meta is not None else None
    try:
        return str(load_settings().scratch / "ck-outputs" / (name[1].value if name else ""))
    except UserError:
        return ""


def _same_dir(a: str, b: str) -> bool:
    return bool(b) and str(a).rstrip("/") == str(b).rstrip("/")


def _seq(pair) -> list:
    return pair[1].value if pair and pair[1].tag.endswith(":seq") else []


def _flow_body(m: Migration, block) -> str:
    start, end = block.start_mark, block.end_mark
    if start.line != end.line:
        return ""
    return m.lines[start.line][start.column + 1:end.column - 1].strip()


def _migrate_scorer(m: Migration, evaluation) -> None:
    found = _child(evaluation, "scorer")
    if not found:
        return
    k, v = found
    if _child(evaluation, "scorers"):
        _remove(m, k, v, "evaluation.scorers is already set")
        return
    if v.tag.endswith(":str") or (v.tag.endswith(":seq") and all(i.tag.endswith(":str") for i in v.value)):
        names = [v.value] if v.tag.endswith(":str") else [i.value for i in v.value]
        indent = _indent(k)
        new = [f"{indent}scorers:\n"] + [f"{indent}  - name: {name}\n" for name in names]
        m.replace(k.start_mark.line, _end(v, m.lines), new, f"scorer: {names} -> scorers: [{{name: ...}}]",
                  "scorers are a list of {name, params}")
    else:
        _rename(m, k, "scorers", "upstream's evaluation.scorer is our evaluation.scorers")


def _task_function(m: Migration, task, i: int) -> None:
    """Upstream finds the @task function in the script; we name it (`function`, default the task name)."""
    if _child(task, "function") or not _child(task, "script") or not _child(task, "name"):
        return
    name, script = _child(task, "name")[1].value, _child(task, "script")[1].value
    path = Path(script) if Path(script).is_absolute() else m.path.parent / script
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return
    found = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and any(
        getattr(d, "id", getattr(getattr(d, "func", None), "id", None)) == "task" for d in n.decorator_list)]
    if len(found) == 1 and found[0] != name:
        key = _child(task, "name")[0]
        line = key.start_mark.line
        m.replace(line + 1, line + 1, [f"{_indent(key)}function: {found[0]}\n"], f"added function: {found[0]}",
                  f"the only @task in {script}; the task name {name!r} is not a function there")


# -- setup_finetune.yaml -------------------------------------------------------------------------------
def migrate_setup(m: Migration, root) -> None:
    keys = {k.value for k, _ in root.value}
    for k, v in root.value:
        key = k.value
        if key in SETUP_RENAMES:
            new = SETUP_RENAMES[key]
            if new in keys:
                _remove(m, k, v, f"{new} is already set")
            elif key == "base_recipe" and not recipe_name(v.value):
                _remove(m, k, v, "finetune.yaml is rendered from cruijff_kit's own template")
                m.cannot.append(f"base_recipe {v.value!r}: the torchtune config is rendered by cruijff_kit; set "
                                "training keys (lr, lora_rank, ...) in this file instead")
            else:
                _rename(m, k, new, f"upstream's {key} is our {new}")
                keys.add(new)
        elif key in SETUP_DROPPED:
            redundant = key in ("input_key", "output_key") and v.value == key.split("_")[0]
            _remove(m, k, v, "the default already" if redundant else "no equivalent")
            if not redundant:
                m.cannot.append(f"{key}: {v.value!r}: {SETUP_DROPPED[key]}")
        if key in ("custom_recipe", "base_recipe") and recipe_name(v.value) and recipe_name(v.value) != v.value:
            line = m.lines[v.start_mark.line]
            if not any(e[0] == v.start_mark.line for e in m._edits):
                m.replace(v.start_mark.line, v.start_mark.line + 1, [line.replace(v.value, recipe_name(v.value))],
                          f"{v.value} -> {recipe_name(v.value)}", "upstream's recipe names map to ours")
            else:  # the key line was renamed too: rename the value on the edited line
                first, last, new_lines = m._edits[-1]
                m._edits[-1] = (first, last, [new_lines[0].replace(v.value, recipe_name(v.value))])
                m.changes[-1] += f"; recipe {v.value} -> {recipe_name(v.value)}"
        if key == "dataset_ext" and str(v.value).lstrip(".") != "json":
            m.cannot.append(f"dataset_ext {v.value!r}: cruijff_kit reads JSON; convert the file")


def setup_renamed(raw: dict) -> tuple[dict, list[tuple[str, str, str]]]:
    """setup_finetune.yaml read with upstream's keys: (the dict in our keys, [(key, message, hint)]).
    Renames and redundant keys are applied (each a warning); keys with no equivalent are errors."""
    out, notes = {}, []
    for key, value in raw.items():
        if key in SETUP_RENAMES and SETUP_RENAMES[key] in raw:
            notes.append((key, f"upstream key with no equivalent next to {SETUP_RENAMES[key]}",
                          f"remove it; {SETUP_RENAMES[key]} is already set"))
        elif key in SETUP_RENAMES:
            new = SETUP_RENAMES[key]
            if key == "base_recipe" and not recipe_name(value):
                notes.append((key, f"upstream key with no equivalent ({value!r} is not a recipe)",
                              "remove it; training keys go in this file"))
                continue
            out[new] = value
            notes.append((key, f"upstream key read as {new}", f"rename it to {new} ({MIGRATE_HINT})"))
        elif key in SETUP_DROPPED:
            if key in ("input_key", "output_key") and value == key.split("_")[0]:
                notes.append((key, "upstream key, the default here", f"remove it ({MIGRATE_HINT})"))
            else:
                notes.append((key, f"upstream key with no equivalent: {SETUP_DROPPED[key]}", "remove it"))
        else:
            out[key] = value
    for key in ("custom_recipe",):
        if key in out and recipe_name(out[key]) and recipe_name(out[key]) != out[key]:
            notes.append((key, f"upstream recipe {out[key]!r} read as {recipe_name(out[key])}",
                          f"write custom_recipe: {recipe_name(out[key])}"))
            out[key] = recipe_name(out[key])
    return out, notes


# -- claude.local.md ------------------------------------------------------------------------------------
def migrate_settings(m: Migration) -> None:
    from cruijff_kit.settings import parse_settings

    settings = parse_settings("".join(m.lines), str(m.path))
    prose = {n: why[why.index("ignored"):] for n, _, why in settings.unused if why.startswith("kept")}
    for name, where in settings.sources.items():
        line = int(where.rsplit(":", 1)[-1]) if where.startswith(str(m.path)) else 0
        extra = f" ({prose[line]})" if line in prose else ""
        m.changes.append(f"{f'line {line}' if line else where}: read as {name} = {getattr(settings, name)!r}{extra}")
    for lineno, line, why in settings.unused:
        label = line.split("**")[1].lower() if line.count("**") >= 2 else ""
        if label in ("experiments", "outputs", "sanity checks"):
            derived = settings.scratch / f"ck-{label.replace(' ', '-')}"
            value = line.split(":", 1)[1].strip().strip("`").strip()
            if not _same_dir(value.strip("`"), str(derived)):
                m.cannot.append(f"line {lineno}: {line}: derived here from the scratch directory ({derived})")
        elif label == "default project":
            m.cannot.append(f"line {lineno}: {line}: each design names its W&B project (output.wandb_project)")
        elif not why.startswith("kept"):
            m.changes.append(f"line {lineno}: sets nothing ({why}): {line}")


# -- detection and the verb ------------------------------------------------------------------------------
def detect(path: Path, data) -> str:
    if path.suffix.lower() == ".md":
        return "settings"
    if isinstance(data, dict) and "experiment" in data:
        return "design"
    if isinstance(data, dict):
        return "setup"
    raise UserError("not a design, setup_finetune.yaml or claude.local.md", where=str(path),
                    hint="migrate takes an experiment_summary.yaml, a setup_finetune.yaml or a claude.local.md")


def plan(path: str | Path) -> Migration:
    path = Path(path)
    from cruijff_kit.files import decode_text

    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise UserError("file not found", where=str(path), hint="pass the file to migrate") from None
    text = decode_text(raw, str(path))
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if path.suffix.lower() == ".md":
        m = Migration(path, "settings", lines)
        migrate_settings(m)
        return m
    from cruijff_kit.files import yaml_compose

    data, root = yaml_compose("".join(lines), str(path))
    m = Migration(path, detect(path, data), lines)
    (migrate_design if m.kind == "design" else migrate_setup)(m, root)
    return m


def write(m: Migration) -> Path:
    from cruijff_kit.files import atomic_write

    backup = m.path.with_name(m.path.name + ".bak")
    atomic_write(backup, m.path.read_bytes())
    atomic_write(m.path, m.text())
    return backup

"""Input that could reach a job script, checked before anything is rendered (no file is read here).

Job scripts run under bash and sbatch: a newline in a value written into an `#SBATCH` or comment line
ends that line and the next one runs as a command. So:
  * `control_problems`: no control character in any key or value of a design except the free-text fields
    (question, prompts, descriptions), which only ever reach YAML files, quoted; a NUL byte nowhere;
  * `path_problems`: `~user` paths name a known user;
  * `script_problems`: for every run, of every job kind, the experiment dir, the output dir, the model
    dirs and the #SBATCH values (claude.local.md + slurm_overrides) are ones a job script can take.
render.py's `sbatch_value` filter refuses control characters again when a job script is rendered.
"""
from __future__ import annotations

import os

from cruijff_kit.errors import ProblemList
from cruijff_kit.experiment import layout
from cruijff_kit.jobscript import SBATCH_KEYS, control_char, resources, sbatch_value_problem, unsafe_path

# keys whose string values are free text: multi-line allowed (they go into YAML and Markdown, quoted)
FREE_TEXT = frozenset({"question", "hypothesis", "purpose", "description", "prompt", "system_prompt",
                       "researcher"})
# key paths (without list indexes) whose values are file system paths
PATH_KEYS = frozenset({"experiment.dir", "models.base.path", "data.training.path", "data.preference.path",
                       "data.training.generate.source", "data.preference.generate.source",
                       "runs.checkpoint_path", "evaluation.tasks.script", "evaluation.tasks.dataset"})
PATH_MAX = 4096
SETTINGS_LABEL = "(claude.local.md)"


def _key(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(node, parts=()):
    """(key path parts, key or None, value) of every scalar and every mapping key."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield parts, key, key  # the key itself
            yield from _walk(value, parts + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, parts + (i,))
    else:
        yield parts, None, node


def control_problems(data: dict, problems: ProblemList) -> None:
    """Control characters where a value could reach a job script line; NUL bytes anywhere."""
    for parts, key, value in _walk(data):
        if not isinstance(value, str):
            continue
        last = next((p for p in reversed(parts) if isinstance(p, str)), "")
        free = key is None and last in FREE_TEXT and "component" not in parts
        if free:
            if "\x00" in value:
                problems.error(_key(parts), "contains a NUL byte", "remove it")
            continue
        bad = control_char(value)
        if bad:
            where = _key(parts + ((key,) if key is not None else ()))
            what = "the key" if key is not None else "the value"
            problems.error(where, f"{what} {value[:40]!r} contains {bad}",
                           "write it on one line without control characters")


def path_problems(data: dict, problems: ProblemList) -> None:
    """Paths: `~user` of an unknown user, and absurd lengths, as one-line errors."""
    for parts, key, value in _walk(data):
        if key is not None or not isinstance(value, str):
            continue
        name = ".".join(p for p in parts if isinstance(p, str))
        if name not in PATH_KEYS:
            continue
        if len(value) > PATH_MAX:
            problems.error(_key(parts), f"the path is {len(value)} characters long", f"use at most {PATH_MAX}")
            continue
        if value.startswith("~"):
            user = value[1:].split("/", 1)[0]
            try:
                expanded = os.path.expanduser(value)
            except (RuntimeError, KeyError):
                expanded = value
            if expanded.startswith("~"):
                problems.error(_key(parts), f"{value[:60]!r}: there is no user {user!r} whose home '~' could mean",
                               "write the absolute path")


def script_problems(exp, settings, problems: ProblemList) -> None:
    """Every path and #SBATCH value that reaches a job script, for every run whatever its kind."""
    reported: set = set()

    def once(path: str, message: str, hint: str) -> None:
        if (path, message) not in reported:
            reported.add((path, message))
            problems.error(path, message, hint)

    hint = "use letters, digits and . _ - / only (no spaces, quotes, $, .. or line breaks)"
    why = unsafe_path(exp.dir)
    if why:
        once("experiment.dir", f"the experiment dir {str(exp.dir)[:80]!r} {why}", hint)
    why = unsafe_path(settings.scratch)
    if why:
        once(f"{SETTINGS_LABEL} scratch directory", f"{str(settings.scratch)[:80]!r} {why}", hint)
    used = set()
    for i, run in enumerate(exp.runs):
        used.add(run.model)
        res = resources(settings, run.slurm_overrides)
        for key in (*SBATCH_KEYS, "cpus", "gpus"):
            why = sbatch_value_problem(key, res.get(key))
            if why:
                at = (f"runs[{i}].slurm_overrides.{key}" if key in run.slurm_overrides
                      else f"{SETTINGS_LABEL} {key}")
                once(at, f"{str(res.get(key))[:40]!r} {why}", "fix the value (sbatch would refuse it)")
        if run.checkpoint_path is not None:
            why = unsafe_path(run.checkpoint_path)
            if why:
                once(f"runs[{i}].checkpoint_path", f"{str(run.checkpoint_path)[:80]!r} {why}", hint)
    for i, model in enumerate(exp.models):
        if model.name in used:
            why = unsafe_path(model.path)
            if why:
                once(f"models.base[{i}].path", f"the model dir {str(model.path)[:80]!r} {why}", hint)


# -- the experiment directory ----------------------------------------------------------------------
OWNER_MARK = layout.CK_DIR  # scaffold keeps its manifest here; design verify/summary create it when they claim a dir
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot",
                "/run", "/var/lib", "/var/log", "/var/run")


def owned(path) -> bool:
    """cruijff_kit made (or was given) this directory: our marker, our design file, or the experiment.yaml of a
    `generate` sweep (generate renders the sweep into the folder that holds it)."""
    from pathlib import Path

    path = Path(path)
    if (path / OWNER_MARK).is_dir() or (path / "experiment.yaml").is_file():  # our marker; a `generate` sweep
        return True
    design = layout.design_file(path)
    try:
        if design.is_file():
            with open(design, "rb") as fh:
                head = fh.read(65536)
            return b"\nexperiment:" in b"\n" + head
    except OSError:
        return False
    return False


def experiment_dir_problem(path, *, force: bool = False) -> tuple[str, str] | None:
    """(what is wrong, the fix) when cruijff_kit must not write into `path`, else None."""
    from pathlib import Path

    path = Path(os.path.abspath(path))
    text = str(path)
    home = os.path.abspath(os.path.expanduser("~"))
    if text == "/" or len(path.parts) == 2:
        return f"{text} is a top-level directory", "name a folder of its own, e.g. {scratch_dir}/ck-experiments/NAME"
    if text == home:
        return f"{text} is your home directory", "name a folder of its own inside it"
    for tree in SYSTEM_TREES:
        if text == tree or text.startswith(tree + "/"):
            return f"{text} is a system directory", "use a folder under your scratch or home directory"
    if path.exists() and not path.is_dir():
        return f"{text} exists and is not a directory", "choose a folder name that is free"
    if path.is_dir() and not force and not owned(path):
        try:
            busy = next(iter(os.scandir(path)), None) is not None
        except OSError as exc:
            return f"{text} cannot be read ({exc.strerror})", "choose another folder"
        if busy:
            return (f"{text} is not empty and cruijff_kit did not create it",
                    "choose a new folder, or pass --force to write into it anyway")
    return None


def check_experiment_dir(exp, *, force: bool = False) -> None:
    """Raise the one-line error for an experiment dir cruijff_kit must not write into."""
    from cruijff_kit.errors import UserError

    found = experiment_dir_problem(exp.dir, force=force)
    if found:
        raise UserError(found[0], where=str(exp.source), path="experiment.dir", hint=found[1])


def claim_experiment_dir(path) -> None:
    """Create the experiment dir (if needed) with our marker, so later commands know it is ours."""
    from pathlib import Path

    (Path(path) / OWNER_MARK).mkdir(parents=True, exist_ok=True)

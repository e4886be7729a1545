"""claude.local.md -> Settings: where experiments live and how jobs reach the cluster.

Users keep a Markdown file at the repo root with lines such as `- Scratch directory: /scratch/me`.
We read every `Label: value` line whose label we know (case and spacing ignored), keep where each
value came from, and derive the experiment/output paths from the scratch directory.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from cruijff_kit.errors import UserError

SETTINGS_FILE = "claude.local.md"

# label in claude.local.md (normalised: lowercase, single spaces) -> Settings field
LABELS = {
    "scratch directory": "scratch_dir",
    "scratch dir": "scratch_dir",
    "models directory": "models_dir",
    "models dir": "models_dir",
    "slurm account": "slurm_account",
    "account": "slurm_account",
    "slurm partition": "slurm_partition",
    "partition": "slurm_partition",
    "slurm constraint": "slurm_constraint",
    "constraint": "slurm_constraint",
    "default time": "slurm_time",
    "slurm default time": "slurm_time",
    "default gpus": "slurm_gpus",
    "slurm default gpus": "slurm_gpus",
    "full-gpu constraint": "full_gpu_constraint",
    "full gpu constraint": "full_gpu_constraint",
    "gpu memory constraints": "gpu_memory_constraints",
    "full-gpu constraints": "gpu_memory_constraints",
    "full gpu constraints": "gpu_memory_constraints",
    "shared/mig partition": "shared_partition",
    "shared partition": "shared_partition",
    "mig partition": "shared_partition",
    "conda env": "conda_env",
    "conda environment": "conda_env",
    "venv": "venv",
    "virtual environment": "venv",
    "module loads": "module_loads",
    "modules": "module_loads",
    "w&b entity": "wandb_entity",
    "wandb entity": "wandb_entity",
    "executor": "executor",
    "gpu hourly cost": "gpu_hourly_cost",
    "gpu type": "gpu_type",
    "cpus per task": "slurm_cpus",
    "default mem": "slurm_mem",
    "default memory": "slurm_mem",
}

# upstream cruijff_kit's claude.local.md labels (read the same way as ours)
LABELS.update({
    "default conda environment": "conda_env",
    "conda environment name": "conda_env",
    "default partition": "slurm_partition",
    "default constraint": "slurm_constraint",
    "default account": "slurm_account",
})
# labels understood only under a heading that names their topic
SECTION_LABELS = {
    ("weights", "entity"): "wandb_entity", ("w&b", "entity"): "wandb_entity", ("wandb", "entity"): "wandb_entity",
    ("conda", "environment name"): "conda_env",
}
# labels that describe the machine but set nothing: reported as "informational" by `config show`
INFORMATIONAL = {
    "cluster", "documentation", "username", "group", "home directory", "working directory", "shared datasets",
    "cruijff_kit project number", "available gpu types", "mig notes", "location", "available models",
    "experiments", "sanity checks", "outputs", "input data", "task-specific data", "default project",
    "activation", "installation", "adding issues to project",
}
LISTS = {"module_loads", "gpu_memory_constraints"}  # values that keep their spaces ("a, b")
PATH_FIELDS = {"scratch_dir", "models_dir", "venv", "conda_env"}
# hints for values sbatch would refuse (the rule itself is jobscript.sbatch_value_problem, shared by every check)
FORM_HINTS = {"slurm_time": "write e.g. `- Default time: 01:00:00`", "slurm_mem": "write e.g. `- Default mem: 32G`"}

_LINE = re.compile(r"^\s*(?:[-*+]\s+)?(\*\*)?([A-Za-z][A-Za-z0-9 &/_.-]*?)\s*(?::\*\*|\*\*\s*:|:)(?!//)\s*(.*?)\s*$")
_PLACEHOLDER = re.compile(r"^(?:\(.*\)|<.*>|none|n/?a|tbd|todo|tba|unset|null|empty|unknown|-+|\?+|\.\.\.|…)$", re.I)
_PROSE = re.compile(r"\s{2,}|\s+\(|\s+[—–]+\s*|\s+-\s+|\s+#|\s+//")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MODULE = re.compile(r"^\s*module\s+(?:load|add)\s+(.+?)\s*(?:#.*)?$")
_CONDA = re.compile(r"^\s*(?:conda|source)\s+activate\s+(\S+)")


def clean_value(raw: str) -> tuple[str | None, str]:
    """(value, dropped prose) of a `Label: value` line. A value in backticks is the text inside them;
    otherwise prose after two spaces, ` (`, ` — `, ` - ` or ` #` is dropped. Placeholders such as
    `(none)`, `<...>`, `TBD`, `N/A` or nothing at all give None: the setting stays unset."""
    text = raw.strip()
    if text.startswith("`") and "`" in text[1:]:
        value, rest = text[1:].split("`", 1)
    else:
        cut = _PROSE.search(text)
        value, rest = (text[:cut.start()], text[cut.start():]) if cut else (text, "")
    value = value.strip().strip("'\"").strip()
    if not value or _PLACEHOLDER.match(value) or re.search(r"<[^>]*>", value):
        return None, text
    return value, rest.strip()


@dataclass
class Settings:
    scratch_dir: str = "./ck-scratch"
    models_dir: str = ""  # default: {scratch_dir}/models
    slurm_account: str = ""
    slurm_partition: str = ""
    slurm_constraint: str = ""
    slurm_time: str = "01:00:00"
    slurm_gpus: int = 1
    slurm_cpus: int = 4
    slurm_mem: str = ""
    full_gpu_constraint: str = ""
    gpu_memory_constraints: str = ""  # "gpu40=40,gpu80=80": full-GPU constraint -> GB of GPU memory
    shared_partition: str = ""
    conda_env: str = ""
    venv: str = ""
    module_loads: list[str] = field(default_factory=list)
    wandb_entity: str = ""
    executor: str = "local"
    gpu_hourly_cost: float = 0.0
    gpu_type: str = ""
    source_file: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # field -> the label that set it (for error lines)
    # (line number, the line, why it set nothing): shown by `cruijff-kit config show`
    unused: list[tuple[int, str, str]] = field(default_factory=list)

    # -- derived paths ---------------------------------------------------------------------------
    @property
    def scratch(self) -> Path:
        cached = self.__dict__.get("_scratch_cache")
        if cached is None or cached[0] != self.scratch_dir:  # resolve once per value, not per call
            cached = (self.scratch_dir, Path(os.path.expanduser(self.scratch_dir)).resolve())
            self.__dict__["_scratch_cache"] = cached
        return cached[1]

    @property
    def models(self) -> Path:
        return Path(os.path.expanduser(self.models_dir)).resolve() if self.models_dir else self.scratch / "models"

    def experiment_dir(self, name: str, kind: str = "experiment") -> Path:
        folder = "ck-sanity-checks" if kind == "sanity_check" else "ck-experiments"
        return self.scratch / folder / name

    def output_dir(self, experiment: str, run: str) -> Path:
        return self.scratch / "ck-outputs" / experiment / f"ck-out-{run}"

    def placeholders(self) -> dict[str, str]:
        """Values a design may reference in its paths: {scratch_dir}, {models_dir}."""
        return {"scratch_dir": str(self.scratch), "models_dir": str(self.models)}

    def gpu_constraints(self) -> dict[str, float | None]:
        """Full-GPU constraint -> its GPU memory in GB (None: size not given, taken to fit any model)."""
        table: dict[str, float | None] = dict(parse_gpu_constraints(self.gpu_memory_constraints))
        if self.full_gpu_constraint and self.full_gpu_constraint not in table:
            table[self.full_gpu_constraint] = None
        return table

    def shown(self) -> list[tuple[str, str, str]]:
        """(field, value, where it came from) for `cruijff-kit config show`."""
        rows = []
        for f in fields(self):
            if f.name in ("sources", "labels", "source_file", "unused"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = ", ".join(value)
            rows.append((f.name, str(value), self.sources.get(f.name, "default")))
        rows.append(("models_dir (resolved)", str(self.models), "derived"))
        rows.append(("experiments", str(self.scratch / "ck-experiments"), "derived"))
        rows.append(("sanity checks", str(self.scratch / "ck-sanity-checks"), "derived"))
        rows.append(("outputs", str(self.scratch / "ck-outputs"), "derived"))
        return rows


def find_settings_file(start: Path | None = None) -> Path | None:
    """$CK_SETTINGS, else claude.local.md in the current directory or one of its parents."""
    env = os.environ.get("CK_SETTINGS")
    if env:
        path = Path(env)
        if not path.is_file():
            raise UserError(f"settings file not found: {env}", where="CK_SETTINGS",
                            hint="point CK_SETTINGS at a claude.local.md or unset it")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / SETTINGS_FILE
        if candidate.is_file():
            return candidate
    return None


def is_upstream_settings(text: str) -> bool:
    """Upstream cruijff_kit's claude.local.md: bold labels such as its conda label, or a Module System section."""
    return bool(re.search(r"(?im)^\s*-\s*\*\*(default conda environment|partition|account)\*\*\s*:", text)
                or re.search(r"(?im)^##\s*module system", text))


def _label_field(label: str, heading: str) -> str | None:
    for (topic, key), name in SECTION_LABELS.items():
        if key == label and topic in heading:
            return name
    return LABELS.get(label)


def parse_settings(text: str, source: str = SETTINGS_FILE) -> Settings:
    """Every `Label: value` line whose label we know; `module load X` and `conda activate ENV` lines in
    fenced code blocks (upstream's "Module System" section); placeholders leave a setting unset."""
    settings = Settings(source_file=source)
    heading, fenced, fence_modules, fence_conda = "", False, [], None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{lineno}"
        if _FENCE.match(raw):
            fenced = not fenced
            continue
        if fenced:
            module, conda = _MODULE.match(raw), _CONDA.match(raw)
            if module:
                fence_modules += [(m, where) for m in module.group(1).split() if m not in [f[0] for f in fence_modules]]
            elif conda and fence_conda is None and "<" not in conda.group(1):
                fence_conda = (conda.group(1), where)
            continue
        if raw.lstrip().startswith("#"):
            heading = raw.strip("# ").lower()
            continue
        m = _LINE.match(raw)
        if not m:
            continue
        label = re.sub(r"\s+", " ", m.group(2).strip().lower())
        name = _label_field(label, heading)
        if name and label not in LABELS and name in settings.sources:
            continue  # a topic-only label (upstream's "Environment name") never overrides an explicit one
        listed = bool(m.group(1)) or raw.lstrip()[:1] in "-*+"
        if not name:
            if listed and m.group(3):
                why = "informational, not a setting" if label in INFORMATIONAL else "label not understood"
                settings.unused.append((lineno, raw.strip(), why))
            continue
        value, prose = clean_value(m.group(3))
        if value is None:
            if m.group(3).strip():
                settings.unused.append((lineno, raw.strip(), "placeholder: left unset"))
            continue
        if name not in PATH_FIELDS and name not in FORM_HINTS and name not in LISTS and " " in value:
            # a time or memory size keeps its words ("2 hours", "32 GB"): '2' alone would mean 2 minutes
            value, more = value.split(" ", 1)
            prose = f"{more} {prose}".strip()
        if prose:
            settings.unused.append((lineno, raw.strip(), f"kept {value!r}, ignored {prose!r}"))
        _set(settings, name, value, label, where)
        settings.sources[name] = where
        settings.labels[name] = label
    if fence_modules and "module_loads" not in settings.sources:
        settings.module_loads = [m for m, _ in fence_modules]
        settings.sources["module_loads"] = fence_modules[0][1]
    if fence_conda and "conda_env" not in settings.sources and "venv" not in settings.sources:
        settings.conda_env = fence_conda[0]
        settings.sources["conda_env"] = fence_conda[1]
    if "executor" not in settings.sources and settings.slurm_account:
        settings.executor = "slurm"
        settings.sources["executor"] = "derived (SLURM account set)"
    if "scratch_dir" in settings.sources:
        base = Path(source).parent if source != SETTINGS_FILE else Path.cwd()
        settings.scratch_dir = str((base / os.path.expanduser(settings.scratch_dir)).resolve())
    check_settings(settings)
    return settings


def parse_gpu_constraints(text: str) -> list[tuple[str, float]]:
    """`gpu40=40,gpu80=80` -> [("gpu40", 40.0), ("gpu80", 80.0)]; ValueError names the item it cannot read."""
    out = []
    for item in (i.strip() for i in re.split(r"[,;]", text or "") if i.strip()):
        name, _, size = item.partition("=")
        try:
            gb = float(size.strip().upper().removesuffix("GB").removesuffix("G"))
        except ValueError:
            raise ValueError(item) from None
        if not name.strip() or gb <= 0:
            raise ValueError(item)
        out.append((name.strip(), gb))
    return out


def _set(settings: Settings, name: str, value: str, label: str, where: str) -> None:
    if name == "module_loads":
        settings.module_loads = [v for v in re.split(r"[,;\s]+", value) if v]
    elif name == "slurm_gpus" or name == "slurm_cpus":
        if not value.isdigit():
            raise UserError(f"'{value}' is not a whole number", where=where, path=label,
                            hint="write e.g. `- Default GPUs: 1`")
        setattr(settings, name, int(value))
    elif name == "gpu_hourly_cost":
        try:
            settings.gpu_hourly_cost = float(value.lstrip("$"))
        except ValueError:
            raise UserError(f"'{value}' is not a number", where=where, path=label,
                            hint="write e.g. `- GPU hourly cost: 1.74`") from None
    elif name == "gpu_memory_constraints":
        try:
            pairs = parse_gpu_constraints(value)
        except ValueError as exc:
            raise UserError(f"'{exc}' is not CONSTRAINT=GB", where=where, path=label,
                            hint="write e.g. `- GPU memory constraints: gpu40=40,gpu80=80`") from None
        from cruijff_kit.jobscript import sbatch_value_problem

        for constraint, _ in pairs:
            if sbatch_value_problem("constraint", constraint):
                raise UserError(f"'{constraint}' cannot go on an #SBATCH line", where=where, path=label,
                                hint="write the bare constraint names, e.g. gpu40=40,gpu80=80")
        settings.gpu_memory_constraints = value
    elif name == "executor":
        # the registry is a table of names (stdlib only): no backend is imported to check a name
        from cruijff_kit.run.executors import names

        if value not in names():
            raise UserError(f"'{value}' is not an executor", where=where, path=label,
                            hint=f"use one of {', '.join(names())}")
        settings.executor = value
    else:
        if name in SBATCH_FIELDS:
            from cruijff_kit.jobscript import sbatch_value_problem

            if sbatch_value_problem(SBATCH_FIELDS[name], value):
                if name in FORM_HINTS:
                    raise UserError(f"'{value}' is not a valid {label}", where=where, path=label,
                                    hint=FORM_HINTS[name])
                raise UserError(f"'{value}' cannot go on an #SBATCH line", where=where, path=label,
                                hint="write the bare value, or leave the line out to keep it unset")
        setattr(settings, name, value)


SBATCH_FIELDS = {"slurm_time": "time", "slurm_mem": "mem", "slurm_account": "account",
                 "slurm_partition": "partition", "slurm_constraint": "constraint",
                 "full_gpu_constraint": "constraint", "shared_partition": "partition"}
CHECKED_PATHS = ("scratch_dir", "models_dir")  # paths check_settings vets (PATH_FIELDS: values kept whole)


def check_settings(settings: Settings) -> None:
    """Every value that reaches a job script is one sbatch and bash take: no control characters, SLURM
    values sbatch accepts (time, memory, names), safe scratch/models paths. Raises one line per problem,
    in the same form as parse_settings' own errors: `claude.local.md:LINE: label: 'value' why; the fix`."""
    from cruijff_kit.errors import Problem, ValidationFailed
    from cruijff_kit.jobscript import control_char, sbatch_value_problem, unsafe_path

    problems = []
    for f in fields(settings):
        if f.name in ("sources", "labels", "source_file") or f.name not in settings.sources:
            continue
        value = getattr(settings, f.name)
        source = settings.sources[f.name]
        where = source if re.search(r":\d+$", source) else (settings.source_file or SETTINGS_FILE)
        label = settings.labels.get(f.name, f.name)
        for item in value if isinstance(value, list) else [value]:
            why = control_char(str(item))
            if f.name in SBATCH_FIELDS and not why:
                why = sbatch_value_problem(SBATCH_FIELDS[f.name], item)
            elif f.name in CHECKED_PATHS and not why:
                why = unsafe_path(os.path.expanduser(str(item)))
                if not why and any(part.startswith("~") for part in Path(os.path.expanduser(str(item))).parts):
                    why = "names a '~user' that does not exist"
            if why:
                problems.append(Problem(where, label, f"{str(item)[:60]!r} {why}", "fix this value in claude.local.md"))
    if problems:
        raise ValidationFailed(problems)


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from `path`, $CK_SETTINGS, or the nearest claude.local.md; local defaults otherwise."""
    file = Path(path) if path else find_settings_file()
    if file is None:
        settings = Settings()
        settings.scratch_dir = str(Path(os.environ.get("CK_SCRATCH", "./ck-scratch")).resolve())
        if "CK_SCRATCH" in os.environ:
            settings.sources["scratch_dir"] = "env CK_SCRATCH"
        return settings
    if not file.is_file():
        raise UserError(f"settings file not found: {file}", hint="create it from claude.local.md.example")
    from cruijff_kit.files import decode_text

    settings = parse_settings(decode_text(file.read_bytes(), str(file)), str(file))
    if "CK_SCRATCH" in os.environ:
        settings.scratch_dir = str(Path(os.environ["CK_SCRATCH"]).resolve())
        settings.sources["scratch_dir"] = "env CK_SCRATCH"
    return settings


# ---- the `cruijff-kit config` verb (show resolved settings and their sources) ----

def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="show")
    show = sub.add_parser("show", help="print every setting with its source")
    show.add_argument("--settings", help="path to claude.local.md (default: $CK_SETTINGS or nearest)")
    show.add_argument("--json", action="store_true", help="machine-readable output")


def main(args) -> int:
    settings = load_settings(getattr(args, "settings", None))
    rows = settings.shown()
    if getattr(args, "json", False):
        shown = {name: {"value": value, "source": source} for name, value, source in rows}
        shown["unused_lines"] = [{"line": n, "text": t, "why": w} for n, t, w in settings.unused]
        print(json.dumps(shown, indent=2))
        return 0
    print(f"settings file: {settings.source_file or '(none found: local defaults)'}")
    if settings.source_file and is_upstream_settings(Path(settings.source_file).read_bytes().decode(errors="replace")):
        print(f"  (upstream cruijff_kit format: read as is; `cruijff-kit migrate {settings.source_file}` "
              "shows how each line was read)")
    width = max(len(r[0]) for r in rows)
    for name, value, source in rows:
        print(f"  {name.ljust(width)}  {value or '-'}   [{source}]")
    if settings.unused:
        print("lines that set nothing (or only part of the line was used):")
        for lineno, line, why in settings.unused:
            print(f"  {settings.source_file}:{lineno}: {why}: {line}")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("config")

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

_LINE = re.compile(r"^\s*(?:[-*]\s*)?(?:\*\*)?([A-Za-z][A-Za-z0-9 &/_-]*?)(?:\*\*)?\s*:\s*(.*?)\s*$")


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

    def shown(self) -> list[tuple[str, str, str]]:
        """(field, value, where it came from) for `cruijff-kit config show`."""
        rows = []
        for f in fields(self):
            if f.name in ("sources", "source_file"):
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


def parse_settings(text: str, source: str = SETTINGS_FILE) -> Settings:
    settings = Settings(source_file=source)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        m = _LINE.match(raw)
        if not m:
            continue
        label = re.sub(r"\s+", " ", m.group(1).strip().lower())
        name = LABELS.get(label)
        value = m.group(2).strip().strip("`").strip()
        if not name or not value or value.startswith("<") or value.lower() in ("none", "n/a", "-"):
            continue
        where = f"{source}:{lineno}"
        if name == "module_loads":
            settings.module_loads = [v.strip() for v in re.split(r"[,;]", value) if v.strip()]
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
        elif name == "executor":
            if value not in ("local", "slurm"):
                raise UserError(f"'{value}' is not an executor", where=where, path=label,
                                hint="use local or slurm")
            settings.executor = value
        else:
            setattr(settings, name, value)
        settings.sources[name] = where
    if "executor" not in settings.sources and settings.slurm_account:
        settings.executor = "slurm"
        settings.sources["executor"] = "derived (SLURM account set)"
    if "scratch_dir" in settings.sources:
        base = Path(source).parent if source != SETTINGS_FILE else Path.cwd()
        settings.scratch_dir = str((base / os.path.expanduser(settings.scratch_dir)).resolve())
    check_settings(settings)
    return settings


SBATCH_FIELDS = {"slurm_time": "time", "slurm_mem": "mem", "slurm_account": "account",
                 "slurm_partition": "partition", "slurm_constraint": "constraint",
                 "full_gpu_constraint": "constraint", "shared_partition": "partition"}
PATH_FIELDS = ("scratch_dir", "models_dir")


def check_settings(settings: Settings) -> None:
    """Every value that reaches a job script is one sbatch and bash take: no control characters, SLURM
    values sbatch accepts (time, memory, names), safe scratch/models paths. Raises one line per problem."""
    from cruijff_kit.errors import ProblemList
    from cruijff_kit.jobscript import control_char, sbatch_value_problem, unsafe_path

    problems = ProblemList(settings.source_file or SETTINGS_FILE)
    for f in fields(settings):
        if f.name in ("sources", "source_file") or f.name not in settings.sources:
            continue
        value = getattr(settings, f.name)
        at = f"line {settings.sources[f.name].rsplit(':', 1)[-1]}: {f.name}"
        for item in value if isinstance(value, list) else [value]:
            why = control_char(str(item))
            if f.name in SBATCH_FIELDS and not why:
                why = sbatch_value_problem(SBATCH_FIELDS[f.name], item)
            elif f.name in PATH_FIELDS and not why:
                why = unsafe_path(os.path.expanduser(str(item)))
                if not why and any(part.startswith("~") for part in Path(os.path.expanduser(str(item))).parts):
                    why = "names a '~user' that does not exist"
            if why:
                problems.error(at, f"{str(item)[:60]!r} {why}", "fix this value in claude.local.md")
    problems.raise_if_errors()


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
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", where=str(file),
                        hint="save claude.local.md as UTF-8") from None
    settings = parse_settings(text, str(file))
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
        print(json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=2))
        return 0
    print(f"settings file: {settings.source_file or '(none found: local defaults)'}")
    width = max(len(r[0]) for r in rows)
    for name, value, source in rows:
        print(f"  {name.ljust(width)}  {value or '-'}   [{source}]")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("config")

"""The one renderer: jinja2 over templates/ with StrictUndefined, plus a no-clobber, atomic writer.

Every file format cruijff_kit writes lives in templates/. A `RenderSet` collects (path, text) pairs
and commits them: unchanged files are left alone, files the user edited since we rendered them are
preserved unless forced (we keep their hash in a manifest), and each write is atomic.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps(str) minus the encoder
from pathlib import Path

from cruijff_kit.experiment.layout import MANIFEST  # stdlib only
from cruijff_kit.files import read_json, sha256, write_json

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def yaml_quote(text: str) -> str:
    """A double-quoted YAML scalar that round-trips any string (libyaml escapes what JSON cannot)."""
    if text.isascii() and text.isprintable():
        return _json_string(text)  # what json.dumps(text) returns, without building an encoder per call
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(text, Dumper=dumper, default_style='"', width=1 << 30, allow_unicode=True).rstrip("\n")


def yaml_scalar(value) -> str:
    """The one YAML scalar writer: round-trips exactly (strings always quoted; floats always carry a '.'
    so PyYAML reads 1e-05 back as a float). The `yaml` template filter and the torchtune worker use it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        text = repr(value)  # YAML 1.1 (PyYAML) reads 1e-05 as a string: write 1.0e-05
        mantissa, _, exponent = text.partition("e")
        if exponent and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    return yaml_quote(str(value))


_yaml_scalar = yaml_scalar  # the name templates' filter table used


def _yaml_flow(value) -> str:
    """A YAML flow value (JSON is valid YAML) for lists and mappings."""
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def sbatch_value(value) -> str:
    """The guard for text that reaches a job script unquoted (#SBATCH values, comment lines): a control
    character there (a newline) would end the line and run the rest as a command, so refuse it."""
    text = str(value)
    bad = _jobscript().control_char(text)
    if bad:
        from cruijff_kit.errors import UserError

        raise UserError(f"{text[:60]!r} contains {bad} and cannot go into a job script", where="job script",
                        hint="remove line breaks and control characters from names, paths and SLURM settings")
    return text


@lru_cache(maxsize=1)
def _jobscript():
    """jobscript, imported on first use (it imports settings; the filter runs thousands of times)."""
    from cruijff_kit import jobscript

    return jobscript


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        auto_reload=False,  # templates ship with the package: no stat() per file rendered
    )
    env.filters["shquote"] = lambda v: shlex.quote(sbatch_value(v) if "\x00" in str(v) else str(v))
    env.filters["sbatch_value"] = sbatch_value
    env.filters["yaml"] = _yaml_scalar
    env.filters["flow"] = _yaml_flow
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
    env.filters["pyrepr"] = repr
    return env


@lru_cache(maxsize=64)
def template(name: str):
    """A compiled template, loaded once per process (a sweep renders each thousands of times)."""
    return environment().get_template(name)


def render(template_name: str, **context) -> str:
    return template(template_name).render(**context)


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    preserved: list[str] = field(default_factory=list)  # user-edited, not overwritten

    def summary(self) -> str:
        return (f"{len(self.written)} written, {len(self.unchanged)} unchanged, "
                f"{len(self.preserved)} preserved (edited by you; use --force to overwrite)")


@dataclass
class RenderSet:
    """Files to write under `root`, committed together against the manifest."""

    root: Path
    files: dict[str, tuple[str, int | None]] = field(default_factory=dict)

    def add(self, relpath: str, text: str, *, executable: bool = False) -> None:
        self.files[relpath] = (text, 0o755 if executable else None)

    def tree(self) -> str:
        """What `--dry-run` prints: the files that would be written, as an indented tree."""
        lines, seen = [f"{self.root}/"], set()
        for rel in sorted(self.files):
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth])
                if d not in seen:
                    seen.add(d)
                    lines.append("  " * depth + parts[depth - 1] + "/")
            lines.append("  " * len(parts) + parts[-1])
        return "\n".join(lines)

    def commit(self, *, force: bool = False) -> WriteReport:
        """Write what changed: every new file goes to a temp file beside its target, all data is
        flushed to disk with one sync, then each temp file is renamed over its target (atomic per file;
        one sync instead of one fsync per file keeps a 1,000-run sweep fast). Plain string paths, one
        makedirs per folder and one read per existing file: a sweep has thousands of files."""
        import os

        manifest_path = self.root / MANIFEST
        manifest = read_json(manifest_path, {}) or {}
        before = dict(manifest)
        report = WriteReport()
        pending: list[tuple[str, str]] = []
        folders: set[str] = set()
        root = str(self.root)
        try:
            for rel, (text, mode) in sorted(self.files.items()):
                target = f"{root}/{rel}"
                data = text.encode()
                current = _read_or_none(target)
                if current is not None:
                    if current == data:
                        manifest[rel] = sha256(data)
                        report.unchanged.append(rel)
                        continue
                    edited = rel not in manifest or manifest[rel] != sha256(current)
                    if edited and not force:
                        report.preserved.append(rel)
                        continue
                folder, _, name = target.rpartition("/")
                if folder not in folders:
                    os.makedirs(folder, exist_ok=True)
                    folders.add(folder)
                tmp = f"{folder}/.{name}.ck-tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                pending.append((tmp, target))
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchmod(fd, mode if mode is not None else 0o644)
                finally:
                    os.close(fd)
                manifest[rel] = sha256(data)
                report.written.append(rel)
            if pending:
                os.sync()
            for tmp, target in pending:
                os.replace(tmp, target)
        finally:
            for tmp, _ in pending:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
        if manifest != before or not manifest_path.exists():
            write_json(manifest_path, manifest)
        return report


def _read_or_none(path: str) -> bytes | None:
    """The bytes of `path`, None when it does not exist (as Path.exists would say)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


# Blocks of experiment_summary.md that later stages rewrite in place (files.replace_block):
# the run engine owns Status, summarize owns Results; `design summary` keeps both when re-rendering.
STATUS_BLOCK = ("<!-- ck:status:start -->", "<!-- ck:status:end -->")
RESULTS_BLOCK = ("<!-- ck:results:start -->", "<!-- ck:results:end -->")

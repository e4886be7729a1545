"""Atomic file writes and small JSON helpers: nothing is ever half-written."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: str | bytes, *, mode: int | None = None) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


JSON_LIMIT = 512 * 1024 * 1024  # bytes: far above any jobs.json/state.json we write, far below memory


def read_json(path: str | Path, default=None, *, kind: type | None = None):
    """JSON from `path`, or `default` when it does not exist. A file that is not a regular file, not UTF-8,
    not JSON, huge, or (with `kind`, or a dict `default`) of the wrong type is a one-line UserError."""
    from cruijff_kit.errors import UserError

    path = Path(path)
    hint = "it is damaged: restore it, or remove it and re-run the step that writes it"
    try:
        info = path.stat()
    except FileNotFoundError:
        return default
    except OSError as exc:
        raise UserError(f"cannot be read ({exc.strerror})", where=str(path), hint="check the path") from None
    import stat

    if not stat.S_ISREG(info.st_mode):
        raise UserError("is not a regular file", where=str(path), hint="point at a JSON file")
    if info.st_size > JSON_LIMIT:
        raise UserError(f"is {info.st_size / 1e9:.1f} GB", where=str(path), hint=hint)
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", where=str(path), hint=hint) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON (line {exc.lineno}: {exc.msg})", where=str(path), hint=hint) from None
    except RecursionError:
        raise UserError("is nested too deeply", where=str(path), hint=hint) from None
    want = kind or (dict if isinstance(default, dict) else None)
    if want is not None and not isinstance(value, want):
        raise UserError(f"holds a JSON {type(value).__name__}, expected a {want.__name__}", where=str(path),
                        hint=hint)
    return value


def sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def yaml_load(text: str):
    """safe_load with libyaml's C loader when available (10x faster on 1,000-run designs)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def yaml_dump(obj) -> str:
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class NoAliases(base):  # shared lists must not become &id001 anchors in a human-edited design
        def ignore_aliases(self, data):
            return True

    return yaml.dump(obj, Dumper=NoAliases, sort_keys=False, allow_unicode=True, width=120)


def replace_block(path: str | Path, start: str, end: str, block: str) -> None:
    """Replace the text between the markers `start` and `end` (inclusive) of `path` with `block`
    (which carries the markers itself), or append it when the markers are absent. Read-modify-write
    under an exclusive lock on `path.lock`, then an atomic rename, so the run engine (Status block) and
    summarize (Results block) never lose each other's update."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else ""
        if start in text and end in text and text.index(start) < text.index(end):
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1]
            text = head + block + tail
        else:
            text = text + ("\n" if text and not text.endswith("\n") else "") + block + "\n"
        atomic_write(path, text)

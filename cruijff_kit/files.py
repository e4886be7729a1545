"""Atomic file writes, small JSON helpers and the one YAML reader: nothing is ever half-written or
half-read. Imports only the standard library, errors.py and (lazily) PyYAML, so tools/ may use it."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from cruijff_kit.errors import UserError


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


# -- YAML in: the one reader every file we parse goes through ------------------------------------
# Numbers as people write them (YAML 1.2 floats: 1e-4, 5E-5, .5, -1e3; no base-60: 0:59:00 is a string),
# and hostile input refused in
# one line instead of a traceback, minutes of CPU, gigabytes of memory or a segfault.
MAX_YAML_DEPTH = 100  # nested mappings/lists; real designs use under 10
MAX_YAML_NODES = 1_000_000  # values after alias expansion ("billion laughs" stops here)
_PRESCAN_DEPTH = 1_000  # above this the C parser's recursion could overflow the stack: refuse unparsed
FLOAT_TAG, INT_TAG = "tag:yaml.org,2002:float", "tag:yaml.org,2002:int"
# YAML 1.1 ints without the sexagesimal form: `time: 0:59:00` stays the string SLURM wants, not 3540
_INT = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class YAMLInputError(UserError, ValueError):
    """A YAML file we cannot read: one line with file:line:column, what is wrong and the fix."""


def _loader():
    """A SafeLoader (libyaml's C parser when available) with YAML 1.2 floats, no duplicate keys and
    a bounded document size; built once, on first use, so importing files.py never imports yaml."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.constructor import ConstructorError
    from yaml.nodes import MappingNode, SequenceNode

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):
        yaml_implicit_resolvers = {k: [(t, r) for t, r in v if t != FLOAT_TAG]
                                   for k, v in base.yaml_implicit_resolvers.items()}
        yaml_implicit_resolvers = {k: [(t, _INT if t == INT_TAG else r) for t, r in v]
                                   for k, v in yaml_implicit_resolvers.items()}

        def construct_document(self, node):
            if self.__dict__.get("_aliases", True):
                _measure(node, MappingNode, SequenceNode, ConstructorError)
            else:  # no alias in the text: a tree, so depth is the only bound to check
                _depth(node, MappingNode, SequenceNode, ConstructorError)
            return super().construct_document(node)

        def construct_mapping(self, node, deep=False):
            if id(node) not in self.__dict__.setdefault("_checked", set()):
                self._checked.add(id(node))
                seen = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge" or not hasattr(key_node.value, "strip"):
                        continue
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise ConstructorError(None, None, f"duplicate key '{key_node.value}' (first on line "
                                               f"{seen[key].line + 1})", key_node.start_mark)
                    seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver(FLOAT_TAG, _FLOAT_12, list("-+0123456789."))
    _LOADER = Loader
    return Loader


_LOADER = None


def _measure(root, mapping_cls, sequence_cls, error_cls) -> None:
    """Depth and size after alias expansion, without expanding (one visit per node); cycles refused."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        kids = []
        if isinstance(node, sequence_cls):
            kids = node.value
        elif isinstance(node, mapping_cls):
            kids = [n for pair in node.value for n in pair]
        if done:
            open_.discard(nid)
            size[nid] = 1 + sum(size[id(k)] for k in kids)
            depth[nid] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[nid] > MAX_YAML_NODES:
                raise error_cls(None, None, f"aliases expand to more than {MAX_YAML_NODES:,} values",
                                node.start_mark)
            if depth[nid] > MAX_YAML_DEPTH:
                raise error_cls(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", node.start_mark)
            continue
        if nid in size:
            continue
        if nid in open_:
            raise error_cls(None, None, "an alias refers to a value that contains it", node.start_mark)
        open_.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def _depth(root, mapping_cls, sequence_cls, error_cls) -> None:
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise error_cls(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", node.start_mark)
        if isinstance(node, sequence_cls):
            stack.extend((k, depth + 1) for k in node.value if not isinstance(k.value, str))
        elif isinstance(node, mapping_cls):
            stack.extend((v, depth + 1) for _, v in node.value if not isinstance(v.value, str))


_QUOTED_OR_COMMENT = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|(?:^|(?<=\s))#[^\n]*", re.M)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _quick_depth(text: str) -> int:
    """A fast upper bound of the nesting depth (flow brackets outside quotes + deepest indentation); the
    character-by-character scan, which also finds the line, runs only when this is over the limit."""
    import itertools

    brackets = _NOT_BRACKET.sub("", _QUOTED_OR_COMMENT.sub("", text))
    flow = max(itertools.accumulate((1 if b in "[{" else -1 for b in brackets),
                                    lambda depth, step: max(depth + step, 0)), default=0)
    indent = max((len(x) - len(x.lstrip(" \t-?:")) for x in text.splitlines()), default=0)
    return flow + indent


def _prescan_depth(text: str) -> tuple[int, int]:
    """(upper bound of the nesting depth, line) from the characters alone: block indentation and
    leading `- ` indicators plus open flow brackets outside quotes and comments."""
    worst, worst_line, flow = 0, 0, 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        lead = len(line) - len(line.lstrip(" \t-?:"))
        quote = ""
        for i, ch in enumerate(line):
            if quote:
                if ch == quote and not (quote == '"' and line[i - 1] == "\\"):
                    quote = ""
            elif ch in "'\"" and (i == 0 or line[i - 1] in " \t[{,:"):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
                break
            elif ch in "[{":
                flow += 1
                if lead + flow > worst:
                    worst, worst_line = lead + flow, lineno
            elif ch in "]}":
                flow = max(flow - 1, 0)
        if lead > worst:
            worst, worst_line = lead, lineno
    return worst, worst_line


def yaml_load(text: str, source: str = "<string>"):
    """Parse one YAML document safely. Raises YAMLInputError (a UserError and a ValueError) naming
    `source:line:column`, the problem and the fix; never a traceback, never minutes of work."""
    import yaml

    bound, line = _prescan_depth(text) if _quick_depth(text) > _PRESCAN_DEPTH else (0, 0)
    if bound > _PRESCAN_DEPTH:
        raise YAMLInputError(f"nested deeper than {_PRESCAN_DEPTH} levels; refusing to parse",
                             where=f"{source}:{line}", hint=f"keep nesting under {MAX_YAML_DEPTH} levels")
    loader = _loader()(text)
    loader._aliases = "*" in text  # without one, the document is a tree: no expansion to bound
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind, hint = "YAML syntax error", "fix the indentation or quoting at that line"
        if "duplicate key" in problem:
            kind, hint = "YAML error", "keep one of them"
        elif "alias" in problem or "deeper" in problem:
            kind, hint = "YAML error", "write the values out; anchors and nesting this large are not a design"
        raise YAMLInputError(f"{kind}: {problem}", where=where, hint=hint) from None
    except RecursionError:
        raise YAMLInputError(f"nested deeper than {MAX_YAML_DEPTH} levels", where=source,
                             hint=f"keep nesting under {MAX_YAML_DEPTH} levels") from None
    finally:
        loader.dispose()


def yaml_compose(text: str, source: str = "<string>"):
    """(data, node graph) of one YAML document: the data as yaml_load reads it (same checks, same errors)
    and the nodes with their line/column marks, for line-level edits that keep comments (migrate)."""
    import yaml

    data = yaml_load(text, source)
    return data, yaml.compose(text, Loader=_loader())


def decode_text(raw: bytes, source: str) -> str:
    """UTF-8 (a BOM allowed) or a one-line error naming the first bad byte's offset and line."""
    skip = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + skip
        line = raw[:at].count(b"\n") + 1
        raise YAMLInputError(f"not UTF-8 text: byte {raw[at]:#04x} at offset {at}",
                             where=f"{source}:{line}", hint="save the file as UTF-8") from None


def read_yaml(path: str | Path):
    """yaml_load of a file, with one-line errors for a missing file, a folder or bytes that are not UTF-8."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise YAMLInputError("file not found", where=str(path), hint="check the path") from None
    except IsADirectoryError:
        raise YAMLInputError("is a directory", where=str(path), hint="pass the YAML file inside it") from None
    return yaml_load(decode_text(raw, str(path)), str(path))


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

"""The one writer of every skill log (design-, scaffold-, run-experiment.log).

Entry format (one blank line ends an entry):

    [YYYY-MM-DD HH:MM:SS] ACTION: Description
    Command: {command}
    Result: {result}
    Explanation: {why}
    Input: / Calculation: / Decision: / Reasoning: / Job ID: ... (optional extra lines)

Each entry is written with one write() on an O_APPEND descriptor under an exclusive flock, so
concurrent writers (parallel agents, the local executor's workers) never interleave.
"""
from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cruijff_kit.errors import UserError

ACTION_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
HEADER_RE = re.compile(r"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\] ([A-Z][A-Z0-9_]*): ?(.*)$")
EXTRA_KEYS = ("Input", "Calculation", "Decision", "Reasoning", "Job ID", "State", "Details")
LOG_NAMES = {"design": "design-experiment.log", "scaffold": "scaffold-experiment.log",
             "run": "run-experiment.log", "summarize": "summarize-experiment.log"}


@dataclass
class Entry:
    action: str
    description: str
    command: str = ""
    result: str = ""
    explanation: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    timestamp: str = ""

    def format(self) -> str:
        def one_line(text) -> str:
            return " ".join(str(text).split())

        stamp = self.timestamp or datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"[{stamp}] {self.action}: {one_line(self.description)}",
                 f"Command: {one_line(self.command)}",
                 f"Result: {one_line(self.result)}",
                 f"Explanation: {one_line(self.explanation)}"]
        lines += [f"{key}: {one_line(value)}" for key, value in self.extra.items()]
        return "\n".join(lines) + "\n\n"


def append(log_path: str | Path, entry: Entry) -> Entry:
    if not ACTION_RE.match(entry.action):
        raise UserError(f"'{entry.action}' is not an ACTION name", path="action",
                        hint="use UPPER_SNAKE_CASE, e.g. VERIFY_MODEL")
    for key in entry.extra:
        if key not in EXTRA_KEYS:
            raise UserError(f"'{key}' is not a log field", path="extra",
                            hint=f"use one of {', '.join(EXTRA_KEYS)}")
    entry.timestamp = entry.timestamp or datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    data = entry.format().encode()
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return entry


def log(log_path, action: str, description: str, *, command: str = "", result: str = "",
        explanation: str = "", **extra: str) -> Entry:
    """Convenience wrapper: extra keyword names map to fields (job_id -> 'Job ID')."""
    named = {k.replace("_", " ").title().replace("Id", "ID"): str(v) for k, v in extra.items() if v is not None}
    return append(log_path, Entry(action, description, command, result, explanation, named))


def read(log_path: str | Path) -> list[Entry]:
    """Parse a log back into entries (for tests, status and estimates)."""
    entries: list[Entry] = []
    try:
        text = Path(log_path).read_text()
    except FileNotFoundError:
        return entries
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        m = HEADER_RE.match(lines[0])
        if not m:
            continue
        entry = Entry(action=m.group(2), description=m.group(3), timestamp=m.group(1))
        for line in lines[1:]:
            key, _, value = line.partition(": ")
            attr = {"Command": "command", "Result": "result", "Explanation": "explanation"}.get(key)
            if attr:
                setattr(entry, attr, value)
            else:
                entry.extra[key] = value
        entries.append(entry)
    return entries


# ---- the `cruijff-kit log` verb (append one entry to a skill log) ----

def configure(parser) -> None:
    parser.add_argument("action", help="UPPER_SNAKE action, e.g. VERIFY_MODEL")
    parser.add_argument("description", help="one-line description")
    parser.add_argument("--log", default="design",
                        help=f"log file, or one of {', '.join(LOG_NAMES)} (default: design)")
    parser.add_argument("--dir", default=".", help="experiment directory holding the log (default: .)")
    parser.add_argument("--command", default="", help="the command that was run")
    parser.add_argument("--result", default="", help="what it returned")
    parser.add_argument("--explanation", default="", help="why it was done / what it means")
    for key in EXTRA_KEYS:
        parser.add_argument(f"--{key.lower().replace(' ', '-')}", default=None, help=f"optional '{key}:' line")


def main(args) -> int:
    path = Path(args.dir) / LOG_NAMES.get(args.log, args.log)
    extra = {k: getattr(args, k.lower().replace(" ", "_")) for k in EXTRA_KEYS
             if getattr(args, k.lower().replace(" ", "_")) is not None}
    append(path, Entry(args.action, args.description, args.command, args.result, args.explanation, extra))
    print(f"logged {args.action} to {path}")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("log")

"""Append one entry to a skill log in the shared format (see skills/shared/logging_spec.md):

    [YYYY-MM-DD HH:MM:SS] ACTION: Description
    Command: ...
    Result: ...
    Explanation: ...
"""
from __future__ import annotations

from pathlib import Path

from cruijff_kit.logbook import EXTRA_KEYS, LOG_NAMES, Entry, append


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

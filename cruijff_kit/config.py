"""Show the resolved settings (claude.local.md, environment, defaults) and where each came from."""
from __future__ import annotations

import json


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="show")
    show = sub.add_parser("show", help="print every setting with its source")
    show.add_argument("--settings", help="path to claude.local.md (default: $CK_SETTINGS or nearest)")
    show.add_argument("--json", action="store_true", help="machine-readable output")


def main(args) -> int:
    from cruijff_kit.settings import load_settings

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

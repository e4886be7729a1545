"""`cruijff-kit migrate FILE [--write]`: convert an upstream cruijff_kit 0.3.x experiment_summary.yaml,
setup_finetune.yaml or claude.local.md. Prints every change with its reason and whatever has no
equivalent here; --write keeps FILE.bak and replaces FILE atomically (comments kept: line-level edits).
The rules live in cruijff_kit/experiment/migrate.py."""
from __future__ import annotations

import re

from cruijff_kit.experiment import layout
from cruijff_kit.experiment.migrate import plan, write


def _line_no(text: str) -> int:
    found = re.match(r"line (\d+)", text)
    return int(found.group(1)) if found else 0


def configure(parser) -> None:
    parser.add_argument("file", help="experiment_summary.yaml, setup_finetune.yaml or claude.local.md")
    parser.add_argument("--write", action="store_true", help="apply the changes (keeps FILE.bak)")


def main(args) -> int:
    m = plan(args.file)
    label = {"design": "design", "setup": layout.SETUP_FINETUNE, "settings": "claude.local.md"}[m.kind]
    edits = bool(m._edits)
    print(f"{m.path}: {label}, {len(m._edits)} change(s)" + ("" if edits else " to the file (it reads as is)"))
    for line in sorted(m.changes, key=_line_no):
        print(f"  {line}")
    for line in m.cannot:
        print(f"  cannot express: {line}")
    if not edits:
        return 0
    if args.write:
        backup = write(m)
        print(f"wrote {m.path} (original kept as {backup})")
        if m.kind == "design":
            print(f"Next: cruijff-kit validate {m.path}")
    else:
        print("dry run: nothing written; add --write to apply (FILE.bak keeps the original)")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("migrate")

"""Known models and the local tiny model.

  cruijff-kit models list [--json]          every model the registry knows (component, files, resources)
  cruijff-kit models make-tiny [DIR] [--family F] [--force] [--seed N]
                                            build a tiny model locally (no model hub); F is one of
                                            default (tiny-llama), llama3_2_instruct, llama3_1_instruct,
                                            llama3_2_base, qwen2_5_instruct, qwen2_5_base: each carries its
                                            real family's special tokens, end tokens and chat template
                                            behaviour; DIR defaults to {models_dir}/tiny-llama (or tiny-F)

A design names a model with `models.base[].registry` (or its `name`); a model that is not listed can be
used through an explicit `models.base[].component` block (see cruijff_kit/models/registry.py).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cruijff_kit.errors import UserError


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{list,make-tiny}", required=True)
    p = sub.add_parser("list", help="print the known models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("make-tiny", help="build the tiny model locally")
    p.add_argument("dir", nargs="?", help="target directory (default: {models_dir}/tiny-llama)")
    p.add_argument("--force", action="store_true", help="rebuild even if DIR already holds the tiny model")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    p.add_argument("--family", default="default",
                   help="tiny model family: default, llama3_2_instruct, llama3_1_instruct, llama3_2_base, "
                        "qwen2_5_instruct, qwen2_5_base (default: default)")


def main(args) -> int:
    return list_main(args) if args.action == "list" else make_tiny_main(args)


def list_main(args) -> int:
    from cruijff_kit.models.registry import registry

    specs = registry()
    if args.json:
        print(json.dumps({k: s.as_dict() for k, s in specs.items()}, indent=2))
        return 0
    rows = [("model", "kind", "component", "model_type", "GPUs", "min VRAM", "time", "mem")]
    for key, s in specs.items():
        rows.append((key, "instruct" if s.instruct else "base", s.component.removeprefix("torchtune.models."),
                     s.model_type, str(s.gpus), f"{s.min_gpu_vram_gb} GB" if s.min_gpu_vram_gb else "-",
                     s.resources.get("time", ""), s.resources.get("mem", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("\nbase models default to dataset_type text_completion; models needing >1 GPU use "
          "lora_finetune_distributed.")
    return 0


def make_tiny_main(args) -> int:
    from cruijff_kit.settings import load_settings

    from cruijff_kit.models.tiny_families import FAMILIES, registry_key

    if args.family not in FAMILIES:
        raise UserError(f"unknown tiny family '{args.family}'", where="--family",
                        hint=f"use one of {', '.join(FAMILIES)}")
    target = Path(args.dir) if args.dir else load_settings().models / registry_key(args.family)
    from cruijff_kit.models.tiny import make_tiny  # torch etc. are imported inside

    print(f"[models] building the tiny model in {target} ...", file=sys.stderr, flush=True)
    try:
        out = make_tiny(target, seed=args.seed, force=args.force, family=args.family)
    except FileExistsError as exc:
        raise UserError(str(exc), where=str(target), hint="choose an empty directory or pass --force") from None
    print(out)
    return 0

"""provenance.json: what one job was made from, written by the job itself next to its compute.json.

  python -m cruijff_kit.tools.provenance OUT.json --file dataset=PATH --file task_script=PATH --model base_model=DIR

Records the sha256 of each --file; for each --model dir the sha256 of config.json and of the weight index
(model.safetensors.index.json, ...) plus the list of weight files with their sizes (hashing gigabytes of
weights in every job would cost minutes); the versions of torch, torchtune, inspect-ai, transformers, peft
and cruijff_kit; the git commit of the cruijff_kit checkout (with a dirty flag); python, host and time.
A missing file is recorded as missing, never an error: provenance must not fail the job it describes.
Runs inside jobs: standard library only, never imports the CLI side.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("torch", "torchtune", "inspect-ai", "transformers", "peft", "cruijff-kit")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
VERSION = 1


def file_sha256(path: str | Path) -> str | None:
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "missing": True}
    return {"path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}


def model_record(folder: str | Path) -> dict:
    """config.json and weight index hashes, weight file names and sizes of a model or checkpoint dir
    (an `epoch_best` / `epoch_last` stand-in is the epoch the job picks: pick_epoch.resolve_dir)."""
    from cruijff_kit.tools.torchtune.pick_epoch import resolve_dir

    try:
        folder = resolve_dir(folder)[0]
    except ValueError:  # not trained (yet): recorded as missing below
        folder = Path(folder)
    if not folder.is_dir():
        return {"path": str(folder), "missing": True}
    weights = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                     and "recipe_state" not in p.parts)
    return {"path": str(folder), "config_sha256": file_sha256(folder / "config.json"),
            "index_sha256": {name: file_sha256(folder / name) for name in INDEX_FILES if (folder / name).is_file()},
            "weights": [{"file": str(p.relative_to(folder)), "bytes": p.stat().st_size} for p in weights]}


def package_versions() -> dict:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> dict:
    """The commit of the checkout cruijff_kit is imported from, if it is one (pip install -e .)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return {"commit": None}
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label:
            raise SystemExit(f"provenance: {flag} {item!r}: write LABEL=PATH")
        out[label] = value
    return out


def collect(files: dict[str, str], models: dict[str, str]) -> dict:
    return {"version": VERSION, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("CK_JOB_ID"),
            "host": platform.node(), "python": platform.python_version(),
            "files": {label: file_record(path) for label, path in files.items()},
            "models": {label: model_record(path) for label, path in models.items()},
            "packages": package_versions(), "cruijff_kit": git_commit()}


def write(path: str | Path, record: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cruijff_kit.tools.provenance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="where to write provenance.json")
    parser.add_argument("--file", action="append", default=[], metavar="LABEL=PATH", help="a file to hash")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=DIR", help="a model dir")
    args = parser.parse_args(argv)
    write(args.out, collect(_pairs(args.file, "--file"), _pairs(args.model, "--model")))
    print(f"[cruijff_kit] provenance written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

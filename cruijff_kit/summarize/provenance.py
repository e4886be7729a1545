"""Do the runs of one comparison come from the same data, models and software? (their provenance.json)

Every training job and eval cell writes provenance.json next to its compute.json (tools/provenance.py):
sha256 of its data file and task script, base model config/weight-index fingerprint, package versions,
the cruijff_kit git commit. `summarize` compares them and turns each difference into a `provenance` flag
(printed as a warning, listed in analysis/summary.md):
  * software: package versions and the cruijff_kit commit (with its dirty flag) across every job;
  * per task (one score table): the eval data file and the task script of its cells;
  * by path: a dataset file or base model dir that several jobs name but whose content differs (it
    changed between runs). Different paths are a design choice (a `model` or data variable), not a flag.
A job without provenance.json (older runs, a job that never started) is left out, never flagged.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout
from cruijff_kit.files import read_json

SHORT = 12  # hash characters shown


def read_records(c) -> dict[str, tuple[str, dict]]:
    """{job label: (task or "", record)} of every provenance.json of a Collected (runs, then cells)."""
    found: dict[str, tuple[str, dict]] = {}
    places = [(r.name, "", layout.run_dir(c.exp_dir, r.name)) for r in c.runs if r.trains]
    places += [(f"{x.run}/{x.dirname}", x.task, layout.cell_dir(c.exp_dir, x.run, x.dirname)) for x in c.cells]
    for label, task, folder in places:
        try:
            record = read_json(layout.provenance_file(folder), None, kind=dict)
        except UserError:
            record = None  # damaged: nothing to compare
        if record:
            found[label] = (task, record)
    return found


def _short(value) -> str:
    return "missing" if value is None else str(value)[:SHORT]


def _model_fingerprint(model: dict) -> str | None:
    if not isinstance(model, dict) or model.get("missing"):
        return None
    key = json.dumps([model.get("config_sha256"), model.get("index_sha256"), model.get("weights")], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def _differs(what: str, values: dict[str, list[str]]) -> str | None:
    if len(values) < 2:
        return None
    parts = [f"{value} ({', '.join(labels[:4])}{' ...' if len(labels) > 4 else ''})"
             for value, labels in sorted(values.items(), key=lambda kv: -len(kv[1]))]
    return f"{what} differs: " + " vs ".join(parts)


def differences(records: dict[str, tuple[str, dict]]) -> list[tuple[list[str], str]]:
    """(job labels involved, one line) for every way the records disagree."""
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for label, (task, rec) in records.items():
        for name, version in sorted((rec.get("packages") or {}).items()):
            groups[f"package {name}"][str(version)].append(label)
        ck = rec.get("cruijff_kit") or {}
        if ck.get("commit"):
            groups["cruijff_kit git commit"][_short(ck["commit"]) + ("+dirty" if ck.get("dirty") else "")].append(label)
        for key, entry in (rec.get("files") or {}).items():
            if not isinstance(entry, dict):
                continue
            if task:  # an eval cell: one table per task
                groups[f"{key} of task {task}"][_short(entry.get("sha256"))].append(label)
            elif entry.get("path"):
                groups[f"{key} {entry['path']}"][_short(entry.get("sha256"))].append(label)
        for key, model in (rec.get("models") or {}).items():
            if key == "base_model" and isinstance(model, dict) and model.get("path"):
                groups[f"base model {model['path']}"][_short(_model_fingerprint(model))].append(label)
    out = []
    for what, values in groups.items():
        line = _differs(what, values)
        if line:
            out.append((sorted({label for labels in values.values() for label in labels}), line))
    return out


def provenance_flags(c) -> tuple[list, str]:
    """(Flags of kind `provenance`, the one line summary.md shows) for a Collected."""
    from cruijff_kit.summarize.collect import Flag

    records = read_records(c)
    if not records:
        return [], ""
    found = differences(records)
    flags = [Flag("provenance", ", ".join(sorted({label.split("/")[0] for label in labels})), line)
             for labels, line in found]
    if found:
        return flags, (f"{len(found)} difference(s) in what the {len(records)} job(s) were made from (data, base "
                       "model, packages, git commit): see the provenance flags; compare with care")
    return flags, (f"the {len(records)} job(s) with a provenance.json agree on data, base model, packages and "
                   "git commit")



"""The JSON Schema (draft 2020-12) of experiment_summary.yaml and its problems as one-line messages: where, what
is wrong, and the fix (a "did you mean", an upstream-key migration hint, the allowed values)."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from cruijff_kit.errors import ProblemList, closest
from cruijff_kit.experiment.migrate import upstream_hint

SCHEMA_PATH = Path(__file__).with_name("schema.json")


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- schema ----------------------------------------------------------------------------------------
def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _known_keys(node: dict) -> set[str]:
    node = _resolve(node)
    keys = set(node.get("properties", {}))
    for sub in node.get("allOf", []):
        keys |= _known_keys(sub)
    return keys


def _schema_at(parts) -> dict:
    node = schema()
    for part in parts:
        node = _resolve(node)
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:
            found = None
            for sub in node.get("allOf", []):
                sub = _resolve(sub)
                if part in sub.get("properties", {}):
                    found = sub["properties"][part]
            node = found or node.get("additionalProperties") or {}
            if not isinstance(node, dict):
                node = {}
    return _resolve(node)


def _describe(error) -> tuple[str, str]:
    """(message, hint) in our words for a jsonschema error."""
    v, inst = error.validator, error.instance
    if v == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else error.message
        return f"missing required key '{name}'", f"add `{name}:`"
    if v == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        hint = closest(inst, error.validator_value)
        return f"{inst!r} is not supported", f"supported values: {choices}" + (f"; {hint}" if hint else "")
    if v == "type":
        return f"{inst!r} has the wrong type", f"expected {error.validator_value}"
    if v == "pattern":
        if error.validator_value.startswith("^[A-Za-z0-9._-]"):
            return f"{inst!r} is not a safe name", "use only letters, digits, '.', '_' and '-'"
        if error.validator_value.startswith("^[A-Za-z0-9._:,"):
            return f"{inst!r} cannot go into an #SBATCH line", "use letters, digits and . _ : , - only"
        if "\\d{4}" in error.validator_value or "[0-9]{4}" in error.validator_value:
            return f"{inst!r} is not a date", "write YYYY-MM-DD"
        return f"{inst!r} does not match the expected form", f"pattern {error.validator_value}"
    if v in ("minimum", "exclusiveMinimum", "maximum"):
        return f"{inst!r} is out of range", error.message.replace(repr(inst), "value")
    if v == "minItems":
        return "must not be empty", "give at least one value"
    if v == "minLength":
        return "must not be empty", "give a value"
    if v == "maxLength":
        return f"is {len(inst)} characters long", f"use at most {error.validator_value}"
    if v == "not":
        return f"{inst!r} is not allowed here", "choose another name"
    if v == "anyOf":  # a did-you-mean from the forms' enums, and the node's description as the fix
        words = [c for sub in error.validator_value if isinstance(sub, dict) for c in sub.get("enum", ())]
        near = closest(inst, words) if isinstance(inst, str) and words else ""
        hint = error.schema.get("description") or "see the schema for the accepted forms"
        return f"{inst!r} is not valid here", (f"{near} " if near else "") + hint
    return error.message.splitlines()[0], ""


@lru_cache(maxsize=1)
def fast_check():
    """schema.json compiled once into a yes/no check (schema_fast); None if it cannot be compiled."""
    from cruijff_kit.experiment.schema_fast import compiled

    return compiled(schema())


@lru_cache(maxsize=1)
def validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def _errors(data: dict) -> list:
    """jsonschema's errors, in key-path order; none without asking it when the fast check is sure."""
    check = fast_check()
    if check is not None and check(data):
        return []
    return sorted(validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])


def schema_problems(data: dict, problems: ProblemList) -> None:
    seen = set()
    for error in _errors(data):
        parts = list(error.absolute_path)
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            known = _known_keys(_schema_at(parts))
            for key in sorted(set(error.instance) - known, key=str):  # YAML keys may be numbers too
                path = key_path(parts + [key])
                if path not in seen:
                    seen.add(path)
                    upstream = upstream_hint(path)
                    problems.error(path, upstream[0] if upstream else "unknown key",
                                   upstream[1].replace("FILE", problems.where) if upstream else
                                   closest(str(key), known) or f"known keys: {', '.join(sorted(known))}")
            continue
        if error.validator == "propertyNames":
            continue  # reported below with a suggestion
        if error.validator == "anyOf" and error.context:
            # report the most specific sub-error (enum / type) instead of "not valid"
            best = min(error.context, key=lambda e: len(list(e.absolute_path)))
            deepest = max(error.context, key=lambda e: len(list(e.absolute_path)))
            if best.validator == "enum":
                error = best
            elif isinstance(error.instance, list) and len(list(deepest.absolute_path)) > len(parts):
                error, parts = deepest, list(deepest.absolute_path)  # a list with one bad item: name the item
        message, hint = _describe(error)
        path = key_path(parts)
        if (path, message) not in seen:
            seen.add((path, message))
            problems.error(path, message, hint)
    for name in (data.get("variables") or {}) if isinstance(data.get("variables"), dict) else ():
        allowed = _resolve(schema()["$defs"]["parameter_name"])["enum"]
        if name not in allowed:
            problems.error(f"variables.{name}", "unknown parameter",
                           closest(name, allowed) or "variables name training parameters, model or dataset_label")

"""The compiled schema check (schema_fast) never calls a design valid that jsonschema rejects, and it does
say yes to the designs we ship (so validate and scaffold take the fast path)."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from cruijff_kit.experiment.schema_check import fast_check, schema, validator
from cruijff_kit.files import read_yaml

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = [ROOT / "examples/lora_rank_sweep/experiment_summary.yaml",
           ROOT / "examples/sft_then_dpo/experiment_summary.yaml",
           ROOT / "tests/golden/scaffold/experiment_summary.yaml",
           ROOT / "sanity_checks/predictable_or_not/experiment_summary.yaml"]
ODD_VALUES = [None, True, False, 0, 1, -1, 1.0, 2.5, -0.0, float("nan"), "", ".", "..", "a b", "x" * 300,
              "ok_name", "0:59:00", [], [1], ["a"], {}, {"name": "x"}, {"unknown": 1}]


def _paths(value, parts=()):
    yield parts
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*parts, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*parts, i))


def _set(data, parts, value):
    node = data
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _mutants(data, rng, n):
    paths = [p for p in _paths(data) if p]
    for _ in range(n):
        out = copy.deepcopy(data)
        parts = rng.choice(paths)
        parent = out
        for part in parts[:-1]:
            parent = parent[part]
        kind = rng.random()
        if kind < 0.6:
            _set(out, parts, copy.deepcopy(rng.choice(ODD_VALUES)))
        elif kind < 0.8 and isinstance(parent, dict):
            del parent[parts[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "lora_rnk", "name", "type", "seed", "epochs"])] = rng.choice(ODD_VALUES)
        else:
            parent.append(copy.deepcopy(rng.choice(ODD_VALUES)))
        yield out


@pytest.mark.parametrize("design", DESIGNS, ids=lambda p: p.parent.name)
def test_shipped_designs_take_the_fast_path(design):
    data = read_yaml(design)
    assert not list(validator().iter_errors(data))
    assert fast_check()(data) is True


@pytest.mark.parametrize("design", DESIGNS, ids=lambda p: p.parent.name)
def test_fast_check_never_passes_what_jsonschema_rejects(design):
    data = read_yaml(design)
    rng = random.Random(design.name + design.parent.name)
    agreed = rejected = 0
    for mutant in _mutants(data, rng, 120):
        fast = fast_check()(mutant)
        errors = list(validator().iter_errors(mutant))
        assert not (fast and errors), (mutant, [e.message for e in errors])
        agreed += fast == (not errors)
        rejected += bool(errors)
    assert rejected > 15  # the mutations do reach the schema's rules
    assert agreed > 90  # and "unsure" stays rare


def test_every_schema_keyword_is_compiled():
    """A new keyword in schema.json would silently turn the fast path off: compile it in schema_fast."""
    assert fast_check() is not None
    assert schema()["$defs"]  # the refs the compiler follows

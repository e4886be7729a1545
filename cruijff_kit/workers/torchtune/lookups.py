"""What the torchtune worker looks up, cached so a 1,000-run design asks once: our recipes and their aliases,
where a recipe module's file is, and the split sizes and longest example of a data file (for estimates and the
truncation warning)."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

RECIPE_MODULE = "cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val"
DISTRIBUTED_RECIPE = "lora_finetune_distributed"  # torchtune's own, by name
# dotted names older setup_finetune.yaml files use for our recipe -> where it lives now
RECIPE_ALIASES = {
    RECIPE_MODULE: RECIPE_MODULE,
    "tools.torchtune.custom_recipes.lora_finetune_single_device_val": RECIPE_MODULE,
    "custom_recipes.lora_finetune_single_device_val": RECIPE_MODULE,
    "lora_finetune_single_device_val": RECIPE_MODULE,
    DISTRIBUTED_RECIPE: DISTRIBUTED_RECIPE,
}
DPO_RECIPE_MODULE = "cruijff_kit.tools.torchtune.custom_recipes.lora_dpo_single_device_val"
RECIPE_ALIASES.update({DPO_RECIPE_MODULE: DPO_RECIPE_MODULE, "lora_dpo_single_device_val": DPO_RECIPE_MODULE})
DATASET_COMPONENT = "cruijff_kit.tools.torchtune.datasets.input_output_dataset"
PREFERENCE_COMPONENT = "cruijff_kit.tools.torchtune.preference.preference_dataset"


# -- recipe and data lookups (cached: a 1,000-run design asks once) --------------------------------
@cache
def module_file(dotted: str) -> str:
    """The .py file of a module, found without importing it or its packages (no torch at scaffold time)."""
    import importlib.machinery
    import importlib.util

    parts = dotted.split(".")
    spec = importlib.util.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        return ""
    locations = list(spec.submodule_search_locations)
    for i in range(1, len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), locations)
        if spec is None:
            return ""
        if i < len(parts) - 1:
            if not spec.submodule_search_locations:
                return ""
            locations = list(spec.submodule_search_locations)
    return spec.origin or ""


def recipe_arg(module: str) -> str:
    """What `tune run` takes for one of our recipes. torchtune 0.6.1 runs a custom recipe with
    runpy.run_module on the given path made relative-dotted ("a/b/c.py" -> "a.b.c"); an absolute path
    fails ("Relative module names not supported"). The package-relative path works from any directory
    where cruijff_kit is importable, which every job needs anyway (dataset components)."""
    return module.replace(".", "/") + ".py"


def resolve_recipe(name: str) -> str:
    """A dotted recipe name (or alias) -> the canonical module name / torchtune recipe; '' if unknown."""
    name = str(name).strip()
    if name.endswith(".__main__"):
        name = name[: -len(".__main__")]
    if name.endswith(".py"):
        name = name[:-3].replace("/", ".")
    return RECIPE_ALIASES.get(name, "")


def split_sizes(path: str) -> dict | None:
    """{"train": n, "validation": m, ...} of a data file; None when missing or unreadable."""
    import stat

    try:
        st = Path(path).stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
        return None
    return _split_sizes(path, st.st_mtime_ns, st.st_size)


@cache
def _split_sizes(path: str, _mtime: int, _size: int) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, list):  # preference files may be a bare list: the train split
        return {"train": len(data)}
    if not isinstance(data, dict):
        return None
    return {k: len(v) for k, v in data.items() if isinstance(v, list)}


def longest_example(path: str) -> int:
    """Characters of the longest train example (input + output) of a data file; 0 when unreadable."""
    try:
        st = Path(path).stat()
    except OSError:
        return 0
    return _longest_example(path, st.st_mtime_ns, st.st_size)


@cache
def _longest_example(path: str, _mtime: int, _size: int) -> int:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return 0
    rows = data.get("train") if isinstance(data, dict) else None
    return max((len(str(r.get("input", ""))) + len(str(r.get("output", ""))) for r in rows or ()
                if isinstance(r, dict)), default=0)


CHARS_PER_TOKEN = 4  # a rough English average: enough to warn before torchtune truncates silently

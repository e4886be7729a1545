"""cruijff_kit: plan, scaffold, run, evaluate and summarize LLM fine-tuning experiments.

The CLI side of the package never imports torch, torchtune or inspect_ai at import time;
code that needs them imports inside the function that runs the heavy work.

The folders are the pipeline (see docs/architecture.md): experiment/ (the model), design/ (stage 1),
scaffold/ (stage 2), run/ (stage 3), summarize/ (stage 4), with compute/, workers/, models/ and tools/
beside them. Verbs that used to be top-level modules keep their old `python -m cruijff_kit.<name>` and
import names through the small alias table below.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# old module name -> where it lives now. `python -m cruijff_kit.validate` and
# `import cruijff_kit.validate` keep working for scripts and habits written against earlier layouts.
MOVED_MODULES = {
    "cruijff_kit.config": "cruijff_kit.settings",
    "cruijff_kit.log": "cruijff_kit.logbook",
    "cruijff_kit.validate": "cruijff_kit.design.validate",
    "cruijff_kit.estimate": "cruijff_kit.design.estimate",
    "cruijff_kit.task": "cruijff_kit.design.task",
    "cruijff_kit.setup_finetune": "cruijff_kit.scaffold.setup_finetune",
    "cruijff_kit.generate": "cruijff_kit.scaffold.generate",
    "cruijff_kit.status": "cruijff_kit.run.status",
    "cruijff_kit.cancel": "cruijff_kit.run.cancel",
    "cruijff_kit.resubmit": "cruijff_kit.run.resubmit",
    "cruijff_kit.prefs": "cruijff_kit.workers.prefs.cli",
    "cruijff_kit.losses": "cruijff_kit.workers.torchtune.losses",
    "cruijff_kit.view": "cruijff_kit.workers.inspect.view",
    "cruijff_kit.prompts": "cruijff_kit.workers.inspect.prompts",
    "cruijff_kit.wandb_sync": "cruijff_kit.summarize.wandb",
}


class _MovedModuleLoader(importlib.abc.Loader):
    """Imports resolve to the real module object; `python -m` runs the real module's code as __main__."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # the real module is already executed
        return None

    def get_code(self, fullname):  # runpy (`python -m`) asks for code to run as __main__
        real = importlib.util.find_spec(self.target)
        return real.loader.get_code(self.target)

    def is_package(self, fullname) -> bool:
        return False


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new))


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())

"""inspect-ai model provider ``cruijff_hf``: inspect's hf provider plus what an eval cell must guarantee.

Two model_args on top of the hf provider's (both removed before transformers sees the rest):

* ``stop_token_ids``: every end token training puts in the loss stops generation (they become the
  model's ``generation_config.eos_token_id``), whatever the model's own generation_config says.
* ``adapter_path``: a PEFT adapter merged into the loaded base model's weights in memory (no merged copy
  on disk); ``model_path`` is then the base model.

A grouped eval job (run_group.py) loads the base once and calls ``use_adapter`` per epoch: the weights the
previous adapter changed are put back from the base's files before the next one is merged. Every load
prints one ``[cruijff_kit] model loaded: DIR (load N in this process)`` line (the job log counts them).

The prompt format comes in as the hf provider's ``chat_template`` model_arg (see prompt_format.py).
Importing this module imports inspect_ai; call ``register()`` before ``inspect_ai.eval``.
"""
from __future__ import annotations

from pathlib import Path

NAME = "cruijff_hf"
LOADED = "model loaded:"  # the log line of every load
_REGISTERED: list = []
_LOADS: list[str] = []  # model dirs loaded in this process, in order


def loads() -> list[str]:
    """The model dirs this process loaded so far (one entry per load)."""
    return list(_LOADS)


def register() -> str:
    """Register the provider once; returns the model name to pass to inspect_ai.eval."""
    if not _REGISTERED:
        from inspect_ai.model import GenerateConfig, modelapi
        from inspect_ai.model._providers.hf import HuggingFaceAPI

        from cruijff_kit.tools.inspect.adapter import apply_in_memory, restore_base

        class CruijffHF(HuggingFaceAPI):
            def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                         config: GenerateConfig = GenerateConfig(), **model_args):
                stop_ids = model_args.pop("stop_token_ids", None)
                adapter = model_args.pop("adapter_path", None)
                super().__init__(model_name, base_url=base_url, api_key=api_key, config=config, **model_args)
                self.base_dir = Path(model_args.get("model_path") or model_name)
                self.adapter: str | None = None
                self.changed: set[str] = set()
                _LOADS.append(str(self.base_dir))
                print(f"[cruijff_kit] {LOADED} {self.base_dir} (load {len(_LOADS)} in this process)", flush=True)
                if adapter:
                    self.use_adapter(adapter)
                if stop_ids:
                    self.model.generation_config.eos_token_id = list(stop_ids)

            def use_adapter(self, adapter: str | Path | None) -> None:
                """Evaluate with `adapter` merged in (None: the base model itself)."""
                adapter = str(adapter) if adapter else None
                if adapter == self.adapter:
                    return
                if self.changed:
                    restore_base(self.model, self.base_dir, self.changed)
                self.adapter, self.changed = None, set()
                if adapter:
                    apply_in_memory(self.model, Path(adapter), self.base_dir, self.changed)
                    self.adapter = adapter

        @modelapi(name=NAME)
        def cruijff_hf():
            return CruijffHF

        _REGISTERED.append(cruijff_hf)
    return f"{NAME}/local"

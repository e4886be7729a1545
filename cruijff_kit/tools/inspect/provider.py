"""inspect-ai model provider ``cruijff_hf``: inspect's hf provider plus what an eval cell must guarantee.

Two model_args on top of the hf provider's (both removed before transformers sees the rest):

* ``stop_token_ids``: every end token training puts in the loss stops generation (they become the
  model's ``generation_config.eos_token_id``), whatever the model's own generation_config says.
* ``adapter_path``: a PEFT adapter merged into the loaded base model's weights in memory (no merged copy
  on disk); ``model_path`` is then the base model.

The prompt format comes in as the hf provider's ``chat_template`` model_arg (see prompt_format.py).
Importing this module imports inspect_ai; call ``register()`` before ``inspect_ai.eval``.
"""
from __future__ import annotations

from pathlib import Path

NAME = "cruijff_hf"
_REGISTERED: list = []


def register() -> str:
    """Register the provider once; returns the model name to pass to inspect_ai.eval."""
    if not _REGISTERED:
        from inspect_ai.model import GenerateConfig, modelapi
        from inspect_ai.model._providers.hf import HuggingFaceAPI

        from cruijff_kit.tools.inspect.adapter import apply_in_memory

        class CruijffHF(HuggingFaceAPI):
            def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                         config: GenerateConfig = GenerateConfig(), **model_args):
                stop_ids = model_args.pop("stop_token_ids", None)
                adapter = model_args.pop("adapter_path", None)
                super().__init__(model_name, base_url=base_url, api_key=api_key, config=config, **model_args)
                if adapter:
                    apply_in_memory(self.model, Path(adapter), Path(model_args.get("model_path") or model_name))
                if stop_ids:
                    self.model.generation_config.eos_token_id = list(stop_ids)

        @modelapi(name=NAME)
        def cruijff_hf():
            return CruijffHF

        _REGISTERED.append(cruijff_hf)
    return f"{NAME}/local"

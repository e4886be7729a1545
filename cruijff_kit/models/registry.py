"""Known base models: plain data + lookup (no heavy imports; `cruijff-kit models list` prints it).

Each entry tells the torchtune worker everything a finetune.yaml needs besides the training controls:
the LoRA builder (`component`, verified to exist in torchtune 0.6.1), its extra architecture kwargs
(only the locally built tiny model has any), the tokenizer builder and its files (relative to the model
directory), the checkpoint files (a list, or torchtune's `{filename_format, max_filename}` form for many
shards), the checkpointer `model_type`, whether the model is instruction-tuned (base models default to
`text_completion`, no chat template), the smallest GPU it trains on, and default SLURM resources.
Models that need several GPUs (`resources.gpus > 1`) train with torchtune's `lora_finetune_distributed`
recipe under `tune run --nproc_per_node N`.

A design names a model through `models.base[].registry` (or, failing that, its `name`). A model that
is not listed here can still be used by giving `models.base[].component`:

    component:
      model: {_component_: torchtune.models.qwen2_5.lora_qwen2_5_7b_instruct}   # + any extra kwargs
      tokenizer: {_component_: torchtune.models.qwen2_5.qwen2_5_tokenizer, path: vocab.json, merges_file: merges.txt}
      checkpoint_files: [model-00001-of-00004.safetensors, ...]
      model_type: QWEN2
      instruct: true            # optional (default true)
      gpus: 1                   # optional (default 1)
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from cruijff_kit.errors import UserError, closest

LLAMA3_TOKENIZER = "torchtune.models.llama3.llama3_tokenizer"
QWEN2_5_TOKENIZER = "torchtune.models.qwen2_5.qwen2_5_tokenizer"
MODEL_TYPES = ("LLAMA2", "LLAMA3", "LLAMA3_2", "QWEN2", "MISTRAL", "GEMMA", "GEMMA2", "PHI3_MINI")
SINGLE_DEVICE = "single_device"
DISTRIBUTED = "distributed"


@dataclass(frozen=True)
class ModelSpec:
    key: str
    component: str  # the torchtune LoRA builder
    tokenizer: str  # the torchtune tokenizer builder
    tokenizer_files: dict  # tokenizer kwarg -> file relative to the model dir
    checkpoint_files: list | dict  # list of files, or {"filename_format": ..., "max_filename": ...}
    model_type: str
    instruct: bool
    size_gb: float  # bf16 weights on disk
    min_gpu_vram_gb: int
    resources: dict = field(default_factory=dict)  # default SLURM: time, mem, cpus, gpus
    arch: dict = field(default_factory=dict)  # extra builder kwargs (architecture) for generic builders
    tokenizer_args: dict = field(default_factory=dict)  # extra tokenizer kwargs that are not files
    hf_id: str = ""
    notes: str = ""

    @property
    def gpus(self) -> int:
        return int(self.resources.get("gpus", 1))

    @property
    def recipe(self) -> str:
        return DISTRIBUTED if self.gpus > 1 else SINGLE_DEVICE

    def as_dict(self) -> dict:
        out = asdict(self)
        out["recipe"] = self.recipe
        return out


def _shards(n: int) -> list[str]:
    return [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def _res(time: str, mem: str, cpus: int, gpus: int) -> dict:
    return {"time": time, "mem": mem, "cpus": cpus, "gpus": gpus}


_LLAMA_TOK = {"path": "original/tokenizer.model"}
_QWEN_TOK = {"path": "vocab.json", "merges_file": "merges.txt"}


def _tiny_specs() -> list[ModelSpec]:
    """One entry per tiny family (tiny-llama is the default family; tiny-<family> the others)."""
    from cruijff_kit.models.tiny_families import FAMILIES, KINDS, registry_key

    out = []
    for name, fam in FAMILIES.items():
        kind = KINDS[fam.kind]
        arch = {k: v for k, v in kind.component.items() if k != "_component_"}
        out.append(ModelSpec(registry_key(name), kind.component["_component_"], kind.tokenizer_component,
                             dict(kind.tokenizer_files), ["model.safetensors"], kind.model_type, fam.instruct,
                             0.04, 0, _res("00:30:00", "8G", 2, 0), arch=arch,
                             notes=f"built locally: cruijff-kit models make-tiny DIR --family {name} "
                                   f"(CPU, tests and sanity checks; {fam.note})"))
    return out


def _build() -> dict[str, ModelSpec]:
    specs = [
        ModelSpec("Llama-3.2-1B", "torchtune.models.llama3_2.lora_llama3_2_1b", LLAMA3_TOKENIZER, _LLAMA_TOK,
                  ["model.safetensors"], "LLAMA3_2", False, 2.5, 16, _res("02:00:00", "32G", 4, 1),
                  hf_id="meta-llama/Llama-3.2-1B"),
        ModelSpec("Llama-3.2-1B-Instruct", "torchtune.models.llama3_2.lora_llama3_2_1b", LLAMA3_TOKENIZER,
                  _LLAMA_TOK, ["model.safetensors"], "LLAMA3_2", True, 2.5, 16, _res("02:00:00", "32G", 4, 1),
                  hf_id="meta-llama/Llama-3.2-1B-Instruct"),
        ModelSpec("Llama-3.2-3B-Instruct", "torchtune.models.llama3_2.lora_llama3_2_3b", LLAMA3_TOKENIZER,
                  _LLAMA_TOK, _shards(2), "LLAMA3_2", True, 6.4, 24, _res("04:00:00", "48G", 4, 1),
                  hf_id="meta-llama/Llama-3.2-3B-Instruct"),
        ModelSpec("Llama-3.1-8B-Instruct", "torchtune.models.llama3_1.lora_llama3_1_8b", LLAMA3_TOKENIZER,
                  _LLAMA_TOK, _shards(4), "LLAMA3", True, 16.1, 40, _res("08:00:00", "96G", 8, 1),
                  hf_id="meta-llama/Llama-3.1-8B-Instruct"),
        ModelSpec("Llama-3.3-70B-Instruct", "torchtune.models.llama3_3.lora_llama3_3_70b", LLAMA3_TOKENIZER,
                  _LLAMA_TOK, {"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00030"},
                  "LLAMA3", True, 141.0, 80, _res("24:00:00", "480G", 16, 4),
                  hf_id="meta-llama/Llama-3.3-70B-Instruct",
                  notes="4 x 80 GB GPUs, FSDP (lora_finetune_distributed)"),
        ModelSpec("Qwen2.5-3B", "torchtune.models.qwen2_5.lora_qwen2_5_3b", QWEN2_5_TOKENIZER, _QWEN_TOK,
                  _shards(2), "QWEN2", False, 6.2, 24, _res("04:00:00", "48G", 4, 1), hf_id="Qwen/Qwen2.5-3B"),
        ModelSpec("Qwen2.5-3B-Instruct", "torchtune.models.qwen2_5.lora_qwen2_5_3b", QWEN2_5_TOKENIZER,
                  _QWEN_TOK, _shards(2), "QWEN2", True, 6.2, 24, _res("04:00:00", "48G", 4, 1),
                  hf_id="Qwen/Qwen2.5-3B-Instruct"),
        *_tiny_specs(),
    ]
    return {s.key: s for s in specs}


_REGISTRY: dict[str, ModelSpec] | None = None


def registry() -> dict[str, ModelSpec]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _build()
    return _REGISTRY


def known() -> list[str]:
    return list(registry())


def get(key: str) -> ModelSpec | None:
    return registry().get(key)


def lookup(*, name: str, registry_key: str = "", component: dict | None = None,
           where: str = "", path: str = "") -> ModelSpec:
    """The spec for a design's `models.base[]` entry: explicit component block > registry key > name."""
    if component:
        return from_component(component, name=name, where=where, path=f"{path}.component" if path else "component")
    key = registry_key or name
    spec = registry().get(key)
    if spec is None:
        hint = closest(key, registry()) or ""
        raise UserError(f"'{key}' is not a known model", where=where, path=f"{path}.registry" if registry_key
                        else f"{path}.name" if path else "",
                        hint=(hint + "; " if hint else "") + f"known: {', '.join(registry())}; "
                        "or give models.base[].component (see `cruijff-kit models list`)")
    return spec


def component_problems(block: dict) -> list[tuple[str, str, str]]:
    """(key path, message, hint) for each problem of an explicit component block."""
    out = []
    if not isinstance(block, dict):
        return [("", "must be a mapping", "give model, tokenizer, checkpoint_files and model_type")]
    for key in ("model", "tokenizer"):
        node = block.get(key)
        if not isinstance(node, dict) or not str(node.get("_component_", "")).startswith("torchtune."):
            out.append((key, "needs a mapping with a torchtune `_component_`",
                        f"e.g. {key}: {{_component_: torchtune.models....}}"))
    for key in ("model", "tokenizer"):
        node = block.get(key)
        for name in (node if isinstance(node, dict) else {}):
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
                out.append((f"{key}.{name}", "is not a keyword argument name", "use letters, digits and _"))
    tok = block.get("tokenizer")
    if isinstance(tok, dict) and not tok.get("path"):
        out.append(("tokenizer.path", "missing", "give the tokenizer file relative to the model directory"))
    files = block.get("checkpoint_files")
    if not (isinstance(files, list) and files and all(isinstance(f, str) for f in files)) and not (
            isinstance(files, dict) and {"filename_format", "max_filename"} <= set(files)):
        out.append(("checkpoint_files", "must be a list of file names (or filename_format + max_filename)",
                    "e.g. checkpoint_files: [model.safetensors]"))
    if block.get("model_type") not in MODEL_TYPES:
        out.append(("model_type", f"{block.get('model_type')!r} is not a torchtune model type",
                    f"use one of {', '.join(MODEL_TYPES)}"))
    unknown = set(block) - {"model", "tokenizer", "checkpoint_files", "model_type", "instruct", "gpus",
                            "min_gpu_vram_gb", "size_gb"}
    for key in sorted(unknown):
        out.append((key, "unknown key", closest(key, ["model", "tokenizer", "checkpoint_files", "model_type",
                                                      "instruct", "gpus"]) or "remove it"))
    return out


def from_component(block: dict, *, name: str, where: str = "", path: str = "component") -> ModelSpec:
    problems = component_problems(block)
    if problems:
        key, message, hint = problems[0]
        raise UserError(message, where=where, path=f"{path}.{key}" if key else path, hint=hint)
    model = dict(block["model"])
    tok = dict(block["tokenizer"])
    tok.pop("_component_")
    files = {k: tok.pop(k) for k in ("path", "merges_file", "special_tokens_path") if k in tok}
    tok.pop("max_seq_len", None)  # set from the controls
    gpus = int(block.get("gpus", 1))
    return ModelSpec(
        key=name, component=model.pop("_component_"), tokenizer=block["tokenizer"]["_component_"],
        tokenizer_files=files, tokenizer_args=tok,
        checkpoint_files=block["checkpoint_files"], model_type=block["model_type"],
        instruct=bool(block.get("instruct", True)), size_gb=float(block.get("size_gb", 0)),
        min_gpu_vram_gb=int(block.get("min_gpu_vram_gb", 0)), resources={"gpus": gpus}, arch=model,
        notes="explicit component block")

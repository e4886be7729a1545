"""Where an eval cell's model is loaded: on one device, or spread over every GPU of the job.

A model that needs several GPUs (the registry's `resources.gpus > 1`, e.g. 70B on 4) cannot be loaded onto
one: eval_config.yaml then says `device_map: balanced`, and the hf provider loads it with
``device_map="balanced"`` and a ``max_memory`` per visible GPU (a share of each GPU's memory, the rest left
for activations and the KV cache). On one GPU, or on the CPU, the model goes to `device` as before.
Pure functions (no torch here): run_cell passes the GPU memory sizes it reads from torch.
"""
from __future__ import annotations

SPREAD = "balanced"  # transformers device_map: layers spread evenly over the GPUs in max_memory
WEIGHT_SHARE = 0.85  # of each GPU's memory for weights; the rest for activations and the KV cache


def wants_spread(device: str, gpus: int) -> bool:
    """A job on several GPUs with device cuda spreads its model (rendered as eval_config `device_map`)."""
    return str(device) == "cuda" and int(gpus or 0) > 1


def load_args(device: str, device_map: str | None, gpu_memory: list[int]) -> dict:
    """model_args that place the model: {"device": ...} plus {"max_memory": {gpu: "NGiB"}} when spread.

    gpu_memory: total bytes of each GPU this job sees (torch.cuda.get_device_properties(i).total_memory).
    Spread only when eval_config asks for it and more than one GPU is visible."""
    if not device_map or str(device) != "cuda" or len(gpu_memory) < 2:
        return {"device": device}
    return {"device": device_map,
            "max_memory": {i: f"{max(1, int(size * WEIGHT_SHARE / 2**30))}GiB" for i, size in enumerate(gpu_memory)}}


def visible_gpu_memory() -> list[int]:
    """Total bytes of each GPU visible to this process ([] without CUDA); imports torch."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]

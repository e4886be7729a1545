"""Cross entropy from the logits of the label positions only.

torchtune's ``CEWithChunkedOutputLoss`` path projects every position of the batch onto the vocabulary and
then throws away the positions whose label is ``ignore_index``: the prompt, under output-only training
(``train_on_input: false``), and the padding. With a 128k vocabulary that projection is most of a step when
answers are short. Here the decoder stops at its final norm, the positions that carry a label are picked
out, and only they go through the output layer, in chunks, each chunk upcast to fp32 inside the loss like
torchtune does. The loss is the same mean over label tokens (float summation order aside; the tests compare
it with torchtune's loss on the same batch), and so are the gradients.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


def is_chunked_cross_entropy(loss_fn) -> bool:
    """The loss is torchtune's CEWithChunkedOutputLoss (checked by class name, no torchtune import needed)."""
    return loss_fn.__class__.__name__ == "CEWithChunkedOutputLoss"


def supports(model, loss_fn, compiled: bool) -> bool:
    """True when the loss is torchtune's chunked cross entropy on a decoder with ``norm``/``output``/``unembed``
    (and nothing is compiled, so no graph was traced through ``unembed``)."""
    return (not compiled and is_chunked_cross_entropy(loss_fn)
            and all(hasattr(model, name) for name in ("norm", "output", "unembed")))


@contextmanager
def hidden_state_output(model):
    """While open, ``model(...)`` returns the final normed hidden state [b, s, d] instead of logits."""
    # An instance attribute shadows TransformerDecoder.unembed; object.__setattr__ keeps nn.Module from
    # registering the norm a second time as a submodule (it would show up in state_dict()).
    object.__setattr__(model, "unembed", model.norm)
    try:
        yield
    finally:
        del model.unembed


def label_cross_entropy(model, inputs: dict, targets: torch.Tensor, ignore_index: int, chunks: int) -> torch.Tensor:
    """Mean cross entropy over the positions of ``targets`` (already shifted: the token each position must
    predict) that are not ``ignore_index``; ``inputs`` are the model's keyword inputs."""
    with hidden_state_output(model):
        hidden = model(**inputs)
    keep = targets != ignore_index
    hidden, targets = hidden[keep], targets[keep]
    if targets.numel() == 0:
        return hidden.sum() * 0.0  # a batch without labels: zero loss, still attached to the graph
    chunks = max(chunks, 1)
    total = sum(F.cross_entropy(model.output(h).float(), t, reduction="sum")
                for h, t in zip(hidden.chunk(chunks), targets.chunk(chunks)))
    return total / targets.numel()

"""label_logits: the recipe's cross entropy from label positions only equals torchtune's chunked loss, in value
and in every LoRA gradient, on a real torchtune LoRA Llama-3.2 decoder (tied and untied output, LoRA on the
output layer, a batch with padding and masked prompts, a batch with no label at all)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchtune")

import torch.nn.functional as F  # noqa: E402
from torchtune.models.llama3._component_builders import lora_llama3  # noqa: E402
from torchtune.models.llama3_2._component_builders import lora_llama3_2  # noqa: E402
from torchtune.modules.loss import CEWithChunkedOutputLoss  # noqa: E402
from torchtune.modules.peft import get_adapter_params, set_trainable_params  # noqa: E402

from cruijff_kit.tools.torchtune import label_logits  # noqa: E402

IGNORE = -100
VOCAB = 512


def make_model(tied: bool, lora_output: bool):
    torch.manual_seed(0)
    dims = dict(vocab_size=VOCAB, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, max_seq_len=64,
                intermediate_dim=64, lora_rank=4, lora_alpha=8)
    if lora_output:  # Llama-3.2 refuses LoRA on a tied output layer; Llama-3.1's builder has its own
        model = lora_llama3(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, apply_lora_to_output=True,
                            **dims)
    else:
        model = lora_llama3_2(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, tie_word_embeddings=tied,
                              **dims)
    for name, p in model.named_parameters():  # LoRA B starts at zero: make the adapters matter
        if "lora_b" in name:
            torch.nn.init.normal_(p, std=0.02)
    set_trainable_params(model, get_adapter_params(model))
    return model


def batch(masked_rows: int = 0):
    torch.manual_seed(1)
    tokens = torch.randint(0, VOCAB, (3, 24))
    labels = tokens.clone()
    labels[:, :15] = IGNORE  # the prompt, as with train_on_input: false
    labels[2, 20:] = IGNORE  # padding at the end of a shorter row
    labels[:masked_rows] = IGNORE
    return tokens, F.pad(labels[..., 1:], (0, 1), value=IGNORE)


def torchtune_loss(model, tokens, targets):
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=8)
    model.set_num_output_chunks(8)
    return loss_fn(model(tokens=tokens), targets)


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("tied,lora_output", [(True, False), (False, False), (False, True)])
def test_same_loss_and_gradients_as_torchtune(tied, lora_output):
    model = make_model(tied, lora_output)
    tokens, targets = batch()
    ours = label_logits.label_cross_entropy(model, {"tokens": tokens}, targets, IGNORE, chunks=8)
    theirs = torchtune_loss(model, tokens, targets)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert ours.item() > 1.0  # a real loss over 512 classes, not a zero from an empty selection
    g_ours, g_theirs = grads(model, ours), grads(model, torchtune_loss(model, tokens, targets))
    assert g_ours.keys() == g_theirs.keys() and len(g_ours) > 10
    if lora_output:
        assert any(n.startswith("output.lora") for n in g_ours)
    for name in g_ours:
        torch.testing.assert_close(g_ours[name], g_theirs[name], rtol=1e-4, atol=1e-6, msg=name)


def test_model_is_left_as_it_was():
    model = make_model(True, False)
    keys = set(model.state_dict())
    tokens, targets = batch()
    label_logits.label_cross_entropy(model, {"tokens": tokens}, targets, IGNORE, chunks=4)
    assert set(model.state_dict()) == keys  # the norm was not registered a second time
    model.set_num_output_chunks(0)
    assert model(tokens=tokens).shape == (3, 24, VOCAB)  # unembed is the model's own again


def test_a_batch_without_labels_gives_zero_loss_that_backpropagates():
    model = make_model(True, False)
    tokens, targets = batch(masked_rows=3)
    loss = label_logits.label_cross_entropy(model, {"tokens": tokens}, targets, IGNORE, chunks=8)
    assert loss.item() == 0.0
    loss.backward()  # no error: still part of the graph


def test_used_only_for_the_chunked_loss_without_compile():
    model = make_model(True, False)
    assert label_logits.supports(model, CEWithChunkedOutputLoss(), compiled=False)
    assert not label_logits.supports(model, CEWithChunkedOutputLoss(), compiled=True)
    assert not label_logits.supports(model, torch.nn.CrossEntropyLoss(), compiled=False)

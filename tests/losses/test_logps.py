"""Chunked label log-probabilities equal log_softmax + gather on the full logits (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from tuneforge.losses import logits_token_logps, model_token_logps, sequence_logps, shift_labels, token_logps
from tuneforge.testing import build_tiny_model

B, T, H, V = 3, 6, 8, 50


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=gen).requires_grad_()
    weight = torch.randn(V, H, generator=gen).requires_grad_()
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[0, :2] = -100  # prompt
    labels[1, 4:] = -100  # padding
    labels[2, :] = -100  # nothing trained in this row
    return hidden, weight, labels


def _reference(logits, labels):
    """The full-vocabulary fp32 log_softmax that LLaMA-Factory uses, with 0 at ignored positions."""
    logps = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logps * (labels != -100)


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_token_logps_equal_full_log_softmax(chunk_size):
    hidden, weight, labels = _problem()
    ours = token_logps(hidden, weight, labels, chunk_size=chunk_size)
    ref = _reference(hidden @ weight.T, labels)
    assert ours.shape == (B, T) and ours.dtype == torch.float32
    assert (ours[labels == -100] == 0).all()
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    probe = torch.randn(B, T)  # an arbitrary upstream gradient
    g_ours = torch.autograd.grad((ours * probe).sum(), (hidden, weight))
    g_ref = torch.autograd.grad((ref * probe).sum(), (hidden, weight))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_logits_token_logps_equal_full_log_softmax():
    hidden, weight, labels = _problem(seed=1)
    logits = (hidden @ weight.T).detach().requires_grad_()
    ours = logits_token_logps(logits, labels, chunk_size=3)
    ref = _reference(logits, labels)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-6, atol=1e-6)


def test_sequence_logps_sum_and_average():
    """Row 0 trains 3 tokens: sum −1 −2 −3 = −6, mean −2. Row 1 trains 1 token: −4 / −4. Row 2 trains none: 0 / 0."""
    logps = torch.tensor([[0.0, -1.0, -2.0, -3.0], [-4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    labels = torch.tensor([[-100, 5, 6, 7], [9, -100, -100, -100], [-100, -100, -100, -100]])
    assert sequence_logps(logps, labels).tolist() == [-6.0, -4.0, 0.0]
    assert sequence_logps(logps, labels, average=True).tolist() == [-2.0, -4.0, 0.0]


def test_uniform_logits_give_minus_log_vocab():
    """All-zero hidden states make every logit 0, so every trained token has log-probability −log V."""
    hidden = torch.zeros(1, 4, H)
    labels = torch.tensor([[-100, 3, 7, 1]])
    ours = token_logps(hidden, torch.randn(V, H), labels)
    expected = torch.tensor([[0.0, -math.log(V), -math.log(V), -math.log(V)]])
    torch.testing.assert_close(ours, expected)


def test_model_token_logps_match_the_model_logits():
    model = build_tiny_model("qwen2", seed=0)
    ids = torch.randint(5, 1024, (2, 8), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :3] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    ours, shifted = model_token_logps(model, batch, chunk_size=5)
    assert torch.equal(shifted, shift_labels(labels))
    ref = _reference(model(input_ids=ids).logits, shifted)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the reference-model path: no graph, no checkpointing
        frozen, _ = model_token_logps(model, batch)
    assert not frozen.requires_grad
    torch.testing.assert_close(frozen, ours.detach())


def test_no_vocabulary_wide_tensor_is_kept_for_backward():
    """Like the CE path: only hidden states and index vectors are saved outside the recomputed chunks."""
    hidden, weight, labels = _problem()
    saved = []

    def pack(tensor):
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logps = token_logps(hidden, weight, labels, chunk_size=2)
    assert all(V not in shape for shape in saved), saved
    logps.sum().backward()
    assert weight.grad.abs().sum() > 0

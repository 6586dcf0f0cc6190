"""Per-token and per-sequence log-probabilities of label tokens, for the preference and RL losses.

``log π(y|x) = Σ_t log softmax(z_t)[y_t]`` over the response tokens (Rafailov et al. 2023, the ``log π_θ(y|x)``
of eq. 7). ``log softmax(z)[y] = z_y − logsumexp(z)``, so only one fp32 ``[chunk, V]`` block is ever live: each
chunk of trained tokens is projected, upcast, reduced to ``z_y`` and ``logsumexp`` and dropped, and activation
checkpointing rebuilds it for the backward pass. LLaMA-Factory instead runs a full-vocabulary fp32 ``log_softmax``
over the whole batch (``get_batch_logps``), 4·B·T·V bytes before the backward doubles it.

All functions take labels that are **already shifted** (label t is the token that position t predicts; see
:func:`tuneforge.losses.ce.shift_labels`) and give 0 at positions whose label is ``ignore_index``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.forward import forward_hidden
from ._chunked import map_trained_chunks, trained_index
from .ce import IGNORE_INDEX, shift_labels


def _token_logps(
    hidden: Tensor,
    labels: Tensor,
    project: Callable[[Tensor], Tensor],
    transform: Callable[[Tensor], Tensor] | None,
    chunk_size: int,
    ignore_index: int,
) -> Tensor:
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1).to(hidden.device)
    index = trained_index(flat_labels, ignore_index)

    def chunk_logps(h: Tensor, idx: Tensor) -> Tensor:
        logits = project(h.index_select(0, idx)).float()  # [n, V], fp32 for this chunk only
        if transform is not None:
            logits = transform(logits)
        target = logits.gather(-1, flat_labels.index_select(0, idx).unsqueeze(-1)).squeeze(-1)
        return target - torch.logsumexp(logits, dim=-1)

    values = torch.cat(map_trained_chunks(chunk_logps, flat_hidden, index, chunk_size))
    out = torch.zeros(flat_labels.shape, dtype=torch.float32, device=hidden.device)
    return out.index_copy(0, index, values).view(labels.shape)


def token_logps(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """``log softmax(hidden @ weight.T + bias)[label]`` per position, in fp32, ``chunk_size`` trained tokens at a time.

    Equals ``torch.log_softmax((hidden @ weight.T).float(), -1).gather(-1, labels[..., None])`` at trained positions
    (values and gradients).

    Args:
        hidden: ``[B, T, H]`` final hidden states.
        weight: ``[V, H]`` output-embedding matrix.
        labels: ``[B, T]`` shifted target ids, ``ignore_index`` where untrained.
        bias: optional ``[V]`` output bias.
        chunk_size: trained tokens per chunk (peak extra memory ≈ ``chunk_size × V × 4`` bytes, ×2 with softmax).
        ignore_index: label value to skip.

    Returns:
        ``[B, T]`` fp32 log-probabilities, exactly 0 where ``labels == ignore_index``.
    """

    def project(h: Tensor) -> Tensor:
        return F.linear(h, weight, bias)

    return _token_logps(hidden, labels, project, None, chunk_size, ignore_index)


def logits_token_logps(
    logits: Tensor, labels: Tensor, *, chunk_size: int = 1024, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Like :func:`token_logps` when only logits exist (``[B, T, V]`` in any dtype, e.g. a value-head model's).

    The input logits are not copied to fp32 as a whole; each chunk is upcast on its own.
    """
    return _token_logps(logits, labels, lambda x: x, None, chunk_size, ignore_index)


def sequence_logps(
    token_logps: Tensor, labels: Tensor, average: bool = False, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Per-sequence sum (or mean, with ``average=True``) of ``token_logps`` over trained positions.

    ``average=True`` is the length-normalised ``(1/|y|)·log π(y|x)`` that ORPO and SimPO define their losses on
    (Hong et al. 2024; Meng et al. 2024) and that LLaMA-Factory also feeds to IPO; a sequence with no trained token
    averages to 0.

    Args:
        token_logps: ``[B, T]`` from :func:`token_logps` (0 at untrained positions).
        labels: ``[B, T]`` the same shifted labels.
        average: divide by the number of trained tokens per sequence.
        ignore_index: label value to skip.

    Returns:
        ``[B]`` fp32.
    """
    mask = labels != ignore_index
    total = (token_logps * mask).sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def model_token_logps(
    model: nn.Module,
    batch: Mapping[str, Any],
    *,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, Tensor]:
    """Run a causal LM on ``batch`` and return the token log-probabilities of its labels, chunked.

    The policy/reference forward for DPO/KTO: same model handling as :func:`tuneforge.losses.ce.causal_lm_loss`
    (PEFT and DDP wrappers, Gemma soft-capping, ``logits_to_keep=1``), then :func:`token_logps` through the head.

    Args:
        model: the causal LM (a reference model may run under ``torch.no_grad()``; no checkpointing happens then).
        batch: ``input_ids``, unshifted ``labels`` (or ``shift_labels``) and the usual optional masks/positions.
        chunk_size: trained tokens per chunk.
        ignore_index: label value to skip.

    Returns:
        ``(token_logps, shifted_labels)``, both ``[B, T]``; feed them to :func:`sequence_logps`.
    """
    labels = batch["shift_labels"] if "shift_labels" in batch else shift_labels(batch["labels"], ignore_index)
    out = forward_hidden(model, batch)
    labels = labels.to(out.hidden.device)
    return _token_logps(out.hidden, labels, out.head, out.transform, chunk_size, ignore_index), labels

"""Next-token cross-entropy for pt/sft that never builds the batch's full-vocabulary fp32 logits.

The loss is the usual language-modelling negative log-likelihood (Radford et al. 2018, "Improving Language
Understanding by Generative Pre-Training", eq. 1): ``L = −Σ_t log p(x_{t+1} | x_≤t)`` over the trained tokens,
divided by how many there are. What differs
from ``model(**batch, labels=...)`` is only where memory goes:

* the logits are computed ``chunk_size`` trained tokens at a time and upcast to fp32 one chunk at a time;
* each chunk runs under activation checkpointing, so backward recomputes its logits instead of storing them;
* prompt and padding tokens (label -100) are never projected at all.

Peak extra memory is O(chunk_size × V) instead of O(B × T × V). On a CUDA machine with Liger installed the fused
Triton kernel (``LigerFusedLinearCrossEntropyLoss``) does the same job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.forward import HeadOutput, forward_hidden
from ._chunked import map_trained_chunks, trained_index

IGNORE_INDEX = -100


def shift_labels(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Align labels with the positions that predict them: the label of position t becomes token t+1.

    The last position has nothing to predict and gets ``ignore_index``. HF models do this shift inside
    ``forward(labels=...)``; the chunked losses take already-shifted labels, so the caller shifts once::

        labels           = [[-100, -100,   7,   8,    2]]   # prompt masked, answer "7 8 <eos>"
        shift_labels(..) = [[-100,    7,   8,   2, -100]]   # position 1 must predict 7, position 3 predicts 2

    Args:
        labels: ``[B, T]`` (or any ``[..., T]``) token ids with ``ignore_index`` where nothing is trained.
        ignore_index: the label value that marks untrained positions.

    Returns:
        A new ``[B, T]`` tensor, same dtype and device.
    """
    return F.pad(labels[..., 1:], (0, 1), value=ignore_index)


def chunked_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_size: int = 1024,
    ignore_index: int = IGNORE_INDEX,
    logit_fp32: bool = True,
) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels``, ``chunk_size`` tokens at a time.

    Equals ``F.cross_entropy(hidden @ weight.T + bias, labels, ignore_index=ignore_index, reduction="sum")`` (values
    and gradients) without ever holding more than one chunk of logits.

    Args:
        hidden: ``[N, H]`` final hidden states (any float dtype; the matmul runs in it).
        weight: ``[V, H]`` output-embedding matrix.
        labels: ``[N]`` target ids, **already shifted** (see :func:`shift_labels`).
        bias: optional ``[V]`` output bias.
        chunk_size: trained tokens per chunk; peak extra memory ≈ ``chunk_size × V × 4`` bytes (×2 with the softmax).
        ignore_index: label value that is not trained; such tokens are skipped, not projected.
        logit_fp32: upcast each chunk's logits to fp32 before the softmax (HF does the same for the whole batch).

    Returns:
        ``(loss_sum, num_tokens)``: fp32 scalar sum of token losses over trained tokens (0.0, still attached to the
        graph, when there are none) and the long scalar count of trained tokens.
    """

    def project(h: Tensor) -> Tensor:
        return F.linear(h, weight, bias)

    total, count, _ = _chunked_ce(hidden, labels, project, None, chunk_size, ignore_index, logit_fp32)
    return total, count


def _chunked_ce(
    hidden: Tensor,
    labels: Tensor,
    project: Callable[[Tensor], Tensor],
    transform: Callable[[Tensor], Tensor] | None,
    chunk_size: int,
    ignore_index: int,
    logit_fp32: bool = True,
    count_hits: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(summed CE, trained-token count, argmax hits or None)``; the hits come from the same chunk logits."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1).to(hidden.device)
    index = trained_index(labels, ignore_index)

    def chunk_stats(h: Tensor, idx: Tensor) -> Tensor:
        logits = project(h.index_select(0, idx))  # [n, V] in the compute dtype
        if logit_fp32:
            logits = logits.float()
        if transform is not None:
            logits = transform(logits)
        target = labels.index_select(0, idx)
        loss = F.cross_entropy(logits, target, reduction="sum").float()
        return torch.stack([loss, (logits.argmax(-1) == target).sum().float()]) if count_hits else loss[None]

    sums = torch.stack(map_trained_chunks(chunk_stats, hidden, index, chunk_size)).sum(0)
    return sums[0], torch.tensor(index.numel(), device=hidden.device), sums[1] if count_hits else None


def _per_step(total: Tensor, count: Tensor, num_items_in_batch: int | Tensor | None) -> Tensor:
    """``total`` over the step's trained tokens (``num_items_in_batch``), else over this batch's own count."""
    denom = count.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return total / (denom.to(total.device) if torch.is_tensor(denom) else denom)


def _use_liger(requested: bool, out: HeadOutput) -> bool:
    # Liger needs the raw weight of a plain Linear head and knows no logit transform; otherwise the chunked path
    # (same memory profile, a little slower) is just as correct.
    return requested and out.hidden.is_cuda and type(out.head) is nn.Linear and out.transform is None


def _liger_sum(hidden: Tensor, head: nn.Linear, labels: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except ImportError as err:
        raise ImportError(
            "use_liger=True (enable_liger_kernel: true) needs liger-kernel, which is not installed; "
            "install it with `pip install 'tuneforge[liger]'` or set enable_liger_kernel: false"
        ) from err
    loss_fn = LigerFusedLinearCrossEntropyLoss(ignore_index=ignore_index, reduction="sum")
    labels = labels.reshape(-1)
    index = trained_index(labels, ignore_index)  # prompt and padding rows never reach the head (as in the chunks)
    rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, index)
    if index.numel() == 0:  # nothing trained: a zero that stays attached to the graph, as the chunked path gives
        zero = (rows.float().sum() + head.weight.float().sum()) * 0.0
        return zero, torch.zeros((), dtype=torch.long, device=rows.device)
    total = loss_fn(head.weight, rows, labels.index_select(0, index), head.bias)
    return total.float(), torch.tensor(index.numel(), device=hidden.device)


def causal_lm_loss(
    model: nn.Module,
    batch: Mapping[str, Any],
    *,
    num_items_in_batch: int | Tensor | None,
    chunk_size: int = 1024,
    use_liger: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Next-token loss of a causal LM on ``batch``, normalised by the trained-token count of the whole step.

    Runs ``model`` (plain HF, PEFT-wrapped, DDP/DeepSpeed-wrapped) for its last hidden state only (see
    :func:`tuneforge.model.forward.forward_hidden`) and computes :func:`chunked_cross_entropy` through its output head.

    Args:
        model: the causal LM as the trainer holds it.
        batch: ``input_ids`` and ``labels`` (unshifted, -100 where untrained) or ``shift_labels`` (already
            shifted; wins over ``labels``), plus optional ``attention_mask``, ``position_ids`` and flash-attention
            varlen kwargs (``cu_seq_lens_q/k``, ``max_length_q/k``).
        num_items_in_batch: trained tokens in the whole optimiser step (all gradient-accumulation micro-batches,
            all ranks if the trainer averages across devices). Dividing each micro-batch's sum by it makes
            batch 8 × GA 1 and batch 1 × GA 8 give the same loss and gradient. None divides by this batch's own
            count (HF's per-batch mean; 0.0 rather than NaN when no token is trained).
        chunk_size: trained tokens per logits chunk.
        use_liger: use Liger's fused linear cross-entropy when the batch is on CUDA and the head is a plain
            ``nn.Linear`` without a logit transform; otherwise the chunked path runs.
        ignore_index: label value that is not trained.

    Returns:
        ``(loss, stats)`` with ``stats = {"num_tokens": long scalar, "loss_sum": detached fp32 scalar}``. For MoE
        models that return a router ``aux_loss``, ``router_aux_loss_coef × aux_loss`` is added to ``loss`` as HF
        does, and reported as ``stats["aux_loss"]``.
    """
    labels = batch["shift_labels"] if "shift_labels" in batch else shift_labels(batch["labels"], ignore_index)
    out = forward_hidden(model, batch)
    labels = labels.to(out.hidden.device)
    if _use_liger(use_liger, out):
        total, count = _liger_sum(out.hidden, out.head, labels, ignore_index)
    else:
        total, count, _ = _chunked_ce(out.hidden, labels, out.head, out.transform, chunk_size, ignore_index)
    loss = _per_step(total, count, num_items_in_batch)
    stats = {"num_tokens": count, "loss_sum": total.detach()}
    if out.aux_loss is not None:
        loss = loss + out.aux_loss.to(loss.device)
        stats["aux_loss"] = out.aux_loss.detach()
    return loss, stats


def causal_lm_loss_with_accuracy(
    model: nn.Module, batch: Mapping[str, Any], num_items_in_batch: Tensor | int | None, *, chunk_size: int = 1024
) -> tuple[Tensor, dict[str, Tensor]]:
    """Evaluation-only twin of ``causal_lm_loss`` that also counts argmax hits, from the same chunked logits.

    One forward pass; each chunk of trained positions is projected once and gives both its summed cross-entropy
    and how many argmax predictions equal the label, so full-vocabulary logits never exist and nothing is kept
    for a later metric pass. Meant for ``torch.no_grad`` (evaluation); use ``causal_lm_loss`` for training.

    Returns:
        ``(loss, {"num_correct": float scalar, "num_tokens": long scalar})``, loss normalised as in
        ``causal_lm_loss``.
    """
    labels = batch["shift_labels"] if "shift_labels" in batch else shift_labels(batch["labels"], IGNORE_INDEX)
    out = forward_hidden(model, batch)
    total, count, correct = _chunked_ce(out.hidden, labels, out.head, out.transform, chunk_size, IGNORE_INDEX,
                                        count_hits=True)
    loss = _per_step(total, count, num_items_in_batch)
    if out.aux_loss is not None:
        loss = loss + out.aux_loss.to(loss.device)
    return loss, {"num_correct": correct, "num_tokens": count}

"""Run a per-token function over the trained tokens in chunks, recomputing each chunk in the backward pass.

Shared by :mod:`.ce` (summed cross-entropy) and :mod:`.logps` (per-token log-probabilities). The point is memory:
a ``[N, V]`` logits tensor in fp32 is 4·N·V bytes (32k tokens × 152k vocabulary = 19 GB), so it must never exist
for the whole batch. Each chunk's logits live only inside one checkpointed call; autograd keeps the chunk's inputs
(a view of ``hidden`` plus an index vector) and rebuilds the logits when the backward pass reaches it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ChunkFn = Callable[[Tensor, Tensor], Tensor]


def trained_index(labels: Tensor, ignore_index: int) -> Tensor:
    """Flat positions whose label is not ``ignore_index``: ``labels=[-100, 5, -100, 7]`` → ``tensor([1, 3])``.

    One host sync (``nonzero``); it buys skipping every prompt/padding token, which is usually the larger share of
    an SFT batch, instead of computing logits for them and throwing them away.
    """
    return (labels.reshape(-1) != ignore_index).nonzero().squeeze(-1)


def map_trained_chunks(fn: ChunkFn, hidden: Tensor, index: Tensor, chunk_size: int) -> list[Tensor]:
    """``[fn(hidden, index_chunk) for each chunk of index]``, each call under activation checkpointing.

    Args:
        fn: ``fn(hidden, idx) -> Tensor`` whose first dimension follows ``idx``; it must gather its own rows
            (``hidden.index_select(0, idx)``) so that only the index, not a copy of the rows, is kept for backward.
        hidden: ``[N, H]`` activations (any dtype).
        index: 1-D long positions into ``hidden`` (from :func:`trained_index`).
        chunk_size: rows per call; peak extra memory is about ``chunk_size × V`` fp32 logits (plus their softmax).

    Returns:
        One tensor per chunk, in order. With an empty ``index`` it is a single call on the empty index, so the
        result stays attached to the graph (a data-parallel backward then still sees every parameter used).

    Raises:
        ValueError: when ``chunk_size`` is not positive.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive number of tokens (got {chunk_size}); 1024 is the default")
    chunks = index.split(chunk_size) if index.numel() else (index,)
    if not torch.is_grad_enabled():
        return [fn(hidden, idx) for idx in chunks]
    # use_reentrant=False: parameters captured by fn's closure (the output head) get their gradients too, and no
    # input has to require grad. No randomness inside, so the RNG state need not be saved.
    return [checkpoint(fn, hidden, idx, use_reentrant=False, preserve_rng_state=False) for idx in chunks]

"""Batch collators: lists of processed rows in, tensors for the model out.

* :class:`PaddingCollator` - sft/pt rows (and left-padded prompts for generation).
* :class:`PairwiseCollator` - rm/dpo: one batch of 2n rows, the n chosen then the n rejected.
* :class:`KTOCollator` - kto: the target batch, the KL batch and the desirability tags.
* :class:`PackedCollator` - packed rows (see ``packing.py``): padding-free with restarting ``position_ids``, an
  explicit 4-D block-diagonal mask (:func:`block_causal_mask`), or flash-attention varlen kwargs.

Every collator pads labels with -100 and builds ``attention_mask`` from the row lengths (input masks are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .messages import IGNORE_INDEX

Feature = dict[str, Any]
PACKED_KEYS = ("input_ids", "labels", "position_ids", "seq_lens")


def pad_rows(
    rows: Sequence[Sequence[int]], value: int, multiple: int | None = None, side: str = "right"
) -> torch.Tensor:
    """Stack ragged rows into a ``long`` tensor padded with ``value`` to the longest row (rounded up to ``multiple``).

    ``pad_rows([[1, 2, 3], [4]], 0) == tensor([[1, 2, 3], [4, 0, 0]])``;
    with ``side="left"``: ``[[1, 2, 3], [0, 0, 4]]``.
    """
    length = max((len(r) for r in rows), default=0)
    if multiple:
        length = -(-length // multiple) * multiple
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            target = out[i, : len(row)] if side == "right" else out[i, length - len(row) :]
            target.copy_(torch.as_tensor(row, dtype=torch.long))
    return out


def _mask_rows(rows: Sequence[Sequence[int]], multiple: int | None, side: str) -> torch.Tensor:
    return pad_rows([[1] * len(r) for r in rows], 0, multiple, side)


def _pad_pair(ids: list, labels: list, pad_id: int, multiple: int | None, side: str = "right") -> dict[str, Any]:
    return {
        "input_ids": pad_rows(ids, pad_id, multiple, side),
        "attention_mask": _mask_rows(ids, multiple, side),
        "labels": pad_rows(labels, IGNORE_INDEX, multiple, side),
    }


@dataclass
class PaddingCollator:
    """Pad ``input_ids`` with ``pad_token_id``, ``labels`` with -100, and add a 0/1 ``attention_mask``.

    ``labels`` are padded on their own (for generation they are the reference reply, not aligned with the prompt).
    Example with ``pad_token_id=0``::

        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
        -> input_ids      [[5, 6, 7], [8, 0, 0]]
           attention_mask [[1, 1, 1], [1, 0, 0]]
           labels         [[-100, 6, 7], [8, -100, -100]]

    ``padding_side="left"`` pads prompts for batched generation: ``[[5, 6, 7], [0, 0, 8]]``.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_side: Literal["right", "left"] = "right"

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        batch = {
            "input_ids": pad_rows(ids, self.pad_token_id, self.pad_to_multiple_of, self.padding_side),
            "attention_mask": _mask_rows(ids, self.pad_to_multiple_of, self.padding_side),
        }
        if features and "labels" in features[0]:
            batch["labels"] = pad_rows([f["labels"] for f in features], IGNORE_INDEX, self.pad_to_multiple_of)
        return batch


@dataclass
class PairwiseCollator:
    """rm/dpo rows -> one batch of 2n: rows ``0..n-1`` are the chosen replies, ``n..2n-1`` the rejected ones.

    Example (``pad_token_id=0``), one row ``{"chosen_input_ids": [5, 6], "chosen_labels": [-100, 6],
    "rejected_input_ids": [5, 7, 8], "rejected_labels": [-100, 7, 8]}`` ->
    ``input_ids [[5, 6, 0], [5, 7, 8]]``, ``labels [[-100, 6, -100], [-100, 7, 8]]``,
    ``attention_mask [[1, 1, 0], [1, 1, 1]]``.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        ids = [f[f"{side}_input_ids"] for side in ("chosen", "rejected") for f in features]
        labels = [f[f"{side}_labels"] for side in ("chosen", "rejected") for f in features]
        return _pad_pair(ids, labels, self.pad_token_id, self.pad_to_multiple_of)


@dataclass
class KTOCollator:
    """kto rows -> the target batch, the mismatched KL batch (``kl_*``) and ``kto_tags`` (True = desirable).

    Example (``pad_token_id=0``): ``[{"input_ids": [5, 6], "labels": [-100, 6], "kl_input_ids": [5, 9, 9],
    "kl_labels": [-100, 9, 9], "kto_tags": True}]`` -> ``input_ids [[5, 6]]``, ``kl_input_ids [[5, 9, 9]]``,
    ``kl_attention_mask [[1, 1, 1]]``, ``kto_tags tensor([True])``.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        target = _pad_pair([f["input_ids"] for f in features], [f["labels"] for f in features], self.pad_token_id,
                           self.pad_to_multiple_of)
        kl = _pad_pair([f["kl_input_ids"] for f in features], [f["kl_labels"] for f in features], self.pad_token_id,
                       self.pad_to_multiple_of)
        target.update({f"kl_{key}": value for key, value in kl.items()})
        target["kto_tags"] = torch.tensor([bool(f["kto_tags"]) for f in features], dtype=torch.bool)
        return target


def block_causal_mask(
    seq_lens: Sequence[Sequence[int]], length: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Additive 4-D mask ``(B, 1, length, length)``: 0 where a token may attend, ``finfo(dtype).min`` elsewhere.

    Row ``b`` holds examples of lengths ``seq_lens[b]`` then padding; a token sees only the earlier tokens of its
    own example; a padding token sees only itself (a fully masked row would be degenerate). ``m`` = dtype min::

        block_causal_mask([[2, 1]], 4)[0, 0] == [[0, m, m, m],
                                                 [0, 0, m, m],
                                                 [m, m, 0, m],
                                                 [m, m, m, 0]]
    """
    segments = torch.empty((len(seq_lens), length), dtype=torch.long)
    for row, lens in enumerate(seq_lens):
        ids = torch.repeat_interleave(torch.arange(len(lens)), torch.as_tensor(lens, dtype=torch.long))
        segments[row, : len(ids)] = ids
        segments[row, len(ids) :] = -1 - torch.arange(length - len(ids))  # a distinct segment per pad token
    same = segments[:, :, None] == segments[:, None, :]
    allowed = same & torch.ones(length, length, dtype=torch.bool).tril()
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


def _pad_positions(rows: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """Right-pad position rows; padding counts up from 0 so it forms its own (isolated) sequence."""
    out = torch.arange(length).repeat(len(rows), 1)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        out[i, len(row) :] = torch.arange(length - len(row))
    return out


@dataclass
class PackedCollator:
    """Packed rows (``input_ids``, ``labels``, ``position_ids``, ``seq_lens``) -> model inputs.

    ``neat_packing=True`` keeps the packed examples apart; ``mask`` says how:

    * ``"position_ids"`` (default): no ``attention_mask`` at all; transformers derives the block-diagonal mask from
      the restarting ``position_ids`` (sdpa/eager need ``use_cache=False``, as in training; flash-attention derives
      ``cu_seqlens``). ``flatten=True`` concatenates the batch into one 1xN row, with no padding at all.
    * ``"4d"``: an explicit additive mask from :func:`block_causal_mask`, for backends that cannot derive it.

    ``dtype`` is the model's compute dtype (the 4-D mask is added to the attention scores, so it must match).
    ``flash_kwargs=True`` (needs ``flatten``) also returns ``cu_seq_lens_q/k`` (int32) and ``max_length_q/k`` for
    flash_attention_2 varlen. ``neat_packing=False`` reproduces LLaMA-Factory's plain packing: a 0/1 mask, so
    examples attend to each other, with positions still restarting.

    Example, two rows flattened::

        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "position_ids": [0, 1, 0], "seq_lens": [2, 1]}
        {"input_ids": [8, 9], "labels": [-100, 9], "position_ids": [0, 1], "seq_lens": [2]}
        -> input_ids [[5, 6, 7, 8, 9]], labels [[-100, 6, 7, -100, 9]], position_ids [[0, 1, 0, 0, 1]]
        (+ cu_seq_lens_q = cu_seq_lens_k = tensor([0, 2, 3, 5], dtype=int32), max_length_q = max_length_k = 2)
    """

    pad_token_id: int
    neat_packing: bool = True
    flatten: bool = True
    mask: Literal["position_ids", "4d"] = "position_ids"
    flash_kwargs: bool = False
    pad_to_multiple_of: int | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.flash_kwargs and not self.flatten:
            raise ValueError("flash_kwargs=True describes one varlen stream: set flatten=True as well")
        if self.mask not in ("position_ids", "4d"):
            raise ValueError(f"mask must be 'position_ids' or '4d', got {self.mask!r}")

    def __call__(self, features: list[Feature]) -> dict[str, Any]:
        rows = [self._flatten(features)] if self.flatten else features
        seq_lens = [list(f["seq_lens"]) for f in rows]
        batch = _pad_pair([f["input_ids"] for f in rows], [f["labels"] for f in rows], self.pad_token_id,
                          self.pad_to_multiple_of)
        length = batch["input_ids"].shape[1]
        batch["position_ids"] = _pad_positions([f["position_ids"] for f in rows], length)
        if self.neat_packing:
            batch.pop("attention_mask")
            if self.mask == "4d":
                batch["attention_mask"] = block_causal_mask(seq_lens, length, self.dtype)
        if self.flash_kwargs:
            batch.update(_varlen_kwargs(seq_lens[0], length))
        return batch

    @staticmethod
    def _flatten(features: list[Feature]) -> Feature:
        return {key: [v for f in features for v in f[key]] for key in PACKED_KEYS}


def _varlen_kwargs(seq_lens: list[int], length: int) -> dict[str, Any]:
    """Cumulative sequence lengths for flash-attention varlen; trailing padding is one more sequence."""
    lens = [n for n in seq_lens if n > 0]
    if sum(lens) < length:
        lens.append(length - sum(lens))
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lens, dtype=torch.int32), 0)
    longest = max(lens, default=0)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu.clone(), "max_length_q": longest, "max_length_k": longest}


@dataclass
class PaddingFreeCollator:
    """Unpacked sft/pt rows -> one unpadded stream, as if each row were a packed example of its own.

    Equivalent to :class:`PaddingCollator` for a causal LM (same loss and gradients), without a single pad token:
    each row keeps its own positions, and ``cu_seq_lens_q/k`` tell the attention kernel where rows start. The
    first label of each row becomes -100 (unpadded, nothing predicts a row's first token either). Example::

        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
        -> input_ids [[5, 6, 7, 8, 9]], labels [[-100, 6, 7, -100, 9]], position_ids [[0, 1, 2, 0, 1]],
           cu_seq_lens_q = cu_seq_lens_k = tensor([0, 3, 5], dtype=int32), max_length_q = max_length_k = 3
    """

    pad_token_id: int

    def __call__(self, features: list[Feature]) -> dict[str, Any]:
        rows = [_as_packed_row(f) for f in features if len(f["input_ids"])]
        return PackedCollator(self.pad_token_id, flash_kwargs=True)(rows)


def _as_packed_row(feature: Feature) -> Feature:
    n = len(feature["input_ids"])
    labels = list(feature["labels"])
    labels[0] = IGNORE_INDEX
    return {"input_ids": feature["input_ids"], "labels": labels, "position_ids": list(range(n)), "seq_lens": [n]}


def build_collator(cfg: Any, tokenizer: Any, *, attn_implementation: str = "sdpa", for_generation: bool = False,
                   padding_free: bool = False):
    """The collator for the configured stage and data layout (``cfg.finetuning.stage``, ``cfg.data.packing``).

    Packed rows under ``neat_packing`` are flattened into one padding-free row with varlen kwargs for a kernel
    that reads them (flash-attention, tuneforge's varlen attention); plain packing keeps one padded row per packed
    row, since its examples see each other anyway. ``padding_free`` (see ``model.varlen.flattens_batches``)
    flattens unpacked pt/sft batches the same way, where the attention kernel reads the varlen kwargs. The pad id
    is the tokenizer's, else its eos (labels are explicit, so padding never hides a trained eos).
    """
    from ..catalog import stage
    from ..model.varlen import reads_varlen_kwargs

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kind = stage(cfg.finetuning.stage).collator
    varlen = reads_varlen_kwargs(attn_implementation)
    if kind == "pairwise":
        return PairwiseCollator(pad_id)
    if kind == "kto":
        return KTOCollator(pad_id)
    if kind == "generation" or for_generation:
        return PaddingCollator(pad_id, padding_side="left")
    if cfg.data.packing:
        neat = cfg.data.neat_packing
        return PackedCollator(pad_id, neat_packing=neat, flatten=neat, flash_kwargs=neat and varlen)
    return PaddingFreeCollator(pad_id) if padding_free and varlen else PaddingCollator(pad_id)

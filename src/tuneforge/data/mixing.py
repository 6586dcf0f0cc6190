"""Mixing several aligned datasets into one, splitting off validation rows, and streaming.

``mix_strategy`` maps onto ``datasets`` like this (a = [a0, a1, a2], b = [b0 .. b4], no probabilities)::

    concat            -> a0 a1 a2 b0 b1 b2 b3 b4
    interleave_under  -> a0 b0 a1 b1 a2 b2                   (until one is exhausted; a stream stops after a2)
    interleave_over   -> a0 b0 a1 b1 a2 b2 a0 b3 a1 b4       (until all are exhausted, restarting the short one)
    interleave_once   -> a0 b0 a1 b1 a2 b2 b3 b4             (until all are exhausted, each row once)

With ``interleave_probs`` the source of each row is drawn at random with the seed. ``interleave_once``
needs ``datasets`` >= 4.2 (LLaMA-Factory pins an older one, where it fails).
"""

from __future__ import annotations

import math

from datasets import Dataset, IterableDataset, concatenate_datasets, interleave_datasets

from .validate import DataError

STOPPING = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted",
            "interleave_once": "all_exhausted_without_replacement"}

AnyDataset = Dataset | IterableDataset


def merge_datasets(parts: list[AnyDataset], strategy: str, probs: list[float] | None, seed: int,
                   num_shards: int = 1) -> AnyDataset:
    """Mix ``parts`` by ``strategy`` (concat or an interleave_* name); one part is returned as is.

    When any part is streamed, the others are turned into streams with ``num_shards`` shards first.
    """
    if len(parts) == 1:
        return parts[0]
    if any(isinstance(p, IterableDataset) for p in parts):
        parts = [to_iterable(p, num_shards) for p in parts]
    if strategy == "concat":
        return concatenate_datasets(parts)
    if strategy not in STOPPING:
        raise DataError(f"mix_strategy {strategy!r} is not one of concat, {', '.join(STOPPING)}")
    if probs is not None and len(probs) != len(parts):
        raise DataError(f"interleave_probs has {len(probs)} values for {len(parts)} datasets; give one per dataset")
    return interleave_datasets(parts, probabilities=probs, seed=seed, stopping_strategy=STOPPING[strategy])


def split_dataset(dataset: AnyDataset, val_size: float, seed: int) -> tuple[AnyDataset, AnyDataset]:
    """Split ``val_size`` rows off for evaluation: a fraction below 1, a count from 1 up.

    Returns ``(train, eval)``. A map-style dataset is split at random with the seed
    (``train_test_split``); a stream gives its first ``int(val_size)`` rows to eval (``take``) and
    the rest to train (``skip``), before any shuffling, so the two never overlap across epochs.
    """
    if isinstance(dataset, IterableDataset):
        if val_size < 1:
            raise DataError(f"val_size {val_size:g} is a fraction, but a streamed dataset has no length: give a "
                            "count of rows (1 or more)")
        return dataset.skip(int(val_size)), dataset.take(int(val_size))
    size = int(val_size) if val_size >= 1 else val_size
    wanted = size if isinstance(size, int) else math.ceil(size * len(dataset))  # train_test_split rounds up
    if not 1 <= wanted < len(dataset):
        raise DataError(f"val_size {val_size:g} asks for {wanted} validation rows out of {len(dataset)}, which "
                        "leaves no training or no validation rows; change val_size")
    parts = dataset.train_test_split(test_size=size, seed=seed)
    return parts["train"], parts["test"]


def to_iterable(dataset: AnyDataset, num_shards: int = 1) -> IterableDataset:
    """A stream over a map-style dataset with at least one shard.

    LLaMA-Factory passes ``num_shards=dataloader_num_workers``, which is 0 by default and gives an
    empty stream; we clamp to 1 .. len(dataset).
    """
    if isinstance(dataset, IterableDataset):
        return dataset
    return dataset.to_iterable_dataset(num_shards=max(1, min(num_shards, len(dataset))))


def stream(dataset: AnyDataset, num_shards: int, buffer_size: int, seed: int) -> IterableDataset:
    """The training stream: ``dataset`` as an IterableDataset, shuffled with a ``buffer_size`` buffer."""
    return to_iterable(dataset, num_shards).shuffle(seed=seed, buffer_size=buffer_size)

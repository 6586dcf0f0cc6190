"""Pack tokenized examples into rows of at most ``cutoff_len`` tokens.

Two layouts, both vectorised over the whole dataset (never per ``map`` window, unlike LLaMA-Factory §11.17):

* :func:`pack_examples` (sft): best-fit decreasing over every example; an example is never split.
* :func:`pack_stream` (pt): documents are concatenated in order and cut every ``cutoff_len`` tokens; the last,
  shorter row is kept (LLaMA-Factory drops the tail of every 1000-example batch, §11.8).

Each packed row holds ``input_ids``, ``labels``, ``position_ids`` (restarting at 0 at every example, which is what
lets the collator or transformers isolate the examples) and ``seq_lens`` (the example lengths, summing to the row
length). The first label of every example is set to -100: unpacked, nothing ever predicts an example's first
token, so this keeps the packed loss equal to the unpacked one instead of training "last token of A -> first of B".
Rows are not padded; whether examples may attend to each other (``neat_packing``) is the collator's business.

Example (cutoff 10, two examples of lengths 3 and 2 in one row)::

    input_ids    [5, 6, 7, 8, 9]
    labels       [-100, 6, 7, -100, 9]     # from labels [5, 6, 7] and [8, 9]
    position_ids [0, 1, 2, 0, 1]
    seq_lens     [3, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset

from .messages import IGNORE_INDEX

PACKED_COLUMNS = ("input_ids", "labels", "position_ids", "seq_lens")


class _FreeSpace:
    """Open bins grouped by free space, with "smallest free space >= s" in O(log capacity) (a count tree)."""

    def __init__(self, capacity: int) -> None:
        self.size = 1 << max(capacity, 1).bit_length()
        self.count = [0] * (2 * self.size)
        self.bins: dict[int, list[int]] = {}

    def add(self, free: int, bin_id: int) -> None:
        self.bins.setdefault(free, []).append(bin_id)
        self._update(free, 1)

    def pop_best(self, need: int) -> tuple[int, int] | None:
        """Remove and return ``(free, bin_id)`` of a bin with the least free space that still holds ``need``."""
        free = self._first_at_least(need)
        if free < 0:
            return None
        self._update(free, -1)
        return free, self.bins[free].pop()

    def _update(self, free: int, delta: int) -> None:
        node = free + self.size
        while node:
            self.count[node] += delta
            node //= 2

    def _first_at_least(self, need: int) -> int:
        node = need + self.size
        if self.count[node]:
            return need
        while node > 1:  # climb until a right sibling holds a bin; everything in it is > need
            if node % 2 == 0 and self.count[node + 1]:
                node += 1
                break
            node //= 2
        else:
            return -1
        while node < self.size:  # then descend to its leftmost non-empty leaf
            node = 2 * node if self.count[2 * node] else 2 * node + 1
        return node - self.size


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group indices of ``lengths`` into bins of total length <= ``capacity``, best fit, longest first.

    Bins come out in the order they were opened (longest first), indices inside a bin ascending.
    ``best_fit_decreasing([9, 7, 5, 3, 1], 10) == [[0, 4], [1, 3], [2]]``. Raises if an item exceeds ``capacity``.
    """
    too_long = [n for n in lengths if n > capacity]
    if too_long:
        raise ValueError(
            f"{len(too_long)} examples are longer than the packing capacity {capacity} (longest {max(too_long)})"
        )
    free_space, bins = _FreeSpace(capacity), []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        found = free_space.pop_best(lengths[index])
        if found is None:
            free, bin_id = capacity, len(bins)
            bins.append([])
        else:
            free, bin_id = found
        bins[bin_id].append(index)
        if free - lengths[index] > 0:
            free_space.add(free - lengths[index], bin_id)
    return [sorted(b) for b in bins]


def _flat(dataset: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """All values of a list column as one array, plus the per-row lengths (row selections are honoured)."""
    array = dataset.with_format("arrow")[:].column(column).combine_chunks()
    offsets = array.offsets.to_numpy()
    return array.flatten().to_numpy(zero_copy_only=False), np.diff(offsets)


def _list_array(values: np.ndarray, lengths: np.ndarray) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    offset_type = pa.int32() if offsets[-1] < 2**31 else pa.int64()
    array_type = pa.ListArray if offset_type == pa.int32() else pa.LargeListArray
    return array_type.from_arrays(pa.array(offsets, type=offset_type), pa.array(values))


def _file_backed(table: pa.Table, source: Dataset, kind: str) -> Dataset:
    """The packed rows as a memory-mapped arrow file next to ``source``'s cache (in memory when it has none).

    A file-backed dataset costs no RAM and pickles by path (DataLoader workers started with spawn/forkserver
    would otherwise pickle the whole in-memory table, which dill cannot do for every pyarrow type).
    """
    if not source.cache_files:
        return Dataset(table)
    folder = Path(source.cache_files[0]["filename"]).parent
    path = folder / f"tuneforge-{kind}-{source._fingerprint}-{table.num_rows}.arrow"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        tmp.replace(path)
    return Dataset.from_file(str(path))


def _assemble(ids: np.ndarray, labels: np.ndarray, seq_lens: np.ndarray, row_sizes: np.ndarray) -> pa.Table:
    """Build packed rows from the packed token stream; ``seq_lens`` are the pieces, ``row_sizes`` pieces per row."""
    starts = np.repeat(np.cumsum(seq_lens) - seq_lens, seq_lens)
    positions = np.arange(len(ids)) - starts
    labels = labels.copy()
    labels[positions == 0] = IGNORE_INDEX
    row_tokens = np.add.reduceat(seq_lens, np.cumsum(row_sizes) - row_sizes) if len(row_sizes) else row_sizes
    table = pa.table(
        {
            "input_ids": _list_array(ids.astype(np.int32), row_tokens),
            "labels": _list_array(labels.astype(np.int32), row_tokens),
            "position_ids": _list_array(positions.astype(np.int32), row_tokens),
            "seq_lens": _list_array(seq_lens.astype(np.int32), row_sizes),
        }
    )
    return table


def pack_examples(dataset: Dataset, cutoff_len: int) -> Dataset:
    """Best-fit-decreasing packing of whole examples (sft) into rows of at most ``cutoff_len`` tokens.

    Input columns ``input_ids`` and ``labels`` (equal lengths, each <= ``cutoff_len``); output columns
    :data:`PACKED_COLUMNS`. Lengths [9, 7, 5, 3, 1] with cutoff 10 give rows of [9, 1], [7, 3] and [5].
    """
    ids, lengths = _flat(dataset, "input_ids")
    labels, _ = _flat(dataset, "labels")
    bins = best_fit_decreasing(lengths.tolist(), cutoff_len)
    order = np.fromiter((i for b in bins for i in b), dtype=np.int64, count=len(lengths))
    seq_lens = lengths[order]
    starts = (np.cumsum(lengths) - lengths)[order]
    within = np.arange(seq_lens.sum()) - np.repeat(np.cumsum(seq_lens) - seq_lens, seq_lens)
    gather = np.repeat(starts, seq_lens) + within
    row_sizes = np.array([len(b) for b in bins], dtype=np.int64)
    return _file_backed(_assemble(ids[gather], labels[gather], seq_lens, row_sizes), dataset, f"sft{cutoff_len}")


def pack_stream(dataset: Dataset, cutoff_len: int) -> Dataset:
    """Concatenate documents (pt) in order and cut the stream every ``cutoff_len`` tokens, keeping the last row.

    A document crossing a row boundary is split; each piece restarts its positions. Documents of lengths [4, 5]
    with cutoff 6 give rows [doc0 (4), doc1[:2]] and [doc1[2:] (3)], i.e. ``seq_lens`` [[4, 2], [3]].
    """
    ids, lengths = _flat(dataset, "input_ids")
    labels, _ = _flat(dataset, "labels")
    total = int(lengths.sum())
    cuts = np.union1d(np.cumsum(lengths), np.arange(cutoff_len, total, cutoff_len))
    cuts = np.concatenate([[0], cuts[(cuts > 0) & (cuts <= total)]])
    seq_lens = np.diff(cuts)
    row_sizes = np.bincount(cuts[:-1] // cutoff_len, minlength=-(-total // cutoff_len)) if total else seq_lens
    return _file_backed(_assemble(ids, labels, seq_lens, row_sizes), dataset, f"pt{cutoff_len}")

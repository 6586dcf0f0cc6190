"""Best-fit-decreasing packing over the whole dataset and stream packing for pt."""

from __future__ import annotations

import random

import pytest
from datasets import Dataset

from tuneforge.data.messages import IGNORE_INDEX
from tuneforge.data.packing import best_fit_decreasing, pack_examples, pack_stream


def _dataset(lengths: list[int]) -> Dataset:
    ids, start = [], 100
    for n in lengths:
        ids.append(list(range(start, start + n)))
        start += n
    return Dataset.from_dict({"input_ids": ids, "labels": [list(x) for x in ids]})


def test_best_fit_decreasing_optimal_rows():
    assert best_fit_decreasing([9, 7, 5, 3, 1], 10) == [[0, 4], [1, 3], [2]]


def test_best_fit_picks_the_tightest_bin():
    # after 6 and 5 open two bins (free 4 and 5), the 4 must go to the bin with free 4 (best fit, not first fit)
    assert best_fit_decreasing([5, 6, 4, 5], 10) == [[1, 2], [0, 3]]


def test_best_fit_random_is_valid_and_near_optimal():
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(500)]
    bins = best_fit_decreasing(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert len(bins) <= -(-sum(lengths) // 64) * 1.05


def test_best_fit_rejects_overlong():
    with pytest.raises(ValueError, match="longer than the packing capacity 4"):
        best_fit_decreasing([3, 5], 4)


def test_pack_examples_rows_positions_and_labels():
    packed = pack_examples(_dataset([3, 2]), 10)
    assert packed[:] == {
        "input_ids": [[100, 101, 102, 103, 104]],
        "labels": [[IGNORE_INDEX, 101, 102, IGNORE_INDEX, 104]],
        "position_ids": [[0, 1, 2, 0, 1]],
        "seq_lens": [[3, 2]],
    }


def test_pack_examples_is_global_not_per_window():
    # LLaMA-Factory packs per map window: windows [6, 6] and [4, 4] give 3 rows; over the whole set, 2 rows
    packed = pack_examples(_dataset([6, 6, 4, 4]), 10)
    assert [sum(s) for s in packed["seq_lens"]] == [10, 10]
    assert packed["position_ids"][0] == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]


def test_pack_examples_honours_row_selection():
    dataset = _dataset([9, 7, 5, 3, 1]).select([4, 0])  # an indices mapping, as after dropping rows
    assert pack_examples(dataset, 10)["input_ids"] == [[124, *range(100, 109)]]  # example order kept within a row


def test_pack_stream_keeps_tail_and_restarts_positions():
    packed = pack_stream(_dataset([4, 5, 2]), 6)
    assert packed["input_ids"] == [[100, 101, 102, 103, 104, 105], [106, 107, 108, 109, 110]]
    assert packed["seq_lens"] == [[4, 2], [3, 2]]
    assert packed["position_ids"] == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1]]
    assert packed["labels"][1] == [IGNORE_INDEX, 107, 108, IGNORE_INDEX, 110]
    assert sum(len(r) for r in packed["input_ids"]) == 11  # nothing dropped, the short last row is kept

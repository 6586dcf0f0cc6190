"""Mixing strategies, val_size, eval_dataset and streaming (LLaMA-Factory semantics, exact orders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, IterableDataset

from tuneforge.config.loader import resolve
from tuneforge.data.loader import load_aligned
from tuneforge.data.mixing import merge_datasets, split_dataset, to_iterable
from tuneforge.data.validate import DataError

A = Dataset.from_dict({"x": ["a0", "a1", "a2"]})
B = Dataset.from_dict({"x": ["b0", "b1", "b2", "b3", "b4"]})


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def xs(dataset) -> list[str]:
    return [row["x"] for row in dataset]


@pytest.mark.parametrize(("strategy", "expected"), [
    ("concat", ["a0", "a1", "a2", "b0", "b1", "b2", "b3", "b4"]),
    ("interleave_under", ["a0", "b0", "a1", "b1", "a2", "b2"]),
    ("interleave_over", ["a0", "b0", "a1", "b1", "a2", "b2", "a0", "b3", "a1", "b4"]),
    ("interleave_once", ["a0", "b0", "a1", "b1", "a2", "b2", "b3", "b4"]),
])
def test_strategies_give_exact_orders(strategy, expected):
    assert xs(merge_datasets([A, B], strategy, None, 42)) == expected


def test_streams_mix_too_and_stop_at_the_first_exhausted():
    assert xs(merge_datasets([A.to_iterable_dataset(), B], "interleave_under", None, 42)) == [
        "a0", "b0", "a1", "b1", "a2"]
    assert xs(merge_datasets([A.to_iterable_dataset(), B], "interleave_once", None, 42)) == [
        "a0", "b0", "a1", "b1", "a2", "b2", "b3", "b4"]


def test_interleave_probabilities_follow_the_seed():
    mixed = xs(merge_datasets([A, B], "interleave_once", [0.3, 0.7], 42))
    assert mixed == ["b0", "b1", "b2", "b3", "a0", "b4", "a1", "a2"]
    assert mixed != xs(merge_datasets([A, B], "interleave_once", [0.3, 0.7], 7))
    with pytest.raises(DataError, match="interleave_probs has 1 values for 2 datasets"):
        merge_datasets([A, B], "interleave_under", [1.0], 42)


def test_split_fraction_and_count():
    data = Dataset.from_dict({"x": [str(i) for i in range(10)]})
    train, held = split_dataset(data, 0.2, 42)
    assert (len(train), len(held)) == (8, 2)
    assert sorted(xs(train) + xs(held), key=int) == xs(data)
    assert xs(held) == xs(split_dataset(data, 0.2, 42)[1]) != xs(split_dataset(data, 0.2, 1)[1])
    train, held = split_dataset(data, 3, 42)
    assert (len(train), len(held)) == (7, 3) and not set(xs(train)) & set(xs(held))
    with pytest.raises(DataError, match="asks for 10 validation rows out of 10"):
        split_dataset(data, 10, 42)


def test_stream_split_takes_the_first_rows_and_refuses_fractions():
    stream = Dataset.from_dict({"x": [str(i) for i in range(6)]}).to_iterable_dataset()
    train, held = split_dataset(stream, 2, 42)
    assert (xs(train), xs(held)) == (["2", "3", "4", "5"], ["0", "1"])
    with pytest.raises(DataError, match="give a count of rows"):
        split_dataset(stream, 0.5, 42)


def test_zero_workers_still_give_a_non_empty_stream():
    """LLaMA-Factory's num_shards=dataloader_num_workers=0 yields nothing (its bug 11.6)."""
    assert xs(to_iterable(A, 0)) == ["a0", "a1", "a2"]


def write(folder: Path, name: str, rows: list[dict]) -> None:
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def two_sets(tmp_path) -> Path:
    write(tmp_path, "a.jsonl", [{"instruction": f"a{i}", "output": "x"} for i in range(3)])
    write(tmp_path, "b.jsonl", [{"instruction": f"b{i}", "output": "y"} for i in range(5)])
    write(tmp_path, "c.jsonl", [{"instruction": f"c{i}", "output": "z"} for i in range(2)])
    info = {n: {"file_name": f"{n}.jsonl"} for n in "abc"}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return tmp_path


def make_cfg(folder: Path, **keys):
    return resolve({"stage": "sft", "dataset_dir": str(folder), **keys}).config


def prompts(dataset) -> list[str]:
    return [row["_prompt"][-1]["content"] for row in dataset]


def test_load_aligned_mixes_registered_datasets(two_sets):
    splits = load_aligned(make_cfg(two_sets, dataset="a,b", mix_strategy="interleave_under"))
    assert prompts(splits.train) == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert splits.eval is None
    assert splits.report.counts() == {"read": 8, "kept": 8, "dropped": {}}


def test_a_repeated_name_counts_twice(two_sets):
    assert prompts(load_aligned(make_cfg(two_sets, dataset="c,c")).train) == ["c0", "c1", "c0", "c1"]


def test_val_size_splits_the_mixed_training_data(two_sets):
    splits = load_aligned(make_cfg(two_sets, dataset="a,b", val_size=0.25))
    assert (len(splits.train), len(splits.eval)) == (6, 2)
    assert sorted(prompts(splits.train) + prompts(splits.eval)) == ["a0", "a1", "a2", "b0", "b1", "b2", "b3", "b4"]
    counted = load_aligned(make_cfg(two_sets, dataset="a,b", val_size=3))
    assert (len(counted.train), len(counted.eval)) == (5, 3)


def test_eval_dataset_merged_or_by_name(two_sets):
    merged = load_aligned(make_cfg(two_sets, dataset="a", eval_dataset="b,c"))
    assert prompts(merged.train) == ["a0", "a1", "a2"]
    assert prompts(merged.eval) == ["b0", "b1", "b2", "b3", "b4", "c0", "c1"]
    each = load_aligned(make_cfg(two_sets, dataset="a", eval_dataset="b,c", eval_on_each_dataset=True))
    assert {name: prompts(d) for name, d in each.eval.items()} == {"b": ["b0", "b1", "b2", "b3", "b4"],
                                                                   "c": ["c0", "c1"]}
    only_eval = load_aligned(make_cfg(two_sets, eval_dataset="c"))
    assert only_eval.train is None and prompts(only_eval.eval) == ["c0", "c1"]


def test_streaming_a_local_jsonl_is_not_empty(two_sets):
    cfg = make_cfg(two_sets, dataset="b", streaming=True, max_steps=10, buffer_size=4, val_size=2)
    assert cfg.training.dataloader_num_workers == 0
    splits = load_aligned(cfg)
    assert isinstance(splits.train, IterableDataset)
    train, held = prompts(splits.train), prompts(splits.eval)
    assert len(train) == 3 and len(held) == 2
    assert sorted(train + held) == ["b0", "b1", "b2", "b3", "b4"]
    assert train == prompts(load_aligned(cfg).train)  # the shuffle follows the seed


def test_streaming_mixes_several_local_sets(two_sets):
    cfg = make_cfg(two_sets, dataset="a,c", streaming=True, max_steps=5, mix_strategy="interleave_over")
    rows = prompts(load_aligned(cfg).train)
    assert sorted(rows) == ["a0", "a1", "a2", "c0", "c0", "c1"]

"""map_workers: processes only where the rows pay for them; results equal in-process ones."""

from __future__ import annotations

from datasets import Dataset

from tuneforge.data.workers import map_workers


def test_map_workers_caps_by_rows():
    assert map_workers(None, 10**6) is None
    assert map_workers(16, 176) is None and map_workers(16, 999) is None
    assert map_workers(16, 2048) == 4 and map_workers(16, 10**6) == 16
    assert map_workers(4, 10_000, rows_per_worker=5000) == 2


def test_two_workers_map_equals_in_process():
    rows = Dataset.from_dict({"x": list(range(1200))})
    double = lambda batch: {"y": [2 * v for v in batch["x"]]}  # noqa: E731
    assert map_workers(2, len(rows)) == 2
    in_process = rows.map(double, batched=True, num_proc=None)["y"]
    assert rows.map(double, batched=True, num_proc=map_workers(2, len(rows)))["y"] == in_process

"""How many processes a ``datasets.map`` gets: ``preprocessing_num_workers``, but never more than the rows pay for.

A worker process costs about a second before its first row (start, unpickling the tokenizer), so a small dataset
is faster in-process: ``map_workers(16, 176) is None`` (one process), ``map_workers(16, 2048) == 4``,
``map_workers(16, 1_000_000) == 16``.
"""

from __future__ import annotations


def map_workers(requested: int | None, rows: int, rows_per_worker: int = 500) -> int | None:
    """``num_proc`` for ``datasets.map`` over ``rows`` rows: at most ``requested``, at least ``rows_per_worker``
    rows per worker; None (in-process) when that leaves one worker or none was requested."""
    if not requested:
        return None
    workers = min(requested, rows // rows_per_worker)
    return workers if workers > 1 else None

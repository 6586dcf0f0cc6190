"""Tokenizing a streamed dataset: the same stage processors, applied lazily as rows are read.

A stream has no length, so rows are dropped on the fly (no trained token, malformed, too long) instead of
being counted up front; packing is not applied to streams (the rules require ``max_steps`` instead).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from datasets import IterableDataset

from .processors import PROCESSORS, build_context
from .processors.cap import CUT, capped, char_cap
from .processors.common import DROP, TRUNCATED

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from ..config.schema import Config
    from .templates.base import Template


def process_stream(dataset: IterableDataset, cfg: Config, tokenizer: Tokenizer, template: Template, *,
                   key: str) -> IterableDataset:
    """Lazily tokenize ``dataset`` with the ``key`` processor and skip the rows it drops."""
    ctx = build_context(cfg, tokenizer, template, key)
    ctx.packing = False
    processor = PROCESSORS[key]
    columns = list(dataset.column_names or [])
    run = partial(capped, ctx=ctx, process_batch=processor.process_batch, cap=char_cap(ctx, processor.process_batch))
    mapped = dataset.map(run, batched=True, batch_size=cfg.data.preprocessing_batch_size, remove_columns=columns)
    kept = mapped.filter(lambda row: row[DROP] == "")
    return kept.remove_columns([DROP, TRUNCATED, CUT])

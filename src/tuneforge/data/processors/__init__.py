"""Tokenize converted examples for one stage, drop the unusable ones (counted by reason) and pack if asked.

``process(dataset, cfg, tokenizer, template)`` is the entry point: it picks the stage's batched processor (the
stage catalog names its module; :data:`PROCESSORS`), maps it over the dataset, drops rows with no trained token
(or malformed / too long ones),
counts every drop by reason, and packs pt/sft rows when ``cfg.data.packing`` is on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset

from ...catalog import stage
from ..packing import pack_examples, pack_stream
from ..validate import DataError
from ..workers import map_workers
from . import feedback, pairwise, pretrain, supervised, unsupervised
from .cap import CUT, capped, char_cap, with_cut
from .common import DROP, TRUNCATED, Context, StageProcessor, probe_guard
from .seqlen import Guard, infer_seqlen

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from ...config.schema import Config
    from ..templates.base import Template

__all__ = [
    "PREDICT", "PROCESSORS", "Context", "Guard", "ProcessStats", "StageProcessor", "build_context", "infer_seqlen",
    "process", "processor_key",
]

PROCESSORS: dict[str, StageProcessor] = {
    module.__name__.rsplit(".", 1)[1]: StageProcessor(module.process_batch, module.COLUMNS)
    for module in (pretrain, supervised, pairwise, feedback, unsupervised)
}
PREDICT = "unsupervised"  # sft data generated from (predict_with_generate): prompts and reference replies
logger = logging.getLogger(__name__)


@dataclass
class ProcessStats:
    """What ``process`` did: rows in, rows kept, rows cut to fit, drops by reason, packed rows (0 when unpacked)."""

    stage: str
    total: int = 0
    kept: int = 0
    truncated: int = 0
    cut: int = 0  # rows with a text cut to the character budget before tokenizing (see cap.py)
    dropped: dict[str, int] = field(default_factory=dict)
    packed_rows: int = 0

    def summary(self) -> str:
        drops = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        packed = f", packed into {self.packed_rows} rows" if self.packed_rows else ""
        cut = f", {self.cut} cut before tokenizing" if self.cut else ""
        counts = f"kept {self.kept} of {self.total} examples ({self.truncated} truncated{cut}; dropped: {drops})"
        return f"{self.stage}: {counts}{packed}"


def processor_key(cfg: Config, for_generation: bool = False) -> str:
    """The :data:`PROCESSORS` key: the stage's processor, or :data:`PREDICT` for data that will be generated from."""
    return PREDICT if for_generation else stage(cfg.finetuning.stage).processor


def build_context(cfg: Config, tokenizer: Tokenizer, template: Template, key: str | None = None) -> Context:
    """The processors' context from the typed config (``cfg.data``), the tokenizer and the chat template."""
    key = key or processor_key(cfg)
    data = cfg.data
    ctx = Context(tokenizer=tokenizer, template=template, cutoff_len=data.cutoff_len,
                  train_on_prompt=data.train_on_prompt, mask_history=data.mask_history,
                  packing=bool(data.packing) and stage(cfg.finetuning.stage).packable and key != PREDICT)
    if key == "pretrain":
        ctx.bos_id, ctx.doc_end_id = pretrain.auto_bos_id(tokenizer), pretrain.doc_end_id(tokenizer)
    elif template is not None:
        ctx.guard = probe_guard(template, tokenizer)
    return ctx


def process(dataset: Dataset, cfg: Config, tokenizer: Tokenizer, template: Template, *, key: str | None = None,
            stats: ProcessStats | None = None) -> Dataset:
    """Tokenize ``dataset`` (converted rows, see ``messages.py``) for the configured stage and return the rows to
    train on. ``key`` overrides the processor (e.g. :data:`PREDICT`); ``stats``, if given, is filled in.

    Raises ``DataError`` when no example is left (every label masked, every row malformed or too long).
    """
    key = key or processor_key(cfg)
    ctx = build_context(cfg, tokenizer, template, key)
    processor = PROCESSORS[key]
    label = "predict" if key == PREDICT and stage(cfg.finetuning.stage).processor != PREDICT else cfg.finetuning.stage
    run = partial(capped, ctx=ctx, process_batch=processor.process_batch, cap=char_cap(ctx, processor.process_batch))
    mapped = dataset.map(run, batched=True, features=with_cut(processor.features()),
                         batch_size=cfg.data.preprocessing_batch_size,
                         num_proc=map_workers(cfg.data.preprocessing_num_workers, len(dataset)),
                         remove_columns=dataset.column_names, desc=f"Tokenizing ({label})")
    reported = stats is not None  # a caller that passes stats reports them itself: log them once, there
    stats = stats if stats is not None else ProcessStats(stage=label)
    kept = _drop_and_count(mapped, stats)
    if ctx.packing:
        kept = pack_stream(kept, ctx.cutoff_len) if key == "pretrain" else pack_examples(kept, ctx.cutoff_len)
        stats.packed_rows = len(kept)
    if not reported:
        logger.info(stats.summary())
    return kept


def _drop_and_count(mapped: Dataset, stats: ProcessStats) -> Dataset:
    reasons = mapped.with_format("arrow")[DROP].to_numpy(zero_copy_only=False)
    stats.total = len(reasons)
    stats.dropped = dict(Counter(r for r in reasons.tolist() if r))
    stats.truncated = int(np.count_nonzero(mapped.with_format("arrow")[TRUNCATED].to_numpy(zero_copy_only=False)))
    stats.cut = int(np.count_nonzero(mapped.with_format("arrow")[CUT].to_numpy(zero_copy_only=False)))
    if stats.cut:
        logger.warning("%d row(s) held a text far longer than cutoff_len allows: it was cut to its first and last "
                       "characters before tokenizing (still more tokens than fit; see data/processors/cap.py)",
                       stats.cut)
    keep = np.flatnonzero(reasons == "")
    stats.kept = len(keep)
    if not stats.kept:
        raise DataError(f"no example is left to train on after preprocessing: {stats.summary()}; every label is "
                         "masked or every row is malformed or longer than cutoff_len")
    kept = mapped.select(keep) if stats.kept < stats.total else mapped
    return kept.remove_columns([DROP, TRUNCATED, CUT])

"""What ``tuneforge lengths`` and ``tuneforge preview`` compute: processed rows without training anything.

Both run the real pipeline (registry → formats → validation → template → stage processor), unpacked.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.schema import Config
from .loader import load_aligned
from .processors import ProcessStats, process
from .validate import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from .templates.base import Template

UNLIMITED = 1_000_000
PERCENTILES = (50, 90, 95, 99, 99.9)


logger = logging.getLogger(__name__)

def prepare(cfg: Config) -> tuple[Any, Any]:
    """The tokenizer and chat template the config asks for."""
    from ..model import load_tokenizer
    from .templates.registry import resolve_template

    tokenizer = load_tokenizer(cfg)
    template = resolve_template(cfg.data.template, tokenizer, default_system=cfg.data.default_system,
                                enable_thinking=cfg.data.enable_thinking, tool_format=cfg.data.tool_format)
    return tokenizer, template


def _unpacked(cfg: Config, **data_changes: Any) -> Config:
    data = dataclasses.replace(cfg.data, packing=False, neat_packing=False, streaming=False, **data_changes)
    return dataclasses.replace(cfg, data=data)


def processed_rows(cfg: Config, tokenizer: Tokenizer, template: Template, *, limit: int | None = None,
                   cutoff_len: int | None = None) -> tuple[Any, ProcessStats]:
    """The training rows after tokenization (first ``limit`` examples of each dataset when given)."""
    changes: dict[str, Any] = {"val_size": 0.0}
    if limit is not None:
        changes["max_samples"] = limit
    if cutoff_len is not None:
        changes["cutoff_len"] = cutoff_len
    run_cfg = _unpacked(cfg, **changes)
    splits = load_aligned(run_cfg)
    if splits.train is None:
        raise DataError("the config names no training dataset: set dataset (names from dataset_info.json, or "
                        "data files)")
    stats = ProcessStats(stage=run_cfg.finetuning.stage)
    rows = process(splits.train, run_cfg, tokenizer, template, stats=stats)
    logger.info(stats.summary())
    return rows, stats


def row_lengths(dataset: Any) -> np.ndarray:
    """Tokens per example: ``input_ids``, or the longer of chosen/rejected for pairwise rows."""
    names = dataset.column_names
    column = "input_ids" if "input_ids" in names else "chosen_input_ids"
    lengths = np.array([len(x) for x in dataset[column]], dtype=np.int64)
    if "rejected_input_ids" in names:
        lengths = np.maximum(lengths, [len(x) for x in dataset["rejected_input_ids"]])
    return lengths


def length_report(lengths: np.ndarray, cutoff_len: int, bins: int = 20) -> dict[str, Any]:
    """Percentiles, histogram, share truncated at ``cutoff_len`` and the cutoff that keeps 99% whole.

    >>> length_report(np.array([10, 20, 30, 40]), 25)["truncated_share"]
    0.5
    """
    pct = {f"p{p:g}": float(np.percentile(lengths, p, method="higher")) for p in PERCENTILES}
    counts, edges = np.histogram(lengths, bins=min(bins, max(1, len(set(lengths.tolist())))))
    keep99 = int(np.percentile(lengths, 99, method="higher"))
    return {
        "examples": len(lengths), "mean": float(lengths.mean()), "max": int(lengths.max()), **pct,
        "cutoff_len": cutoff_len, "truncated_share": float((lengths > cutoff_len).mean()),
        "cutoff_len_for_99pct": int(2 ** math.ceil(math.log2(keep99))) if keep99 > 0 else 0,
        "cutoff_len_for_99pct_exact": keep99,
        "histogram": [{"from": float(a), "to": float(b), "count": int(c)}
                      for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)],
    }

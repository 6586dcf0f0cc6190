"""Errors about the data keys and the registered datasets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...catalog import STAGES, stage
from ...data.registry import RegistryError, get_dataset_attr
from . import Ctx, Finding, rule


@rule("error")
def mask_history_with_train_on_prompt(ctx: Ctx) -> Iterator[Finding]:
    if ctx.data.mask_history and ctx.data.train_on_prompt:
        yield "mask_history", "mask_history and train_on_prompt contradict each other; keep one"


@rule("error")
def interleave_probs_usage(ctx: Ctx) -> Iterator[Finding]:
    probs = ctx.data.interleave_probs
    if probs is None:
        return
    if ctx.data.mix_strategy == "concat":
        yield "interleave_probs", "interleave_probs needs mix_strategy interleave_under, interleave_over or " \
                                  "interleave_once (mix_strategy is concat)"
    for key in ("dataset", "eval_dataset"):
        names = getattr(ctx.data, key)
        if names and len(names) != len(probs):
            yield "interleave_probs", f"interleave_probs has {len(probs)} values but {key} names {len(names)} " \
                                      "datasets; give one probability per dataset"
    if abs(sum(probs) - 1.0) > 1e-6:
        yield "interleave_probs", f"interleave_probs must sum to 1 (they sum to {sum(probs):g})"


@rule("error")
def val_size_conflicts(ctx: Ctx) -> Iterator[Finding]:
    if ctx.data.val_size <= 0:
        return
    if ctx.data.eval_dataset:
        yield "val_size", "val_size and eval_dataset both define the evaluation data; keep one"
    if not ctx.data.dataset:
        yield "val_size", "val_size splits the training data, but no dataset is set"
    if ctx.data.val_size >= 1 and not float(ctx.data.val_size).is_integer():
        yield "val_size", f"val_size from 1 up is a count of examples and must be whole (got {ctx.data.val_size})"


@rule("error")
def streaming_limits(ctx: Ctx) -> Iterator[Finding]:
    """A stream has no length: steps must be given and splits must be counts."""
    if not ctx.data.streaming:
        return
    if ctx.tr.do_train and ctx.tr.max_steps <= 0:
        yield "max_steps", "streaming datasets have no length: set max_steps"
    if 0 < ctx.data.val_size < 1:
        yield "val_size", "with streaming, val_size must be a count of examples (1 or more), not a fraction"
    if ctx.data.max_samples is not None:
        yield "max_samples", "max_samples cannot be used with streaming; use max_steps"
    if ctx.data.tokenized_path:
        yield "tokenized_path", "a streamed dataset cannot be saved to tokenized_path; turn streaming off"


def _stage_needs(ctx: Ctx, key: str, name: str, attr) -> Iterator[Finding]:
    kind = stage(ctx.stage).dataset
    if kind == "ranking" and not attr.ranking:
        yield key, f"stage {ctx.stage} needs preference data (chosen/rejected): dataset '{name}' is not " \
                   "marked \"ranking\": true in dataset_info.json"
    elif kind != "ranking" and attr.ranking:
        ranking = " or ".join(s.name for s in STAGES.values() if s.dataset == "ranking")
        yield key, f"dataset '{name}' is preference data (ranking) and cannot be used by stage {ctx.stage}; " \
                   f"use stage {ranking}"
    if kind == "kto_tag" and not attr.columns.kto_tag:
        yield key, f"stage {ctx.stage} needs a desirable/undesirable tag: dataset '{name}' has no columns.kto_tag"


@rule("error")
def datasets_exist(ctx: Ctx) -> Iterator[Finding]:
    """Every named dataset is registered (or a data file), its files exist, and it fits the stage."""
    if ctx.data.tokenized_path and Path(ctx.data.tokenized_path).is_dir():
        return
    use_ms = ctx.cfg.env.USE_MODELSCOPE_HUB
    for key in ("dataset", "eval_dataset"):
        for name in getattr(ctx.data, key) or []:
            try:
                attr = get_dataset_attr(name, ctx.data.dataset_dir, use_ms)
            except RegistryError as err:
                yield key, str(err)
                continue
            if attr.source == "file" and not Path(attr.path).exists():
                yield key, f"dataset '{name}': file {attr.path} does not exist"
            yield from _stage_needs(ctx, key, name, attr)

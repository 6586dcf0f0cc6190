"""sft: multi-turn chats -> ``input_ids``, ``attention_mask``, ``labels`` (-100 on everything not trained).

Labels per turn: the prompt is masked (or trained with ``train_on_prompt``); the response (reply + end-of-turn) is
trained, except earlier turns under ``mask_history``. With an ``efficient_eos`` template the reply carries no
end-of-turn, so the first prompt token after a trained reply is labelled with eos and one eos closes the sequence.

Budget: turns take ``cutoff_len`` in chronological order (newest first under ``mask_history``), each through
``fit_turn``; the first turn that cannot fit ends the example (later turns, or older ones under ``mask_history``,
are dropped). Cut turns keep their assistant header and end-of-turn (see ``seqlen.py``).
"""

from __future__ import annotations

from contextlib import suppress
from functools import partial
from typing import Any

from ..templates.base import TemplateError
from .common import (
    INVALID,
    NO_TRAINED,
    TOO_LONG,
    TRUNCATED,
    Batch,
    Context,
    collect,
    cut_turn,
    gather,
    has_trained_token,
    masked,
    rows,
    valid_prompt,
)
from .seqlen import fit_turn

COLUMNS: dict[str, Any] = {"input_ids": [], "attention_mask": [], "labels": []}
Turn = tuple[int, list[int], list[int]]  # (turn index, prompt ids, response ids)


def process_batch(batch: Batch, ctx: Context) -> Batch:
    """Batched ``datasets.map`` function for sft (see ``common.py`` for the bookkeeping columns).

    All rows of the batch are rendered first and tokenized in one call (``encode_multiturn_batch``); budgeting and
    masking then run per row. The rows are exactly those of :func:`process_rows` (one tokenizer call per row),
    which a template without ``encode_multiturn_batch`` still gets.
    """
    encode_batch = getattr(ctx.template, "encode_multiturn_batch", None)
    if encode_batch is None:
        return process_rows(batch, ctx)
    conversations, positions = [], []
    results: list[dict | str] = []
    for prompt, response, system, tools in rows(batch):
        if not valid_prompt(prompt) or len(response) != 1:
            results.append(INVALID)
            continue
        positions.append(len(results))
        results.append(INVALID)  # replaced below
        conversations.append((prompt + response, system, tools))
    for position, (messages, _, _), pairs in zip(positions, conversations,
                                                 encode_batch(ctx.tokenizer, conversations), strict=True):
        if not isinstance(pairs, TemplateError):
            with suppress(TemplateError):  # stays INVALID, as in ``collect``
                results[position] = _finish(messages, pairs, ctx)
    return gather(results, COLUMNS)


def process_rows(batch: Batch, ctx: Context) -> Batch:
    """:func:`process_batch` with one tokenizer call per row (the reference the batched path must equal)."""
    return collect(batch, partial(_encode, ctx=ctx), COLUMNS)


def _encode(prompt: list, response: list, system: str, tools: str, index: int, ctx: Context) -> dict | str:
    if not valid_prompt(prompt) or len(response) != 1:
        return INVALID
    messages = prompt + response
    return _finish(messages, ctx.template.encode_multiturn(ctx.tokenizer, messages, system, tools), ctx)


def _finish(messages: list, pairs: list[tuple[list[int], list[int]]], ctx: Context) -> dict | str:
    """Budget and mask one conversation's ``(prompt, response)`` pairs into an output row (or a drop reason)."""
    contents = [messages[2 * i]["content"] for i in range(len(pairs))]
    turns, truncated = budget_turns(pairs, contents, ctx)
    if not turns:
        return TOO_LONG
    ids, labels = assemble(turns, len(pairs), ctx)
    if not has_trained_token(labels):
        return NO_TRAINED
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, TRUNCATED: truncated}


def budget_turns(
    pairs: list[tuple[list[int], list[int]]], contents: list[str], ctx: Context
) -> tuple[list[Turn], bool]:
    """Fit the turns into ``cutoff_len``; returns the kept turns in chronological order and whether any was cut."""
    left = ctx.cutoff_len - int(ctx.efficient_eos)  # room for the closing eos
    order = range(len(pairs) - 1, -1, -1) if ctx.mask_history else range(len(pairs))
    kept: list[Turn] = []
    for idx in order:
        source, target = pairs[idx]
        fit = fit_turn(len(source), len(target), left, ctx.guard)
        cut = None if fit is None else cut_turn(source, [target], contents[idx], fit, ctx)
        if cut is None:
            return sorted(kept), True
        kept.append((idx, cut[0], cut[1][0]))
        left -= len(cut[0]) + len(cut[1][0])
    truncated = any(len(s) + len(t) < len(pairs[i][0]) + len(pairs[i][1]) for i, s, t in kept)
    return sorted(kept), truncated


def assemble(turns: list[Turn], n_turns: int, ctx: Context) -> tuple[list[int], list[int]]:
    """Concatenate the kept turns and build their labels (see the module docstring for the rules)."""
    ids: list[int] = []
    labels: list[int] = []
    previous_trained = -2  # index of the last turn whose reply was trained
    for idx, source, target in turns:
        if ctx.train_on_prompt:
            source_labels = list(source)
        else:
            source_labels = masked(len(source))
            if ctx.efficient_eos and previous_trained == idx - 1:
                source_labels[0] = ctx.eos_id  # the reply before this prompt ends here
        trained = not ctx.mask_history or idx == n_turns - 1
        ids += source + target
        labels += source_labels + (list(target) if trained else masked(len(target)))
        previous_trained = idx if trained else -2
    if ctx.efficient_eos:
        ids.append(ctx.eos_id)
        labels.append(ctx.eos_id)
    return ids, labels

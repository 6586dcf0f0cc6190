"""Huge texts are cut to a safe character budget before they are tokenized.

A 50 MB row used to be tokenized whole and only then truncated to ``cutoff_len`` (minutes, gigabytes). A text of
more than ``2 * cap`` characters, ``cap = char_budget(tokenizer, cutoff_len)``, has far more tokens than any
truncation keeps, so it is cut to its first and last ``cap`` characters: whichever end the stage's truncation
keeps (the start of a reply, the end of a question) is still there, with its ids unchanged. Rows within the
budget are not touched, so their ids are exactly those of before. Packed pt keeps every token of a document, so
it is never cut.

>>> cap_text("a" * 10 + "b" * 10, 4)
'aaaabbbb'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import Features, Value

from ..budget import char_budget
from ..messages import PROMPT, RESPONSE, SYSTEM, TOOLS
from . import pretrain
from .common import Batch, Context

CUT = "_cut"  # bookkeeping column: the row had a text cut to the budget


def char_cap(ctx: Context, process_batch: Callable[..., Batch]) -> int | None:
    """Characters kept at each end of a long text, or ``None`` (never cut: packed pt)."""
    if process_batch is pretrain.process_batch and ctx.packing:
        return None
    return char_budget(ctx.tokenizer, ctx.cutoff_len)


def cap_text(text: str, cap: int) -> str:
    """``text`` when it has at most ``2 * cap`` characters, else its first and last ``cap`` characters."""
    return text if len(text) <= 2 * cap else text[:cap] + text[-cap:]


def _cap_messages(messages: list[dict[str, Any]] | None, cap: int) -> tuple[list[dict[str, Any]] | None, bool]:
    if not messages:
        return messages, False
    out, cut = [], False
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and len(content) > 2 * cap:
            message, cut = {**message, "content": cap_text(content, cap)}, True
        out.append(message)
    return out, cut


def cap_batch(batch: Batch, cap: int) -> list[bool]:
    """Cut the over-long texts of ``batch`` in place (message contents, system, tools); per row: was it cut?"""
    flags = [False] * len(batch[PROMPT])
    for column in (PROMPT, RESPONSE):
        if column in batch:
            for i, messages in enumerate(batch[column]):
                batch[column][i], cut = _cap_messages(messages, cap)
                flags[i] = flags[i] or cut
    for column in (SYSTEM, TOOLS):
        for i, text in enumerate(batch.get(column) or []):
            if isinstance(text, str) and len(text) > 2 * cap:
                batch[column][i], flags[i] = cap_text(text, cap), True
    return flags


def capped(batch: Batch, ctx: Context, process_batch: Callable[[Batch, Context], Batch], cap: int | None) -> Batch:
    """``process_batch(batch, ctx)`` after :func:`cap_batch`, plus the :data:`CUT` column."""
    flags = cap_batch(batch, cap) if cap is not None else [False] * len(batch[PROMPT])
    out = process_batch(batch, ctx)
    out[CUT] = flags
    return out


def with_cut(features: Features) -> Features:
    return Features({**features, CUT: Value("bool")})

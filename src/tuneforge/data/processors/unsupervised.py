"""ppo and generation (sft predict): ``input_ids`` = the generation prompt, ``labels`` = the reference reply ids.

The labels are not aligned with the inputs: they are what a generated reply is compared against (empty when the
example has no reference). Example (Qwen, "Hi" -> "Yes"): ``input_ids = <|im_start|>...assistant\\n`` (what
``render_prompt`` gives) and ``labels = [Yes, <|im_end|>, \\n]``. Nothing is trained here, so nothing is dropped
for lacking trained tokens.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .common import (
    INVALID,
    TOO_LONG,
    TRUNCATED,
    Batch,
    Context,
    collect,
    fit_conversation,
    history_len,
    valid_prompt,
)

COLUMNS: dict[str, Any] = {"input_ids": [], "attention_mask": [], "labels": []}


def process_batch(batch: Batch, ctx: Context) -> Batch:
    """Batched ``datasets.map`` function for ppo and predict (see ``common.py`` for the bookkeeping columns)."""
    return collect(batch, partial(_encode, ctx=ctx), COLUMNS)


def _encode(prompt: list, response: list, system: str, tools: str, index: int, ctx: Context) -> dict | str:
    if not valid_prompt(prompt) or len(response) > 1:
        return INVALID

    def encode(dropped: int) -> tuple[list[int], list[list[int]]]:
        kept = prompt[2 * dropped :]
        source = ctx.template.render_prompt(ctx.tokenizer, kept, system, tools)
        target = ctx.template.encode_oneturn(ctx.tokenizer, kept + response, system, tools)[1] if response else []
        return source, [target]

    fitted = fit_conversation(encode, history_len(prompt), prompt[-1]["content"], ctx,
                              reserve=int(ctx.efficient_eos and bool(response)))
    if fitted is None:
        return TOO_LONG
    source, (target,), truncated = fitted
    if target and ctx.efficient_eos:
        target = [*target, ctx.eos_id]
    return {"input_ids": source, "attention_mask": [1] * len(source), "labels": target, TRUNCATED: truncated}

"""rm/dpo: one prompt with a chosen and a rejected reply -> ``chosen_*`` and ``rejected_*`` rows.

History is folded into the prompt (``encode_oneturn``); only the final reply is trained. Both replies share the
prompt and are cut to the same length, the longer reply setting the budget; a cut reply keeps its end-of-turn. A
prompt over its share loses its oldest exchanges first, then the oldest ids of its last message
(``common.fit_conversation``): the system block, the question's end and the assistant header always stay.
Example (Qwen, "Hi" -> chosen "Yes" / rejected "No"): ``chosen_input_ids = prompt + [Yes, <|im_end|>, \\n]``,
``chosen_labels = [-100] * len(prompt) + [Yes, <|im_end|>, \\n]``, and likewise for the rejected side.
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
    masked,
    valid_prompt,
)

SIDES = ("chosen", "rejected")
COLUMNS: dict[str, Any] = {f"{side}_{key}": [] for side in SIDES for key in ("input_ids", "attention_mask", "labels")}


def process_batch(batch: Batch, ctx: Context) -> Batch:
    """Batched ``datasets.map`` function for rm and dpo (see ``common.py`` for the bookkeeping columns)."""
    return collect(batch, partial(_encode, ctx=ctx), COLUMNS)


def _encode(prompt: list, response: list, system: str, tools: str, index: int, ctx: Context) -> dict | str:
    if not valid_prompt(prompt) or len(response) != 2:
        return INVALID

    def encode(dropped: int) -> tuple[list[int], list[list[int]]]:
        kept = prompt[2 * dropped :]
        source, chosen = ctx.template.encode_oneturn(ctx.tokenizer, [*kept, response[0]], system, tools)
        _, rejected = ctx.template.encode_oneturn(ctx.tokenizer, [*kept, response[1]], system, tools)
        return source, [chosen, rejected]

    fitted = fit_conversation(encode, history_len(prompt), prompt[-1]["content"], ctx,
                              reserve=int(ctx.efficient_eos))
    if fitted is None:
        return TOO_LONG
    source, replies, truncated = fitted
    out: dict[str, Any] = {TRUNCATED: truncated}
    for side, reply in zip(SIDES, replies, strict=True):
        reply = reply + [ctx.eos_id] * int(ctx.efficient_eos)
        out[f"{side}_input_ids"] = source + reply
        out[f"{side}_attention_mask"] = [1] * (len(source) + len(reply))
        out[f"{side}_labels"] = masked(len(source)) + reply
    return out

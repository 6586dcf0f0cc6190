"""kto: one prompt, one reply and a desirability tag -> ``input_ids/labels``, a KL pair ``kl_input_ids/kl_labels``
and ``kto_tags``.

The KL pair puts a *mismatched* reply under the same prompt: the reply of the previous valid example of the map
batch (rotation by one; the first example takes the last one's). A batch with a single valid example pairs it with
its own reply, so batches should hold more than one example (``preprocessing_batch_size``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..messages import KTO_TAG, RESPONSE
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

COLUMNS: dict[str, Any] = {
    "input_ids": [], "attention_mask": [], "labels": [], "kl_input_ids": [], "kl_attention_mask": [], "kl_labels": [],
    "kto_tags": False,
}


def process_batch(batch: Batch, ctx: Context) -> Batch:
    """Batched ``datasets.map`` function for kto (see ``common.py`` for the bookkeeping columns)."""
    tags = batch.get(KTO_TAG) or [None] * len(batch[RESPONSE])
    return collect(batch, partial(_encode, ctx=ctx, tags=tags, kl=kl_replies(batch[RESPONSE])), COLUMNS)


def kl_replies(responses: list[list]) -> list[dict | None]:
    """For each example, the reply of the previous example with exactly one reply (``None`` for malformed ones).

    ``kl_replies([[a], [b], [], [c]]) == [c, a, None, b]``.
    """
    valid = [i for i, r in enumerate(responses) if len(r) == 1]
    out: list[dict | None] = [None] * len(responses)
    for k, i in enumerate(valid):
        out[i] = responses[valid[k - 1]][0]
    return out


def _encode(prompt: list, response: list, system: str, tools: str, index: int, ctx: Context, tags: list,
            kl: list) -> dict | str:
    if not valid_prompt(prompt) or len(response) != 1 or tags[index] is None:
        return INVALID
    target = _side(prompt, response[0], system, tools, ctx)
    mismatched = _side(prompt, kl[index], system, tools, ctx)
    if target is None or mismatched is None:
        return TOO_LONG
    out = {**target[0], **{f"kl_{key}": value for key, value in mismatched[0].items()}}
    out.update({"kto_tags": bool(tags[index]), TRUNCATED: target[1] or mismatched[1]})
    return out


def _side(prompt: list, reply: dict, system: str, tools: str, ctx: Context) -> tuple[dict, bool] | None:

    def encode(dropped: int) -> tuple[list[int], list[list[int]]]:
        source, target = ctx.template.encode_oneturn(ctx.tokenizer, [*prompt[2 * dropped :], reply], system, tools)
        return source, [target]

    fitted = fit_conversation(encode, history_len(prompt), prompt[-1]["content"], ctx,
                              reserve=int(ctx.efficient_eos))
    if fitted is None:
        return None
    source, (target,), truncated = fitted
    target = target + [ctx.eos_id] * int(ctx.efficient_eos)
    ids = source + target
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": masked(len(source)) + target}, truncated

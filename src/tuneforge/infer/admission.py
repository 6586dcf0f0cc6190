"""What one API request may cost: the limits, and the prompt + sampling params of a request within them.

:func:`admit` runs in a worker thread (it tokenizes). Its checks, cheapest first: a prompt whose characters surely
hold more tokens than allowed (:func:`~tuneforge.data.budget.char_budget`) is refused before it is tokenized; then
its token count against ``API_MAX_PROMPT_TOKENS`` and the model's context; then ``max_tokens`` x ``n`` against
``API_MAX_TOTAL_TOKENS``. Every refusal is a :class:`RequestError` (400, OpenAI-style body).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..data.budget import char_budget
from .protocol import ChatCompletionRequest, RequestError, to_conversation


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may cost; ``None`` = no limit of that kind (the values come from the ``API_*`` keys).

    ``body_bytes``: request body (else 413); ``prompt_tokens``: prompt length (else 400, also bounded by the model's
    context); ``total_tokens``: ``max_tokens * n`` (else 400); ``hosts``: ``Host`` names answered (else 400).
    """

    body_bytes: int | None = None
    prompt_tokens: int | None = None
    total_tokens: int | None = None
    hosts: frozenset[str] | None = None


def admit(engine: Any, limits: Limits, body: ChatCompletionRequest) -> tuple[list[int], Any]:
    """``(prompt ids, SamplingParams)`` of a request within ``limits`` (else ``RequestError``); message texts are
    encoded literally (control-token strings typed by the client stay text)."""
    messages, system = to_conversation(body)
    most = prompt_ceiling(engine, limits)
    if most is not None:
        chars = sum(len(m["content"]) for m in messages) + len(system or "")
        if chars > char_budget(engine.tokenizer, most):
            raise RequestError(f"the messages hold {chars} characters, more than a prompt of at most {most} tokens "
                               "can hold", param="messages", code="context_length_exceeded")
    prompt = engine.encode(messages, system, literal=True)
    if limits.prompt_tokens is not None and len(prompt) > limits.prompt_tokens:
        raise RequestError(f"the prompt is {len(prompt)} tokens; this server takes at most {limits.prompt_tokens} "
                           "(API_MAX_PROMPT_TOKENS)", param="messages", code="context_length_exceeded")
    budget = token_budget(engine, len(prompt), body.token_limit())
    budget = within_total(budget, body.n, limits.total_tokens, explicit=body.token_limit() is not None)
    params = engine.params.override(max_tokens=budget, temperature=body.temperature, top_p=body.top_p,
                                    stop=body.stop_list())
    return prompt, params


def model_context(engine: Any) -> int | None:
    """The model's ``max_position_embeddings``, or ``None`` when its config does not say."""
    limit = getattr(getattr(engine.model, "config", None), "max_position_embeddings", None)
    return limit if isinstance(limit, int) else None


def prompt_ceiling(engine: Any, limits: Limits) -> int | None:
    """The most prompt tokens a request may have: the smaller of ``limits.prompt_tokens`` and the context."""
    known = [n for n in (limits.prompt_tokens, model_context(engine)) if n is not None]
    return min(known) if known else None


def token_budget(engine: Any, prompt_len: int, requested: int | None) -> int:
    """Tokens to generate: the request's ``max_tokens`` (else the config's), never past the model's context, so
    no request can keep a worker busy without end. A prompt that fills the context is refused (400)."""
    wanted = requested if requested is not None else engine.params.new_tokens(prompt_len)
    limit = model_context(engine)
    if limit is None:
        return wanted
    if prompt_len >= limit:
        raise RequestError(f"the prompt is {prompt_len} tokens; this model reads at most {limit}",
                           param="messages", code="context_length_exceeded")
    return min(wanted, limit - prompt_len)


def within_total(budget: int, n: int, total: int | None, *, explicit: bool) -> int:
    """``budget`` tokens for each of ``n`` answers, within ``total`` tokens in all: an explicit ``max_tokens`` past
    it is refused (400), a default one is lowered: ``within_total(1024, 4, 2048, explicit=False) == 512``."""
    if total is None or budget * n <= total:
        return budget
    if explicit or total < n:
        raise RequestError(f"max_tokens x n = {budget} x {n} = {budget * n} passes this server's limit of {total} "
                           "tokens per request (API_MAX_TOTAL_TOKENS); ask for fewer", param="max_tokens")
    return total // n

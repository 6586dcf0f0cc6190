"""What every stage processor shares: the context it runs with, the row layout it returns, and helpers.

A processor is ``process_batch(batch, ctx) -> dict[str, list]``, used as a batched ``datasets.map`` function.
It returns one output row per input row, plus two bookkeeping columns that :func:`..process` consumes:
``_drop`` (``""`` for a kept row, else the reason: ``invalid``, ``too_long``, ``no_trained_token``) and
``_truncated`` (the row was cut to fit ``cutoff_len``). Dropped rows carry empty lists in the data columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Features, List, Value

from ..messages import IGNORE_INDEX, PROMPT, RESPONSE, SYSTEM, TOOLS
from ..templates.base import TemplateError
from .seqlen import Guard, cut_prompt, cut_response, fit_turn, keep_structure

Batch = dict[str, list[Any]]
DROP, TRUNCATED = "_drop", "_truncated"
INVALID, TOO_LONG, NO_TRAINED = "invalid", "too_long", "no_trained_token"
_PROBES = ("1", "2")  # two one-token contents: what two renderings share at the end is template structure


@dataclass
class Context:
    """Everything a processor needs; built once per ``process`` call (picklable for ``num_proc``)."""

    tokenizer: Any
    template: Any
    cutoff_len: int
    train_on_prompt: bool = False
    mask_history: bool = False
    guard: Guard = field(default_factory=Guard)
    packing: bool = False
    bos_id: int | None = None  # pt: prepended to every document when the tokenizer adds a bos itself
    doc_end_id: int | None = None  # pt: closes every document (and is trained)

    @property
    def efficient_eos(self) -> bool:
        return bool(getattr(self.template, "efficient_eos", False))

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    def content_len(self, text: str) -> int:
        """Token count of a message's content alone (only called when a prompt must be cut)."""
        return len(self.tokenizer.encode(text or "", add_special_tokens=False))


@dataclass(frozen=True)
class StageProcessor:
    """A stage's batched map function and its output columns (name -> placeholder of a dropped row)."""

    process_batch: Callable[[Batch, Context], Batch]
    columns: dict[str, Any]

    def features(self) -> Features:
        """Explicit output types: a map batch whose rows were all dropped must not fix a column's type to null."""
        types = {c: Value("bool") if isinstance(p, bool) else List(Value("int32")) for c, p in self.columns.items()}
        return Features({**types, DROP: Value("string"), TRUNCATED: Value("bool")})


def common_suffix(a: list[int], b: list[int]) -> int:
    """Length of the longest common suffix: ``common_suffix([1, 2, 9], [3, 2, 9]) == 2``."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def probe_guard(template: Any, tokenizer: Any) -> Guard:
    """Find the template's structural tails by rendering two one-turn chats that differ only in their contents.

    For Qwen (``...{user}<|im_end|>\\n<|im_start|>assistant\\n{reply}<|im_end|>\\n``) this gives
    ``Guard(prompt_tail=5, response_tail=2)``.
    """
    encoded = [
        template.encode_oneturn(tokenizer, [_msg("user", p), _msg("assistant", p)], "", "") for p in _PROBES
    ]
    (prompt_a, reply_a), (prompt_b, reply_b) = encoded
    return Guard(prompt_tail=common_suffix(prompt_a, prompt_b), response_tail=common_suffix(reply_a, reply_b))


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def rows(batch: Batch) -> list[tuple[list, list, str, str]]:
    """``(prompt, response, system, tools)`` per example; missing system/tools columns read as ``""``."""
    n = len(batch[PROMPT])
    systems = batch.get(SYSTEM) or [""] * n
    tools = batch.get(TOOLS) or [""] * n
    return [(batch[PROMPT][i], batch[RESPONSE][i], systems[i] or "", tools[i] or "") for i in range(n)]


def valid_prompt(prompt: list) -> bool:
    """A prompt alternates user/assistant turns and ends with a user (or observation) turn: odd length."""
    return len(prompt) % 2 == 1


def masked(n: int) -> list[int]:
    return [IGNORE_INDEX] * n


def has_trained_token(labels: list[int]) -> bool:
    return labels.count(IGNORE_INDEX) < len(labels)  # list.count runs in C: no per-token Python loop


def collect(batch: Batch, encode: Callable[..., dict[str, Any] | str], columns: dict[str, Any]) -> Batch:
    """Run ``encode(prompt, response, system, tools, index)`` per example and gather the output columns.

    ``encode`` returns a dict with the ``columns`` (and optionally ``_truncated``) or a drop reason string;
    ``columns`` maps each output column to the placeholder a dropped row gets (``[]`` for id lists). A row the
    template refuses (wrong role order, ...) is dropped as ``invalid``.
    """
    results: list[dict[str, Any] | str] = []
    for index, (prompt, response, system, tools) in enumerate(rows(batch)):
        try:
            results.append(encode(prompt, response, system, tools, index))
        except TemplateError:
            results.append(INVALID)
    return gather(results, columns)


def gather(results: list[dict[str, Any] | str], columns: dict[str, Any]) -> Batch:
    """The output columns of per-row ``results`` (a dict of columns, or a drop reason; see :func:`collect`)."""
    out: Batch = {c: [] for c in (*columns, DROP, TRUNCATED)}
    for result in results:
        if isinstance(result, str):
            result = {DROP: result}
        for column, placeholder in columns.items():
            out[column].append(result.get(column, placeholder))
        out[DROP].append(result.get(DROP, ""))
        out[TRUNCATED].append(bool(result.get(TRUNCATED, False)))
    return out


def cut_turn(source: list[int], targets: list[list[int]], content: str, fit: tuple[int, int],
             ctx: Context) -> tuple[list[int], list[list[int]]] | None:
    """Cut a prompt and its replies to ``fit = (prompt ids, reply ids)``; the prompt only loses the oldest ids of
    ``content`` (its last message), so its system block, earlier turns, role header and assistant header stay.

    When the content alone cannot absorb the cut, budget moves from the replies (:func:`keep_structure`);
    ``None`` when that leaves a reply without a content id (the caller drops the row as too long).
    """
    new_source, new_target = fit
    content_len = 0
    if new_source < len(source):
        tail = min(ctx.guard.prompt_tail, len(source))
        content_len = min(ctx.content_len(content), len(source) - tail)
        longest = max((len(t) for t in targets), default=0)
        adjusted = keep_structure(fit, len(source) - content_len, min(longest, ctx.guard.response_tail + 1))
        if adjusted is None:
            return None
        new_source, new_target = adjusted
    return (cut_prompt(source, new_source, ctx.guard.prompt_tail, content_len),
            [cut_response(t, new_target, ctx.guard.response_tail) for t in targets])


Encoder = Callable[[int], tuple[list[int], list[list[int]]]]


def fit_conversation(encode: Encoder, n_history: int, content: str, ctx: Context,
                     reserve: int = 0) -> tuple[list[int], list[list[int]], bool] | None:
    """Fit a prompt (earlier turns folded in) and its alternative replies into ``cutoff_len - reserve`` ids.

    ``encode(k)`` renders the conversation without its ``k`` oldest user/assistant exchanges and returns
    ``(prompt ids, [reply ids, ...])``; ``n_history`` is how many exchanges there are to drop. The split is
    :func:`fit_turn` on the full lengths (LLaMA-Factory's ``infer_seqlen``, the longest reply setting it). The
    prompt meets its share by dropping whole exchanges, oldest first, then the oldest ids of its last message
    (``content``); the system block, the end of the last message and the assistant header always stay, and the
    room a dropped exchange frees goes to the replies. So prompt + longest reply = ``min(budget, prompt after the
    drops + longest reply)``. Example (budget 40, a 3-exchange prompt of 60 ids, reply 10): share 30; drop
    exchanges until the prompt is ≤ 30 ids (say 26), reply keeps its 10. Returns ``(prompt, replies, truncated)``
    or ``None`` when even the structure does not fit.
    """
    budget = ctx.cutoff_len - reserve
    source, targets = encode(0)
    longest = max((len(t) for t in targets), default=0)
    fit = fit_turn(len(source), longest, budget, ctx.guard)
    if fit is None:
        return None
    share, dropped = fit[0], 0
    while len(source) > share and dropped < n_history:
        dropped += 1
        source, targets = encode(dropped)
    longest = max((len(t) for t in targets), default=0)
    new_source = min(len(source), share)
    cut = cut_turn(source, targets, content, (new_source, min(longest, budget - new_source)), ctx)
    if cut is None:
        return None
    replies_cut = any(len(a) < len(b) for a, b in zip(cut[1], targets, strict=True))
    truncated = dropped > 0 or len(cut[0]) < len(source) or replies_cut
    return cut[0], cut[1], truncated


def history_len(prompt: list) -> int:
    """How many user/assistant exchanges come before a prompt's last message: ``history_len([u, a, u]) == 1``."""
    return (len(prompt) - 1) // 2

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
from .seqlen import Guard, cut_prompt, cut_response, fit_turn

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


def cut_source(source: list[int], length: int, content: str, ctx: Context) -> list[int]:
    """Cut a prompt to ``length`` ids, losing the oldest ids of ``content`` (its last message) first."""
    if length >= len(source):
        return source
    return cut_prompt(source, length, ctx.guard.prompt_tail, ctx.content_len(content))


def fit_oneturn(
    source: list[int], targets: list[list[int]], content: str, ctx: Context, reserve: int = 0
) -> tuple[list[int], list[list[int]], bool] | None:
    """Fit one prompt and its alternative responses into ``cutoff_len - reserve`` tokens, the longest response
    setting the budget; returns ``(prompt, responses, truncated)`` or ``None`` when even the guarded ids do not fit.
    """
    longest = max((len(t) for t in targets), default=0)
    fit = fit_turn(len(source), longest, ctx.cutoff_len - reserve, ctx.guard)
    if fit is None:
        return None
    new_targets = [cut_response(t, fit[1], ctx.guard.response_tail) for t in targets]
    return cut_source(source, fit[0], content, ctx), new_targets, fit[0] < len(source) or fit[1] < longest

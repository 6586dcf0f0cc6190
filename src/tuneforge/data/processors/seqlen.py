"""Length budgeting and truncation that keeps a turn well formed.

``infer_seqlen`` is LLaMA-Factory's budget rule (same numbers, same test vectors). Unlike LLaMA-Factory, the
cut itself never removes the structural tokens: a truncated prompt keeps its head (system block + role header) and
its tail (end of the user turn + the assistant header), losing the *oldest* tokens of its last message instead; a
truncated response keeps its end-of-turn tokens and loses the end of its content (LLaMA-Factory bug §11.10). A
prompt whose structure alone does not fit is not cut at all: the caller drops the row as too long.
"""

from __future__ import annotations

from dataclasses import dataclass


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """Split ``cutoff_len`` tokens between a prompt and a response; returns ``(new_source, new_target)``.

    A short response keeps all of its tokens, a short prompt leaves the rest to the response, otherwise the budget
    is shared in proportion: ``infer_seqlen(3000, 2000, 1000) == (600, 400)``,
    ``infer_seqlen(10, 10, 1000) == (10, 10)``.
    """
    if target_len * 2 < cutoff_len:
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


@dataclass(frozen=True)
class Guard:
    """How many tokens of a turn truncation must never touch (found by probing the template once).

    ``prompt_tail``: end of the user turn + assistant header (``<|im_end|>\\n<|im_start|>assistant\\n`` = 5 ids for
    Qwen). ``response_tail``: the end-of-turn ids closing a reply (``<|im_end|>\\n`` = 2 ids for Qwen).
    """

    prompt_tail: int = 0
    response_tail: int = 0


def fit_turn(source_len: int, target_len: int, budget: int, guard: Guard) -> tuple[int, int] | None:
    """``infer_seqlen`` plus room for the guarded tokens; ``None`` when the turn cannot fit well formed.

    A truncated response must keep at least one content token before its end-of-turn (a reply cut down to its
    eot alone would teach the model to stop at once). Budget moves from one side to the other when needed.
    >>> fit_turn(10, 10, 8, Guard(prompt_tail=5, response_tail=2))
    (5, 3)
    """
    if budget <= 0:
        return None
    new_source, new_target = infer_seqlen(source_len, target_len, budget)
    min_source = min(source_len, guard.prompt_tail)
    min_target = min(target_len, guard.response_tail + 1)
    if new_source < min_source:
        new_target, new_source = new_target - (min_source - new_source), min_source
    if new_target < min_target:
        new_source, new_target = new_source - (min_target - new_target), min_target
    if new_source < min_source or new_target < min_target:
        return None
    return new_source, new_target


def cut_response(ids: list[int], length: int, tail: int) -> list[int]:
    """Keep ``length`` ids of a response: the start of its content and its last ``tail`` (end-of-turn) ids.

    ``cut_response([5, 6, 7, 8, 99], 3, 1) == [5, 6, 99]``.
    """
    if length >= len(ids):
        return ids
    tail = min(tail, length)
    return ids[: length - tail] + ids[len(ids) - tail :]


def keep_structure(fit: tuple[int, int], structure: int, min_target: int) -> tuple[int, int] | None:
    """Move budget from the reply to the prompt so that the prompt keeps its ``structure`` ids (everything but its
    last message's content); ``None`` when the reply would fall below ``min_target``.

    ``keep_structure((4, 6), structure=7, min_target=3) == (7, 3)``; ``keep_structure((4, 6), 8, 3) is None``.
    """
    new_source, new_target = fit
    if new_source >= structure:
        return fit
    new_target -= structure - new_source
    return None if new_target < min_target else (structure, new_target)


def cut_prompt(ids: list[int], length: int, tail: int, content_len: int) -> list[int]:
    """Keep ``length`` ids of a prompt by dropping the oldest ids of its last message's content.

    The prompt is ``head + content + tail``: ``head`` (system block, earlier turns, role header) and ``tail`` (end
    of turn + assistant header) are always kept, ``content`` loses its first ids. ``length`` below
    ``len(ids) - content_len`` is a caller error (see :func:`keep_structure`).
    ``cut_prompt([1, 2, 10, 11, 12, 8, 9], 5, tail=2, content_len=3) == [1, 2, 12, 8, 9]``.
    """
    drop = len(ids) - length
    if drop <= 0:
        return ids
    tail = min(tail, len(ids))
    content_len = max(min(content_len, len(ids) - tail), 0)
    if drop > content_len:
        raise ValueError(f"cannot keep {length} of {len(ids)} prompt ids: only {content_len} are content")
    content_start = len(ids) - tail - content_len
    return ids[:content_start] + ids[content_start + drop :]

"""Tokenize a rendered conversation once and cut the ids at character positions.

Tokenizing the whole text in one call (as ``apply_chat_template`` does) is what makes the ids equal the
model's own template: per-piece tokenization breaks SentencePiece prefix spaces and merges across pieces.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """``text`` to ids the way ``apply_chat_template`` does it (special-token strings in the text become tokens,
    no BOS/EOS added by the tokenizer)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_segments(tokenizer: Any, text: str, cuts: list[int]) -> list[list[int]]:
    """Tokenize ``text`` once and split the ids into ``len(cuts)`` segments ending at the char positions ``cuts``.

    ``cuts`` is sorted and its last value is ``len(text)``. A token that straddles a cut goes to the segment
    holding most of its characters (ties go to the later one), so the segments always concatenate to exactly
    ``encode_text(tokenizer, text)``. Example: text ``"ab|cd"`` cut at ``[2, 4]`` gives ``[ids("ab"), ids("cd")]``.
    """
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):  # slow (Python) tokenizers have no offsets
        return _segments_by_prefix(tokenizer, text, cuts)
    segments: list[list[int]] = [[] for _ in cuts]
    last = len(cuts) - 1
    for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        middle = (start + end) // 2 if end > start else start
        segments[min(bisect_right(cuts, middle), last)].append(token_id)
    return segments


def _segments_by_prefix(tokenizer: Any, text: str, cuts: list[int]) -> list[list[int]]:
    """Fallback without offsets: the ids of each prefix ``text[:cut]`` tell where the segments end."""
    ids = encode_text(tokenizer, text)
    ends = [min(len(encode_text(tokenizer, text[:cut])), len(ids)) for cut in cuts[:-1]] + [len(ids)]
    out, start = [], 0
    for end in ends:
        end = max(end, start)  # keep the segments in order even if a prefix tokenizes longer than expected
        out.append(ids[start:end])
        start = end
    return out

"""How many characters can hold at most N tokens: the bound that lets a huge text be cut before it is tokenized.

A token never covers more characters than its longest vocabulary entry (byte-level entries spell one character per
byte, so their length bounds the characters too); normalizers such as NFC can merge a few characters into one,
hence the factor :data:`NORMALIZER_SLACK`. So a text longer than ``char_budget(tokenizer, n)`` characters has more
than ``n`` tokens, and its first ``char_budget`` characters already hold its first ``n`` tokens (plus a margin for
the merges near the cut). With Qwen2.5 (longest entry 128) ``char_budget(tok, 2048) == 2 * 128 * (2048 + 64)``.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

NORMALIZER_SLACK = 2  # NFC/NFKC fold at most a base and its marks; 2 covers every shipped tokenizer with room
MARGIN_TOKENS = 64  # tokens past the limit kept so that merges across the cut cannot change the kept ones
_LONGEST: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def longest_token_chars(tokenizer: Any) -> int:
    """Characters of the tokenizer's longest vocabulary entry (added tokens included); computed once per tokenizer.

    >>> longest_token_chars(qwen_tokenizer)
    128
    """
    try:
        return _LONGEST[tokenizer]
    except (KeyError, TypeError):
        pass
    longest = max((len(piece) for piece in tokenizer.get_vocab()), default=1)
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced: recomputed each time
        _LONGEST[tokenizer] = longest
    return longest


def char_budget(tokenizer: Any, tokens: int) -> int:
    """Characters that surely hold the first ``tokens`` tokens of any text (see the module docstring)."""
    return NORMALIZER_SLACK * longest_token_chars(tokenizer) * (tokens + MARGIN_TOKENS)

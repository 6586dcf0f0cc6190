""""Did you mean" suggestions by edit distance."""

from __future__ import annotations

from collections.abc import Iterable


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute each cost 1).

    >>> edit_distance("lora_ranl", "lora_rank")
    1
    """
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def closest(word: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """The candidates nearest to ``word``, best first; only plausible ones (distance <= max(2, len/3))."""
    word_l = word.lower()
    budget = max(2, len(word) // 3)
    scored = []
    for cand in candidates:
        dist = edit_distance(word_l, cand.lower())
        if word_l and (word_l in cand.lower() or cand.lower() in word_l):
            dist = min(dist, budget)
        if dist <= budget:
            scored.append((dist, cand))
    scored.sort()
    return [c for _, c in scored[:limit]]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` or an empty string."""
    found = closest(word, candidates)
    if not found:
        return ""
    return " Did you mean " + " or ".join(repr(f) for f in found) + "?"

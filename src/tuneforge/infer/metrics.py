"""Text-overlap scores of generated answers: BLEU-4, ROUGE-1/2/L and exact match, in plain Python.

Definitions (per answer, then averaged over answers, reported ×100 like LLaMA-Factory's ``predict_*`` metrics):

* **BLEU-4** over characters (as LLaMA-Factory: ``sentence_bleu([list(label)], list(pred))``): geometric mean of
  the clipped 1-4-gram precisions times the brevity penalty ``exp(1 - r/c)`` when the answer is shorter than the
  reference; a precision with no match is smoothed as NLTK's ``method3`` does (the k-th such precision becomes
  ``1 / (2^k · n-grams in the answer)``); no matching character at all gives 0.
* **ROUGE-1/2** over words: F1 of the clipped unigram/bigram overlap. **ROUGE-L**: F1 of the longest common
  subsequence of words. Words are runs of letters/digits and every other non-space character alone, so a CJK
  sentence counts per character (LLaMA-Factory segments Chinese with jieba instead: scores on Chinese text differ).
* **exact match**: share of answers equal to their reference after stripping surrounding whitespace.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])")


def words(text: str) -> list[str]:
    """``words("Hello, world 你好") == ["hello", ",", "world", "你", "好"]`` (lower-cased)."""
    return _WORD.findall(_CJK.sub(r" \1 ", text.lower()))


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu4(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """BLEU-4 in [0, 1] of one hypothesis against one reference (token sequences; see the module docstring).

    >>> round(sentence_bleu4(list("abcd"), list("abce")), 4)   # (3/4 · 2/3 · 1/2 · 1/2)^(1/4)
    0.5946
    """
    if not hypothesis or not reference:
        return 0.0
    precisions: list[float] = []
    zeros = 0
    for n in range(1, 5):
        hyp, ref = ngrams(hypothesis, n), ngrams(reference, n)
        matches = sum(min(count, ref[gram]) for gram, count in hyp.items())
        total = max(1, sum(hyp.values()))
        if n == 1 and matches == 0:
            return 0.0
        if matches == 0:
            zeros += 1
            precisions.append(1 / (2 ** zeros * total))
        else:
            precisions.append(matches / total)
    c, r = len(hypothesis), len(reference)
    penalty = 1.0 if c > r else math.exp(1 - r / c)
    return penalty * math.exp(sum(math.log(p) for p in precisions) / 4)


def _f1(overlap: int, hyp_total: int, ref_total: int) -> float:
    if overlap == 0 or hyp_total == 0 or ref_total == 0:
        return 0.0
    precision, recall = overlap / hyp_total, overlap / ref_total
    return 2 * precision * recall / (precision + recall)


def rouge_n(reference: Sequence[str], hypothesis: Sequence[str], n: int) -> float:
    """F1 of the clipped n-gram overlap: ``rouge_n("a b c".split(), "a b d".split(), 1) == 2/3``."""
    hyp, ref = ngrams(hypothesis, n), ngrams(reference, n)
    overlap = sum(min(count, ref[gram]) for gram, count in hyp.items())
    return _f1(overlap, sum(hyp.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence: ``lcs_length("abcde", "ace") == 3`` (O(len(a)·len(b)) time, O(len(b)) memory)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """F1 of the longest common subsequence: ``rouge_l("a b c d".split(), "a c d".split()) == 6/7``."""
    return _f1(lcs_length(reference, hypothesis), len(hypothesis), len(reference))


def exact_match(predictions: Sequence[str], labels: Sequence[str]) -> float:
    """Share (0..1) of predictions equal to their label after ``strip()``; 0.0 for no pairs.

    Raises ValueError when the two lists differ in length.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not predictions:
        return 0.0
    return sum(p.strip() == label.strip() for p, label in zip(predictions, labels, strict=True)) / len(predictions)


def text_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """``{"bleu-4", "rouge-1", "rouge-2", "rouge-l"}`` averaged over the pairs, ×100, rounded to 4 decimals;
    plus ``"exact_match"`` (×100). Empty input gives zeros."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    sums = dict.fromkeys(("bleu-4", "rouge-1", "rouge-2", "rouge-l"), 0.0)
    for pred, label in zip(predictions, labels, strict=True):
        sums["bleu-4"] += sentence_bleu4(list(label), list(pred))
        ref, hyp = words(label), words(pred)
        sums["rouge-1"] += rouge_n(ref, hyp, 1)
        sums["rouge-2"] += rouge_n(ref, hyp, 2)
        sums["rouge-l"] += rouge_l(ref, hyp)
    count = max(1, len(predictions))
    scores = {key: round(100 * value / count, 4) for key, value in sums.items()}
    scores["exact_match"] = round(100 * exact_match(predictions, labels), 4)
    return scores

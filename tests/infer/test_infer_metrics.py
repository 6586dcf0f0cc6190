"""BLEU-4 / ROUGE / exact match against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from tuneforge.infer.metrics import (
    exact_match,
    lcs_length,
    rouge_l,
    rouge_n,
    sentence_bleu4,
    text_scores,
    words,
)


def test_bleu_identical_is_one_and_disjoint_is_zero():
    assert sentence_bleu4(list("hello world"), list("hello world")) == pytest.approx(1.0)
    assert sentence_bleu4(list("abc"), list("xyz")) == 0.0
    assert sentence_bleu4(list("abc"), []) == 0.0


def test_bleu_smoothing_of_a_missing_four_gram():
    """ref "abcd", hyp "abce": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> method3: 1/(2^1 · 1) = 1/2; same length,
    so no brevity penalty: BLEU = (3/4 · 2/3 · 1/2 · 1/2)^(1/4) = (1/8)^(1/4)."""
    assert sentence_bleu4(list("abcd"), list("abce")) == pytest.approx((1 / 8) ** 0.25)


def test_bleu_brevity_penalty():
    """ref "abcdef" (6), hyp "abcd" (4): all precisions 1, BP = exp(1 - 6/4)."""
    assert sentence_bleu4(list("abcdef"), list("abcd")) == pytest.approx(math.exp(1 - 6 / 4))


def test_bleu_second_zero_precision_halves_again():
    """ref "ab", hyp "ab": p1 = 2/2, p2 = 1/1, p3 = 0/max(1, 0) -> 1/2, p4 -> 1/4; BLEU = (1/8)^(1/4)."""
    assert sentence_bleu4(list("ab"), list("ab")) == pytest.approx((1 / 2 * 1 / 4) ** 0.25)


def test_rouge_hand_values():
    ref, hyp = words("the cat sat"), words("the cat ran")
    assert rouge_n(ref, hyp, 1) == pytest.approx(2 / 3)      # 2 of 3 words both ways
    assert rouge_n(ref, hyp, 2) == pytest.approx(1 / 2)      # "the cat" of 2 bigrams each
    assert rouge_l(ref, hyp) == pytest.approx(2 / 3)         # LCS "the cat"
    assert rouge_l(words("a b c d"), words("a c d")) == pytest.approx(6 / 7)  # P = 1, R = 3/4
    assert rouge_n(words("a a b"), words("a a a"), 1) == pytest.approx(2 / 3)  # clipped: 2 "a" count


def test_lcs_and_words():
    assert lcs_length("abcde", "ace") == 3
    assert lcs_length("", "abc") == 0
    assert words("Hello, World 你好") == ["hello", ",", "world", "你", "好"]


def test_exact_match():
    assert exact_match(["a ", "b", "c"], ["a", "x", " c\n"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        exact_match(["a", "b"], ["a"])


def test_text_scores_average_and_scale():
    scores = text_scores(["the cat sat", "zzz"], ["the cat sat", "abc"])
    assert set(scores) == {"bleu-4", "rouge-1", "rouge-2", "rouge-l", "exact_match"}
    assert scores["rouge-1"] == pytest.approx(50.0)       # (100 + 0) / 2
    assert scores["bleu-4"] == pytest.approx(50.0)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert text_scores([], []) == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0,
                                   "exact_match": 0.0}

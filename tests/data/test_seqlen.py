"""Length budgeting (LLaMA-Factory's vectors) and truncation that keeps the header and the end-of-turn."""

from __future__ import annotations

import pytest

from tuneforge.data.processors.seqlen import (
    Guard,
    cut_prompt,
    cut_response,
    fit_turn,
    infer_seqlen,
    keep_structure,
)


@pytest.mark.parametrize(
    ("source", "target", "cutoff", "expected"),
    [
        (3000, 2000, 1000, (600, 400)),
        (2000, 3000, 1000, (400, 600)),
        (1000, 100, 1000, (900, 100)),
        (100, 1000, 1000, (100, 900)),
        (100, 500, 1000, (100, 500)),
        (500, 100, 1000, (500, 100)),
        (10, 10, 1000, (10, 10)),
    ],
)
def test_infer_seqlen_vectors(source, target, cutoff, expected):
    assert infer_seqlen(source, target, cutoff) == expected


def test_fit_turn_moves_budget_to_keep_guarded_ids():
    guard = Guard(prompt_tail=5, response_tail=2)
    assert infer_seqlen(10, 10, 8) == (4, 4)  # would cut into the 5-id assistant header
    assert fit_turn(10, 10, 8, guard) == (5, 3)
    assert fit_turn(3, 10, 8, guard) == (3, 5)  # a prompt shorter than the guard keeps all of itself
    assert fit_turn(10, 10, 7, guard) is None  # 5 + (2 + 1 content id) does not fit in 7
    assert fit_turn(10, 2, 7, guard) == (5, 2)  # an uncut reply may be its end-of-turn alone
    assert fit_turn(10, 10, 0, guard) is None


def test_cut_response_keeps_end_of_turn():
    reply = [11, 12, 13, 14, 90, 91]  # content + <|im_end|> \n
    assert cut_response(reply, 4, tail=2) == [11, 12, 90, 91]
    assert cut_response(reply, 6, tail=2) == reply
    assert cut_response(reply, 9, tail=2) == reply


def test_cut_prompt_drops_oldest_user_content_first():
    # head (system + user header) = [1, 2], content = [10, 11, 12], tail (eot + assistant header) = [8, 9]
    prompt = [1, 2, 10, 11, 12, 8, 9]
    assert cut_prompt(prompt, 5, tail=2, content_len=3) == [1, 2, 12, 8, 9]
    assert cut_prompt(prompt, 4, tail=2, content_len=3) == [1, 2, 8, 9]
    assert cut_prompt(prompt, 7, tail=2, content_len=3) == prompt
    with pytest.raises(ValueError, match="only 3 are content"):
        cut_prompt(prompt, 3, tail=2, content_len=3)  # the head (system block) is never cut


def test_keep_structure_moves_budget_from_the_reply():
    assert keep_structure((4, 6), structure=3, min_target=3) == (4, 6)  # the content absorbs the cut
    assert keep_structure((4, 6), structure=7, min_target=3) == (7, 3)
    assert keep_structure((4, 6), structure=8, min_target=3) is None  # the reply would lose its last content id

"""Huge rows are cut to a character budget before tokenizing: same ids within the budget, counted when cut."""

from __future__ import annotations

import logging

import pytest
from datasets import Dataset

from tuneforge.config.loader import resolve
from tuneforge.data.budget import char_budget
from tuneforge.data.processors import PROCESSORS, ProcessStats, build_context, process
from tuneforge.data.processors.cap import cap_text
from tuneforge.data.templates import get_template

CUTOFF = 64


def make_cfg(stage: str = "sft", **keys):
    return resolve({"model_name_or_path": "x", "stage": stage, "cutoff_len": CUTOFF, "packing": False, **keys},
                   environ={}).config


def rows(*pairs: tuple[str, str]) -> Dataset:
    return Dataset.from_list([{"_prompt": [{"role": "user", "content": q}],
                               "_response": [{"role": "assistant", "content": a}], "_system": "", "_tools": "",
                               "_kto_tag": None} for q, a in pairs])


def uncapped(dataset: Dataset, cfg, tokenizer, template) -> list[list[int]]:
    """The ids of the processor run directly on the whole rows (what ``process`` did before the cap)."""
    ctx = build_context(cfg, tokenizer, template)
    out = PROCESSORS["supervised"].process_batch(dataset[:], ctx)
    return [ids for ids, drop in zip(out["input_ids"], out["_drop"], strict=True) if not drop]


@pytest.fixture(scope="module")
def chatml(tiny_tokenizer):
    return get_template("chatml", tiny_tokenizer)


def test_rows_within_the_budget_keep_their_ids(tiny_tokenizer, chatml):
    cap = char_budget(tiny_tokenizer, CUTOFF)
    words = "the quick brown fox jumps over the lazy dog "
    longest = (words * (2 * cap // len(words) + 1))[: 2 * cap]  # exactly at the budget: not cut
    data = rows(("hi", "hello"), ("a question", longest), (longest, "short answer"), (longest, longest))
    stats = ProcessStats(stage="sft")
    out = process(data, make_cfg(), tiny_tokenizer, chatml, stats=stats)
    assert [r["input_ids"] for r in out] == uncapped(data, make_cfg(), tiny_tokenizer, chatml)
    assert stats.cut == 0 and stats.truncated == 3


def test_a_huge_reply_is_cut_first_and_counted(tiny_tokenizer, chatml, caplog):
    huge = "lorem ipsum dolor sit amet " * 40_000  # ~1 MB, far past the budget of 64 tokens
    data = rows(("short question", huge), ("hi", "hello"))
    stats = ProcessStats(stage="sft")
    with caplog.at_level(logging.WARNING):
        out = process(data, make_cfg(), tiny_tokenizer, chatml, stats=stats)
    assert stats.cut == 1 and "1 cut before tokenizing" in stats.summary()
    assert any("1 row(s) held a text far longer" in r.getMessage() for r in caplog.records)
    # a short question: the reply keeps cutoff - prompt tokens from its start, whatever its length, so the ids
    # of the cut row are those of the whole row
    assert [r["input_ids"] for r in out] == uncapped(data, make_cfg(), tiny_tokenizer, chatml)


def test_packed_pretraining_keeps_every_token(tiny_tokenizer, chatml):
    cap = char_budget(tiny_tokenizer, CUTOFF)
    doc = "word " * (cap // 2)  # 2.5 x cap characters: would be cut if pt were capped
    data = Dataset.from_list([{"_prompt": [{"role": "user", "content": doc}], "_response": [], "_system": "",
                               "_tools": "", "_kto_tag": None}])
    stats = ProcessStats(stage="pt")
    out = process(data, make_cfg("pt", packing=True), tiny_tokenizer, chatml, stats=stats)
    assert stats.cut == 0
    assert sum(len(r["input_ids"]) for r in out) >= len(tiny_tokenizer(doc, add_special_tokens=False)["input_ids"])


def test_cap_text_keeps_both_ends():
    assert cap_text("abcdefghij", 5) == "abcdefghij"
    assert cap_text("a" * 10 + "xyz" + "b" * 10, 4) == "aaaabbbb"

"""Truncation of multi-turn prompts, every stage, several cutoffs (the shipped ChatML tokenizer; no ../shared).

The rule (docs/data.md, ``processors.common.fit_conversation``): the prompt's share is LLaMA-Factory's split of the
full lengths; it is met by dropping whole exchanges, oldest first, then the oldest ids of the last user message;
the system block, the end of the last user message and the assistant header always survive; the reply keeps
``min(longest reply, budget - kept prompt)``. The oracle renders the kept conversations with the tokenizer's own
``apply_chat_template``, not with our template code. LLaMA-Factory 0.9.5 kept the *start* of such prompts: the
system block and the whole final question vanished (``<|im_start|>user\\n<|im_end|>\\n<|im_start|>assistant\\n``).
"""

from __future__ import annotations

import pytest
from datasets import Dataset

from tuneforge.config.loader import resolve
from tuneforge.data.messages import IGNORE_INDEX
from tuneforge.data.processors import PREDICT, ProcessStats, process
from tuneforge.data.processors.seqlen import Guard, fit_turn
from tuneforge.data.templates import get_template

SYSTEM = "You are a careful assistant who answers in one line."
QUESTION_END = "so which colour is the sky at noon?"
HEADER = "<|im_end|>\n<|im_start|>assistant\n"
CUTOFFS = (48, 96, 160, 256, 4096)


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def multiturn(n_exchanges: int = 3, last_words: int = 12) -> list[dict]:
    """``n_exchanges`` long user/assistant exchanges, then a final question whose *end* is ``QUESTION_END``."""
    turns = []
    for i in range(n_exchanges):
        turns += [msg("user", f"old question {i} " + "about the weather " * 12),
                  msg("assistant", f"old answer {i} " + "it depends on clouds " * 10)]
    return [*turns, msg("user", "Thinking of it " * last_words + QUESTION_END)]


def row(prompt: list[dict], replies: list[str], tag: bool | None = None) -> dict:
    return {"_prompt": prompt, "_response": [msg("assistant", r) for r in replies], "_system": SYSTEM,
            "_tools": "", "_kto_tag": tag}


def cfg(stage: str, cutoff: int):
    return resolve({"model_name_or_path": "x", "stage": stage, "cutoff_len": cutoff, "template": "chatml"}).config


@pytest.fixture(scope="module")
def chatml(tiny_tokenizer):
    return get_template("chatml", tiny_tokenizer)


def render(tok, prompt: list[dict]) -> list[int]:
    messages = [msg("system", SYSTEM), *prompt]
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def expected_lengths(tok, prompt: list[dict], longest: int, cutoff: int) -> tuple[int, int, int]:
    """``(exchanges dropped, prompt ids kept, reply ids kept)`` by the documented rule, rendered by the tokenizer."""
    tail_len = len(tok.encode(HEADER, add_special_tokens=False))
    fit = fit_turn(len(render(tok, prompt)), longest, cutoff, Guard(prompt_tail=tail_len, response_tail=2))
    assert fit is not None
    dropped = 0
    while len(render(tok, prompt[2 * dropped :])) > fit[0] and 2 * dropped < len(prompt) - 1:
        dropped += 1
    kept_prompt = min(len(render(tok, prompt[2 * dropped :])), fit[0])
    return dropped, kept_prompt, min(longest, cutoff - kept_prompt)


def reply_ids(tok, reply: str) -> list[int]:
    return tok.encode(reply + "<|im_end|>\n", add_special_tokens=False)


def check_prompt(tok, ids: list[int], prompt: list[dict], dropped: int, kept: int) -> None:
    text = tok.decode(ids)
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"), text[:120]
    assert text.endswith("noon?" + HEADER), text[-120:]
    last = text.rsplit("<|im_start|>user\n", 1)[1].removesuffix(HEADER)
    assert prompt[-1]["content"].endswith(last.strip())  # what is left of the question is its end
    assert len(ids) == kept
    if kept == len(render(tok, prompt[2 * dropped :])):  # nothing of the last question was cut
        assert ids == render(tok, prompt[2 * dropped :])
    first_kept = prompt[2 * dropped]["content"] if dropped * 2 < len(prompt) - 1 else None
    if first_kept is not None:
        assert first_kept in text  # whole exchanges go, never half of one


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("stage", ["rm", "dpo"])
def test_pairwise_multiturn_truncation(tiny_tokenizer, chatml, stage, cutoff):
    tok, prompt = tiny_tokenizer, multiturn()
    replies = ["The sky is blue.", "Blue, mostly, " * 8]
    stats = ProcessStats(stage)
    out = process(Dataset.from_list([row(prompt, replies)]), cfg(stage, cutoff), tok, chatml, stats=stats)[0]
    longest = max(len(reply_ids(tok, r)) for r in replies)
    dropped, kept_prompt, kept_reply = expected_lengths(tok, prompt, longest, cutoff)
    n_prompt = out["chosen_labels"].count(IGNORE_INDEX)
    check_prompt(tok, out["chosen_input_ids"][:n_prompt], prompt, dropped, kept_prompt)
    assert out["rejected_input_ids"][:n_prompt] == out["chosen_input_ids"][:n_prompt]
    assert max(len(out["chosen_input_ids"]), len(out["rejected_input_ids"])) == kept_prompt + kept_reply
    assert len(out["rejected_input_ids"]) <= cutoff
    assert tok.decode(out["rejected_input_ids"]).endswith("<|im_end|>\n")
    assert stats.truncated == int(cutoff < len(render(tok, prompt)) + longest)


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_kto_multiturn_truncation(tiny_tokenizer, chatml, cutoff):
    tok = tiny_tokenizer
    rows = [row(multiturn(), ["The sky is blue."], True), row(multiturn(2), ["Green, " * 20], False)]
    out = process(Dataset.from_list(rows), cfg("kto", cutoff), tok, chatml)
    for example, source in zip(out, rows, strict=True):
        longest = len(reply_ids(tok, source["_response"][0]["content"]))
        dropped, kept_prompt, kept_reply = expected_lengths(tok, source["_prompt"], longest, cutoff)
        n_prompt = example["labels"].count(IGNORE_INDEX)
        check_prompt(tok, example["input_ids"][:n_prompt], source["_prompt"], dropped, kept_prompt)
        assert len(example["input_ids"]) == kept_prompt + kept_reply
        kl_prompt = example["kl_input_ids"][: example["kl_labels"].count(IGNORE_INDEX)]
        assert tok.decode(kl_prompt).endswith("noon?" + HEADER)


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_ppo_and_predict_prompts_keep_the_question(tiny_tokenizer, chatml, cutoff):
    tok, prompt = tiny_tokenizer, multiturn()
    reference = "The sky is blue."
    for stage, key in (("ppo", None), ("sft", PREDICT)):
        out = process(Dataset.from_list([row(prompt, [reference])]), cfg(stage, cutoff), tok, chatml, key=key)[0]
        dropped, kept_prompt, kept_reply = expected_lengths(tok, prompt, len(reply_ids(tok, reference)), cutoff)
        check_prompt(tok, out["input_ids"], prompt, dropped, kept_prompt)
        assert len(out["labels"]) == kept_reply


@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_sft_multiturn_keeps_system_and_headers(tiny_tokenizer, chatml, cutoff):
    tok, prompt = tiny_tokenizer, multiturn()
    out = process(Dataset.from_list([row(prompt, ["The sky is blue."])]), cfg("sft", cutoff), tok, chatml)[0]
    text = tok.decode(out["input_ids"])
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert len(out["input_ids"]) <= cutoff
    assert text.endswith("<|im_end|>\n")  # every kept turn ends well formed (sft keeps turns chronologically)


def test_last_question_longer_than_its_share_loses_its_oldest_ids(tiny_tokenizer, chatml):
    tok = tiny_tokenizer
    prompt = multiturn(n_exchanges=2, last_words=80)
    out = process(Dataset.from_list([row(prompt, ["Blue."] * 2)]), cfg("dpo", 96), tok, chatml)[0]
    n_prompt = out["chosen_labels"].count(IGNORE_INDEX)
    text = tok.decode(out["chosen_input_ids"][:n_prompt])
    assert "old question" not in text and "old answer" not in text  # every earlier exchange went first
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert text.endswith(QUESTION_END + HEADER)
    assert len(out["chosen_input_ids"]) == 96


def test_system_block_longer_than_the_budget_drops_the_row(tiny_tokenizer, chatml):
    long_system = {**row([msg("user", "Hi")], ["Yes", "No"]), "_system": "rules " * 200}
    stats = ProcessStats("dpo")
    out = process(Dataset.from_list([long_system, row([msg("user", "Hi")], ["Yes", "No"])]), cfg("dpo", 64),
                  tiny_tokenizer, chatml, stats=stats)
    assert stats.dropped == {"too_long": 1} and len(out) == 1  # a system block is never cut from its start

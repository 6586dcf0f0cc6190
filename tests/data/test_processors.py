"""Stage processors on the real Qwen2.5 tokenizer and the qwen template: exact ids, labels, drops and truncation."""

from __future__ import annotations

import dataclasses

import pytest
from datasets import Dataset

from shared_models import require_shared
from tuneforge.config.loader import resolve
from tuneforge.data.messages import IGNORE_INDEX as X
from tuneforge.data.processors import PREDICT, ProcessStats, process

IM_END, NL, ENDOFTEXT = 151645, 198, 151643
HEADER = "<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(require_shared("Qwen2.5-0.5B-Instruct")))


@pytest.fixture(scope="module")
def qwen(tok):
    from tuneforge.data.templates import get_template

    return get_template("qwen", tok)


def cfg(stage: str = "sft", **data):
    return resolve({"model_name_or_path": "x", "stage": stage, "cutoff_len": 1024, "packing": False, **data}).config


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def rows(*examples: dict) -> Dataset:
    base = {"_prompt": [], "_response": [], "_system": "", "_tools": "", "_kto_tag": None}
    return Dataset.from_list([{**base, **e} for e in examples])


CHAT = {"_prompt": [msg("user", "Hi"), msg("assistant", "Hello there"), msg("user", "Bye")],
        "_response": [msg("assistant", "Ok")]}


def _trained(tok, labels: list[int]) -> str:
    return tok.decode([t for t in labels if t != X])


def test_sft_multiturn_labels_exact(tok, qwen):
    out = process(rows(CHAT), cfg(), tok, qwen)[0]
    (p0, r0), (p1, r1) = qwen.encode_multiturn(tok, CHAT["_prompt"] + CHAT["_response"])
    assert r0[-2:] == [IM_END, NL] and r1[-2:] == [IM_END, NL]
    assert out["input_ids"] == p0 + r0 + p1 + r1
    assert out["input_ids"] == tok.apply_chat_template(CHAT["_prompt"] + CHAT["_response"], return_dict=False)
    assert out["labels"] == [X] * len(p0) + r0 + [X] * len(p1) + r1
    assert out["attention_mask"] == [1] * len(out["input_ids"])
    assert _trained(tok, out["labels"]) == "Hello there<|im_end|>\nOk<|im_end|>\n"


def test_sft_train_on_prompt_and_mask_history(tok, qwen):
    everything = process(rows(CHAT), cfg(train_on_prompt=True), tok, qwen)[0]
    assert everything["labels"] == everything["input_ids"]
    last = process(rows(CHAT), cfg(mask_history=True), tok, qwen)[0]
    (p0, r0), (p1, r1) = qwen.encode_multiturn(tok, CHAT["_prompt"] + CHAT["_response"])
    assert last["labels"] == [X] * (len(p0) + len(r0) + len(p1)) + r1


def test_sft_mask_history_budget_goes_to_the_newest_turn(tok, qwen):
    (p0, r0), (p1, r1) = qwen.encode_multiturn(tok, CHAT["_prompt"] + CHAT["_response"])
    cutoff = len(p1) + len(r1) + 3  # room for the last turn only
    newest = process(rows(CHAT), cfg(mask_history=True, cutoff_len=cutoff), tok, qwen)[0]
    assert newest["input_ids"] == p1 + r1 and newest["labels"] == [X] * len(p1) + r1
    oldest = process(rows(CHAT), cfg(cutoff_len=len(p0) + len(r0) + 3), tok, qwen)[0]
    assert oldest["input_ids"] == p0 + r0  # chronological budget: later turns go


def test_sft_efficient_eos(tok, qwen):
    eff = dataclasses.replace(qwen, assistant="{{content}}", efficient_eos=True)
    out = process(rows(CHAT), cfg(), tok, eff)[0]
    (p0, r0), (p1, r1) = eff.encode_multiturn(tok, CHAT["_prompt"] + CHAT["_response"])
    eos = tok.eos_token_id
    assert out["input_ids"] == p0 + r0 + p1 + r1 + [eos]
    assert out["labels"] == [X] * len(p0) + r0 + [eos] + [X] * (len(p1) - 1) + r1 + [eos]


def test_sft_truncation_keeps_header_and_end_of_turn(tok, qwen):
    long = {"_prompt": [msg("user", "alpha " * 300 + "QUESTION?")], "_response": [msg("assistant", "beta " * 300)]}
    stats = ProcessStats("sft")
    out = process(rows(long), cfg(cutoff_len=100), tok, qwen, stats=stats)[0]
    assert len(out["input_ids"]) == 100 and stats.truncated == 1
    text = tok.decode(out["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are Qwen")  # head kept
    assert "QUESTION?" + HEADER + "beta" in text  # the newest user text and the assistant header survive
    assert text.endswith("beta<|im_end|>\n")  # the reply keeps its end-of-turn
    n_prompt = out["labels"].index(next(t for t in out["labels"] if t != X))
    assert tok.decode(out["input_ids"][:n_prompt]).endswith("QUESTION?" + HEADER)
    assert out["labels"][n_prompt:] == out["input_ids"][n_prompt:]  # the whole (cut) reply + eot is trained


def test_drops_are_counted_by_reason(tok, qwen):
    bare = dataclasses.replace(qwen, assistant="{{content}}")  # no end-of-turn: an empty reply trains nothing
    data = rows(CHAT, {"_prompt": [msg("user", "a"), msg("assistant", "b")], "_response": [msg("assistant", "c")]},
                {"_prompt": [msg("assistant", "x")], "_response": [msg("assistant", "y")]},
                {"_prompt": [msg("user", "q")], "_response": [msg("assistant", "")]})
    stats = ProcessStats("sft")
    out = process(data, cfg(), tok, bare, stats=stats)
    assert stats.dropped == {"invalid": 2, "no_trained_token": 1}  # even prompt; reply where a user turn goes
    assert (stats.total, stats.kept, len(out)) == (4, 1, 1)
    assert "kept 1 of 4" in stats.summary()
    one_by_one = process(data, cfg(preprocessing_batch_size=1), tok, bare)  # a map batch with only dropped rows
    assert one_by_one["input_ids"] == out["input_ids"]
    # 7 tokens cannot hold the 5-id assistant header + 1 reply id + the 2-id end-of-turn
    too_long = ProcessStats("sft")
    with pytest.raises(ValueError, match="no example is left"):
        process(rows(CHAT), cfg(cutoff_len=7), tok, qwen, stats=too_long)
    assert too_long.dropped == {"too_long": 1}
    with pytest.raises(ValueError, match="no example is left"):
        process(rows({"_prompt": [msg("user", "q")], "_response": []}), cfg(), tok, qwen)


def test_pairwise_exact_and_shared_budget(tok, qwen):
    ex = {"_prompt": [msg("user", "Pick")], "_response": [msg("assistant", "Yes"), msg("assistant", "No way " * 40)]}
    out = process(rows(ex), cfg("dpo"), tok, qwen)[0]
    prompt, chosen = qwen.encode_oneturn(tok, ex["_prompt"] + ex["_response"][:1])
    _, rejected = qwen.encode_oneturn(tok, ex["_prompt"] + ex["_response"][1:])
    assert out["chosen_input_ids"] == prompt + chosen and out["chosen_labels"] == [X] * len(prompt) + chosen
    assert out["rejected_input_ids"] == prompt + rejected and out["rejected_labels"] == [X] * len(prompt) + rejected
    cutoff = 2 * len(prompt) + 2  # a short prompt keeps all of itself (infer_seqlen), the replies share the rest
    cut = process(rows(ex), cfg("rm", cutoff_len=cutoff), tok, qwen)[0]
    assert cut["chosen_input_ids"] == prompt + chosen  # the short reply is untouched
    assert cut["rejected_input_ids"][: len(prompt)] == prompt and len(cut["rejected_input_ids"]) == cutoff
    assert cut["rejected_input_ids"][-2:] == [IM_END, NL] and cut["rejected_labels"][-2:] == [IM_END, NL]


def test_feedback_kl_pairs_rotate_by_one(tok, qwen):
    examples = [{"_prompt": [msg("user", f"Q{i}")], "_response": [msg("assistant", f"A{i}")], "_kto_tag": i != 1}
                for i in range(3)]
    examples.append({"_prompt": [msg("user", "Q3")], "_response": [msg("assistant", "A3")], "_kto_tag": None})
    stats = ProcessStats("kto")
    out = process(rows(*examples), cfg("kto"), tok, qwen, stats=stats)
    assert stats.dropped == {"invalid": 1}  # no desirability tag
    assert out["kto_tags"] == [True, False, True]
    for i, row in enumerate(out):
        prompt, reply = qwen.encode_oneturn(tok, examples[i]["_prompt"] + examples[i]["_response"])
        kl_prompt, kl_reply = qwen.encode_oneturn(tok, examples[i]["_prompt"] + examples[i - 1]["_response"])
        assert row["input_ids"] == prompt + reply and row["labels"] == [X] * len(prompt) + reply
        assert row["kl_input_ids"] == kl_prompt + kl_reply and row["kl_labels"] == [X] * len(kl_prompt) + kl_reply
    assert tok.decode(out[0]["kl_input_ids"]).endswith("Q0" + HEADER + "A3<|im_end|>\n")  # wraps: 0 takes the last


def test_unsupervised_prompt_and_reference(tok, qwen):
    ex = {"_prompt": [msg("user", "Hi")], "_response": [msg("assistant", "Hello")]}
    out = process(rows(ex, {"_prompt": [msg("user", "Hey")], "_response": []}), cfg("ppo"), tok, qwen)
    assert out[0]["input_ids"] == tok.apply_chat_template(ex["_prompt"], add_generation_prompt=True, return_dict=False)
    assert out[0]["labels"] == [*tok.encode("Hello", add_special_tokens=False), IM_END, NL]
    assert out[1]["labels"] == []  # no reference: kept, nothing to compare against
    assert process(rows(ex), cfg(), tok, qwen, key=PREDICT)[0] == out[0]


def test_pretrain_eos_learned_even_when_pad_is_eos(tok):
    assert tok.pad_token_id == ENDOFTEXT  # Qwen pads with <|endoftext|>, the document separator
    docs = rows({"_prompt": [msg("user", "Hello world")]}, {"_prompt": [msg("user", "x " * 30)]})
    out = process(docs, cfg("pt", cutoff_len=16), tok, None)
    assert out[0]["input_ids"] == [9707, 1879, ENDOFTEXT] and out[0]["labels"] == [9707, 1879, ENDOFTEXT]
    assert len(out[1]["input_ids"]) == 16  # without packing a long document keeps its first cutoff_len ids


def test_pretrain_packing_keeps_the_tail_without_bos_overwrite(tok):
    texts = ["Hello world", "x " * 30, "The end"]
    data = rows(*({"_prompt": [msg("user", t)]} for t in texts))
    stats = ProcessStats("pt")
    packed = process(data, cfg("pt", cutoff_len=16, packing=True, preprocessing_batch_size=1), tok, None, stats=stats)
    stream = [t for text in texts for t in [*tok.encode(text, add_special_tokens=False), ENDOFTEXT]]
    assert [t for row in packed["input_ids"] for t in row] == stream  # every token, in order, nothing overwritten
    assert all(len(r) == 16 for r in packed["input_ids"][:-1]) and len(packed["input_ids"][-1]) == len(stream) % 16
    assert stats.packed_rows == len(packed) == -(-len(stream) // 16)
    assert packed[0]["labels"][2] == ENDOFTEXT and packed[0]["position_ids"][:4] == [0, 1, 2, 0]


def test_sft_packing_is_global_best_fit(tok, qwen):
    examples = [{"_prompt": [msg("user", "w " * n)], "_response": [msg("assistant", "ok")]} for n in (60, 60, 5, 5)]
    lengths = [len(r["input_ids"]) for r in process(rows(*examples), cfg(), tok, qwen)]
    cutoff = lengths[0] + lengths[2]  # one long and one short per row only if packing sees the whole dataset
    packed = process(rows(*examples), cfg(cutoff_len=cutoff, neat_packing=True, preprocessing_batch_size=2), tok, qwen)
    assert sorted(sorted(r) for r in packed["seq_lens"]) == [sorted([lengths[0], lengths[2]])] * 2
    for row in packed:
        assert row["position_ids"].count(0) == len(row["seq_lens"])
        assert sum(1 for t in row["labels"] if t != X) > 0


def test_pretrain_bos_is_kept_not_overwritten():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(require_shared("Mistral-7B-Instruct-v0.1")))  # adds <s> by itself
    texts = ["Hello world", "The end of it all"]
    packed = process(rows(*({"_prompt": [msg("user", t)]} for t in texts)), cfg("pt", cutoff_len=6, packing=True),
                     tok, None)
    stream = [t for text in texts for t in [1, *tok.encode(text, add_special_tokens=False), 2]]
    assert [t for row in packed["input_ids"] for t in row] == stream
    assert [t for row in packed["labels"] for t in row].count(2) == 2  # both </s> trained

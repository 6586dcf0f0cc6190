"""The generation engine: template prompts, stop ids and strings, streaming = whole answers, left-padded batches."""

from __future__ import annotations

import pytest
import torch

from tuneforge.data.templates import resolve_template
from tuneforge.infer.engine import Engine, SamplingParams, left_pad
from tuneforge.infer.streaming import IncrementalDecoder, StopTrimmer, find_stop
from tuneforge.testing import IM_END_ID, build_tiny_model, load_tiny_tokenizer

HI = [{"role": "user", "content": "hi"}]
GREEDY = SamplingParams(max_new_tokens=24, do_sample=False)


@pytest.fixture(scope="module")
def engine():
    tokenizer = load_tiny_tokenizer()
    return Engine(build_tiny_model("llama"), tokenizer, resolve_template("chatml", tokenizer), GREEDY)


def raw_greedy(engine, prompt: list[int], steps: int) -> list[int]:
    """Greedy ids with no stop at all (the oracle)."""
    ids = torch.tensor([prompt])
    out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                                do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_prompt_is_the_template_generation_prompt(engine):
    text = engine.tokenizer.decode(engine.encode(HI, "Be brief."))
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert engine.stop_ids == [IM_END_ID, 3]  # <|im_end|> (eos) and <|im_start|>


def test_generation_stops_at_a_stop_id(engine):
    """Declare the third greedy token a stop id: the answer is the first two tokens, finish_reason stop."""
    prompt = engine.encode(HI)
    oracle = raw_greedy(engine, prompt, 24)
    stop = oracle[2]
    assert stop not in oracle[:2]
    custom = Engine(engine.model, engine.tokenizer, engine.template, GREEDY)
    custom.stop_ids = [stop]
    [done] = custom.generate_batch([prompt])
    assert done.finish_reason == "stop"
    assert done.completion_tokens == 2
    assert done.text == engine.tokenizer.decode(oracle[:2], skip_special_tokens=True)


def test_length_limit_and_usage(engine):
    [done] = engine.complete(HI, params=SamplingParams(max_new_tokens=5, do_sample=False))
    assert (done.finish_reason, done.completion_tokens, done.prompt_tokens) == ("length", 5, len(engine.encode(HI)))


def test_stream_equals_whole_answer(engine):
    [whole] = engine.complete(HI)
    with engine.stream(HI) as stream:
        parts = list(stream)
    assert "".join(parts) == whole.text
    assert len(parts) > 1
    assert (stream.finish_reason, stream.completion_tokens) == (whole.finish_reason, whole.completion_tokens)


def test_stop_string_cuts_whole_and_streamed_answers(engine):
    [whole] = engine.complete(HI)
    stop = whole.text[4:7]
    expected = whole.text[:whole.text.find(stop)]
    params = GREEDY.override(stop=[stop])
    [cut] = engine.complete(HI, params=params)
    assert (cut.text, cut.finish_reason) == (expected, "stop")
    assert cut.completion_tokens < whole.completion_tokens  # generation itself ended early
    with engine.stream(HI, params=params) as stream:
        assert "".join(stream) == expected
    assert stream.finish_reason == "stop"


def test_left_padded_batch_equals_one_by_one(engine):
    prompts = [engine.encode([{"role": "user", "content": t}]) for t in ("hi", "a much longer question here")]
    assert len(prompts[0]) != len(prompts[1])
    batch = engine.generate_batch(prompts)
    single = [engine.generate_batch([p])[0] for p in prompts]
    assert [c.text for c in batch] == [c.text for c in single]


def test_n_answers_and_overrides(engine):
    assert len(engine.complete(HI, n=3)) == 3
    params = SamplingParams().override(max_tokens=7, temperature=0, top_p=0.5, stop="x")
    assert (params.max_new_tokens, params.do_sample, params.top_p, params.stop) == (7, False, 0.5, ("x",))
    assert SamplingParams(max_new_tokens=0, max_length=50).new_tokens(20) == 30


def test_left_pad():
    ids, mask = left_pad([[5, 6], [7]], pad_id=0)
    assert ids.tolist() == [[5, 6], [0, 7]]
    assert mask.tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError):
        left_pad([[]], 0)


def test_stop_trimmer_holds_back_partial_stops():
    trimmer = StopTrimmer(["###"])
    assert [trimmer.feed("ab#"), trimmer.feed("#"), trimmer.feed("#cd")] == ["ab", "", ""]
    assert trimmer.stopped
    loose = StopTrimmer(["<end>"])
    assert loose.feed("x<e") == "x"
    assert loose.feed("a") == "<ea"   # not a stop after all: released
    assert loose.flush() == ""
    assert find_stop("ab##c", ["#", "c"]) == 2


def test_incremental_decoder_matches_full_decode(engine):
    tokenizer = engine.tokenizer
    ids = tokenizer("héllo wörld 😀 ok")["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    text = "".join(decoder.push(i) for i in ids) + decoder.flush()
    assert text == tokenizer.decode(ids)

"""Template registry, stop words, thinking modes, efficient EOS, Jinja export and reference-template parity."""

from __future__ import annotations

import json
from functools import cache

import pytest

from shared_models import require_shared
from tuneforge.data.templates import Specials, TemplateError, get_template, register_template, resolve_template
from tuneforge.data.templates import template_names as names
from tuneforge.data.templates.jinja import JinjaTemplate
from tuneforge.data.templates.registry import TEMPLATES, register_alias
from tuneforge.data.templates.spans import _segments_by_prefix, encode_segments, encode_text

REQUIRED = ["default", "empty", "alpaca", "vicuna", "chatml", "qwen", "qwen3", "qwen3_nothink", "llama2", "llama3",
            "mistral", "gemma", "phi", "yi", "deepseek", "glm4", "smollm", "zephyr", "codellama"]
CANONICAL = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "Four."}]


@cache
def tok(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(require_shared(folder)))


def decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def flat(pairs) -> list[int]:
    return [t for prompt, reply in pairs for t in prompt + reply]


def with_cot(thought: str, answer: str) -> str:
    return f"<think>\n{thought}\n</think>\n\n{answer}"


# ----------------------------------------------------------------- registry
def test_required_templates_are_registered_with_docs_and_exact_examples():
    assert set(REQUIRED) <= set(names())
    for name in names():
        template = get_template(name, None)
        assert template.doc, name
        rendered = template.render_text(CANONICAL, "SYS", specials=Specials("<s>", "</s>"))
        assert rendered == template.example, f"{name}: example drifted from the slots"


def test_duplicate_registration_raises():
    with pytest.raises(TemplateError, match="already registered"):
        register_template("qwen", user="{{content}}")
    with pytest.raises(TemplateError, match="already registered"):
        register_alias("llama2", "qwen")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(TemplateError, match=r"unknown template 'lama3'\. Did you mean 'llama3'"):
        get_template("lama3", None)
    with pytest.raises(TemplateError, match="Did you mean 'qwen'"):
        get_template("qwen2.5", None)
    with pytest.raises(ValueError, match="unknown tool_format"):
        get_template("qwen", None, tool_format="hermes9")


def test_templates_view_loads_lazily():
    assert TEMPLATES.get("glm4").efficient_eos and TEMPLATES.get("nope") is None
    assert sorted(TEMPLATES) == names()


def test_codellama_is_llama2():
    assert get_template("codellama", None).render_text(CHAT) == get_template("llama2", None).render_text(CHAT)


def test_resolve_template_none_uses_the_chat_template_or_empty():
    tokenizer = tok("SmolLM2-135M-Instruct")
    assert isinstance(resolve_template(None, tokenizer), JinjaTemplate)
    assert resolve_template("qwen", tokenizer, default_system="X").default_system == "X"
    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        assert resolve_template(None, tokenizer).name == "empty"
    finally:
        tokenizer.chat_template = saved


def test_default_system_override_and_leading_system_message():
    tokenizer = tok("Qwen2.5-0.5B-Instruct")
    template = get_template("qwen", tokenizer, default_system="Be terse.")
    prompt = decode(tokenizer, template.encode_multiturn(tokenizer, CANONICAL)[0][0])
    assert prompt.startswith("<|im_start|>system\nBe terse.<|im_end|>\n")
    as_message = template.encode_multiturn(tokenizer, [{"role": "system", "content": "S"}, *CANONICAL])
    assert as_message == template.encode_multiturn(tokenizer, CANONICAL, system="S")


def test_bad_role_order_raises():
    tokenizer = tok("Qwen2.5-0.5B-Instruct")
    template = get_template("qwen", tokenizer)
    with pytest.raises(TemplateError, match="must end with an assistant reply"):
        template.encode_multiturn(tokenizer, CANONICAL[:1])
    with pytest.raises(TemplateError, match="message 1 has role 'user'"):
        template.encode_multiturn(tokenizer, [CANONICAL[0], CANONICAL[0]])
    with pytest.raises(TemplateError, match="must end with a user or observation"):
        template.render_prompt(tokenizer, CANONICAL)


# ----------------------------------------------------------------- stop words
@pytest.mark.parametrize(("folder", "name", "words", "ids"), [
    ("Qwen2.5-0.5B-Instruct", "qwen", ["<|im_end|>"], [151645]),
    ("Llama-3.2-3B-Instruct", "llama3", ["<|eot_id|>", "<|eom_id|>"], [128009, 128008]),
    ("tokenizer-only/Phi-3-mini-4k-instruct", "phi", ["<|end|>"], [32000, 32007]),
    ("tokenizer-only/TinyLlama-1.1B-Chat-v1.0", "zephyr", [], [2]),
    ("SmolLM2-135M-Instruct", "chatml", ["<|im_end|>", "<|im_start|>"], [2, 1]),
])
def test_stop_words_and_ids(folder, name, words, ids):
    tokenizer = tok(folder)
    template = get_template(name, tokenizer)
    assert template.stop_words() == words
    assert template.stop_token_ids(tokenizer) == ids


def test_jinja_template_finds_the_closing_token_as_stop_word():
    tokenizer = tok("tokenizer-only/Phi-3-mini-4k-instruct")
    template = resolve_template(None, tokenizer)
    assert template.stop_words() == ["<|end|>"]
    assert template.stop_token_ids(tokenizer) == [32000, 32007]
    assert template.jinja_chat_template() == tokenizer.chat_template


# ----------------------------------------------------------------- qwen3 thinking
def qwen3(enable_thinking):
    tokenizer = tok("Qwen3-4B")
    return tokenizer, get_template("qwen3", tokenizer, enable_thinking=enable_thinking)


def hf_ids(tokenizer, messages, **kwargs) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)


@pytest.mark.parametrize("enable_thinking", [True, None])
def test_qwen3_keeps_the_final_thought_and_drops_history_thoughts(enable_thinking):
    tokenizer, template = qwen3(enable_thinking)
    chat = [CHAT[0], {"role": "assistant", "content": with_cot("greet", "Hello")}, CHAT[2],
            {"role": "assistant", "content": with_cot("add", "Four.")}]
    pairs = template.encode_multiturn(tokenizer, chat)
    assert flat(pairs) == hf_ids(tokenizer, chat)
    assert decode(tokenizer, pairs[0][1]) == "Hello<|im_end|>\n"  # history reasoning is not rendered
    assert decode(tokenizer, pairs[1][1]) == "<think>\nadd\n</think>\n\nFour.<|im_end|>\n"


def test_qwen3_enable_thinking_true_trains_an_empty_block():
    tokenizer, template = qwen3(True)
    pairs = template.encode_multiturn(tokenizer, CHAT)
    assert flat(pairs) == hf_ids(tokenizer, CHAT)
    assert decode(tokenizer, pairs[1][0]).endswith("<|im_start|>assistant\n")
    assert decode(tokenizer, pairs[1][1]) == "<think>\n\n</think>\n\nFour.<|im_end|>\n"
    assert template.render_prompt(tokenizer, CHAT[:3]) == hf_ids(tokenizer, CHAT[:3], add_generation_prompt=True)


def test_qwen3_enable_thinking_false_puts_the_empty_block_in_the_prompt():
    tokenizer, template = qwen3(False)
    chat = [*CHAT[:3], {"role": "assistant", "content": with_cot("add", "Four.")}]
    pairs = template.encode_multiturn(tokenizer, chat)
    assert flat(pairs) == hf_ids(tokenizer, CHAT, enable_thinking=False)  # the thought is gone
    assert decode(tokenizer, pairs[1][0]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert decode(tokenizer, pairs[1][1]) == "Four.<|im_end|>\n"
    gen = hf_ids(tokenizer, CHAT[:3], add_generation_prompt=True, enable_thinking=False)
    assert template.render_prompt(tokenizer, CHAT[:3]) == gen
    jinja = resolve_template(None, tokenizer, enable_thinking=False)
    assert jinja.encode_multiturn(tokenizer, chat) == pairs


def test_qwen3_enable_thinking_none_trains_only_real_thoughts():
    tokenizer, template = qwen3(None)
    plain = template.encode_multiturn(tokenizer, CHAT)
    assert decode(tokenizer, plain[1][0]).endswith("<think>\n\n</think>\n\n")
    assert decode(tokenizer, plain[1][1]) == "Four.<|im_end|>\n"
    thought = template.encode_oneturn(tokenizer, [*CHAT[:3], {"role": "assistant", "content": with_cot("a", "4")}])
    assert decode(tokenizer, thought[1]) == "<think>\na\n</think>\n\n4<|im_end|>\n"


def test_qwen3_nothink_has_no_think_handling():
    tokenizer = tok("Qwen3-4B")
    pairs = get_template("qwen3_nothink", tokenizer).encode_multiturn(tokenizer, CHAT)
    assert decode(tokenizer, pairs[1][1]) == "Four.<|im_end|>\n"


# ----------------------------------------------------------------- glm4 / efficient eos
GLM_TOOLS = json.dumps([{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}])
GLM_CHAT = [CHAT[0], {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"role": "observation", "content": '{"celsius": 21}'}, {"role": "assistant", "content": "21 °C."}]


def test_glm4_efficient_eos_replies_carry_no_eos():
    """No GLM tokenizer ships, so the glm4 strings are checked through the Qwen tokenizer."""
    tokenizer = tok("Qwen2.5-0.5B-Instruct")
    template = get_template("glm4", tokenizer)
    assert template.efficient_eos and not get_template("qwen", tokenizer).efficient_eos
    texts = template.pieces_for(tokenizer, CHAT, "SYS")  # string level: Qwen's BPE merges "|>" + "\n"
    assert texts == ["[gMASK]<sop><|system|>\nSYS<|user|>\nHi<|assistant|>", "\nHello",
                     "<|user|>\n2+2?<|assistant|>", "\nFour."]
    pairs = template.encode_multiturn(tokenizer, CHAT, system="SYS")
    assert flat(pairs) == encode_text(tokenizer, "".join(texts))
    assert all(tokenizer.eos_token_id not in reply for _, reply in pairs)
    assert template.stop_words() == ["<|user|>", "<|observation|>"]


def test_glm4_tool_call_and_observation():
    tokenizer = tok("Qwen2.5-0.5B-Instruct")
    template = get_template("glm4", tokenizer)
    texts = template.pieces_for(tokenizer, GLM_CHAT, tools=GLM_TOOLS)
    assert texts[0].startswith("[gMASK]<sop><|system|>\n你是一个名为 ChatGLM 的人工智能助手。")
    assert "的答复和支持。\n\n# 可用工具\n\n## get_weather\n\n{" in texts[0]
    assert texts[1:] == ['get_weather\n{"city": "Paris"}', '<|observation|>\n{"celsius": 21}<|assistant|>',
                         "\n21 °C."]


# ----------------------------------------------------------------- Jinja export
@pytest.mark.parametrize("name", names())
def test_exported_jinja_renders_like_the_template(name):
    tokenizer = tok("Mistral-7B-Instruct-v0.1")  # has BOS/EOS strings, so {{bos}}/{{eos}} are exercised
    for enable_thinking in (True, False):
        template = get_template(name, tokenizer, enable_thinking=enable_thinking)
        chat = [*CHAT[:3], {"role": "assistant", "content": with_cot("add", " Four. ")}]
        for system in (None, "Be brief."):
            messages = ([{"role": "system", "content": system}] if system else []) + chat
            jinja = template.jinja_chat_template()
            text = tokenizer.apply_chat_template(messages, chat_template=jinja, tokenize=False)
            assert text == "".join(template.pieces_for(tokenizer, chat, system))
            gen = tokenizer.apply_chat_template(messages[:-1], chat_template=jinja, tokenize=False,
                                                add_generation_prompt=True)
            assert gen == template.prompt_text_for(tokenizer, chat[:-1], system)


# ----------------------------------------------------------------- reference templates of other models
# meta-llama/Llama-2-7b-chat-hf tokenizer_config.json chat_template (no Llama-2-chat folder ships; TinyLlama's
# tokenizer is the Llama 2 tokenizer, so token ids can still be compared)
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)


@pytest.mark.parametrize("name", ["llama2", "codellama"])
@pytest.mark.parametrize("system", [None, "You are helpful."])
def test_llama2_matches_the_llama2_chat_template(name, system):
    tokenizer = tok("tokenizer-only/TinyLlama-1.1B-Chat-v1.0")
    messages = ([{"role": "system", "content": system}] if system else []) + CHAT
    ref = tokenizer.apply_chat_template(messages, chat_template=LLAMA2_CHAT_TEMPLATE, return_dict=False)
    pairs = get_template(name, tokenizer).encode_multiturn(tokenizer, CHAT, system=system)
    assert flat(pairs) == ref
    assert [decode(tokenizer, reply) for _, reply in pairs] == ["Hello </s>", "Four. </s>"]


@pytest.mark.parametrize("system", [None, "You are helpful."])
def test_yi_matches_yis_chat_template(system):
    """Yi's tokenizer.model needs protobuf to load; its chat_template is run on SmolLM2's ChatML tokenizer."""
    yi_template = json.loads((require_shared("Yi-6B-Chat") / "tokenizer_config.json").read_text())["chat_template"]
    tokenizer = tok("SmolLM2-135M-Instruct")
    messages = ([{"role": "system", "content": system}] if system else []) + CHAT
    ref = tokenizer.apply_chat_template(messages, chat_template=yi_template, return_dict=False)
    pairs = get_template("yi", tokenizer).encode_multiturn(tokenizer, CHAT, system=system)
    assert flat(pairs) == ref
    assert [decode(tokenizer, reply) for _, reply in pairs] == ["Hello<|im_end|>\n", "Four.<|im_end|>\n"]


# ----------------------------------------------------------------- token cutting
def test_a_token_straddling_a_cut_goes_where_most_of_it_is():
    tokenizer = tok("Qwen2.5-0.5B-Instruct")
    text = "<|im_start|>assistant\n\nHi"  # "\n" + "\n" merge into one token across the cut at 22
    segments = encode_segments(tokenizer, text, [22, len(text)])
    assert segments[0] + segments[1] == encode_text(tokenizer, text)
    assert decode(tokenizer, segments[1]) == "\n\nHi"  # a tie goes to the later (trained) segment
    plain = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
    cuts = [plain.index("Hello"), len(plain)]
    assert _segments_by_prefix(tokenizer, plain, cuts) == encode_segments(tokenizer, plain, cuts)

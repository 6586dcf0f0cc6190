"""Families without a model folder here: each named template against its published format, written out by hand.

The expected texts are a 2-turn chat with a system prompt; the token check adds the family's control tokens to the
shipped tiny tokenizer, so the ids and the trained spans (each reply plus its end-of-turn token) are checked too.
"""

from __future__ import annotations

import json
import re

import pytest

from tuneforge.data.templates import Specials, TemplateError, get_template, template_names
from tuneforge.data.templates.spans import encode_text

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "Four."}]

# name -> (bos, eos, full text, (trained reply 1, trained reply 2))
FAMILIES = {
    "qwen3_5": ("", "<|im_end|>",
                "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                "Hello<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
                "<think>\n\n</think>\n\nFour.<|im_end|>\n",
                ("Hello<|im_end|>\n", "<think>\n\n</think>\n\nFour.<|im_end|>\n")),
    "llama4": ("<|begin_of_text|>", "<|end_of_text|>",
               "<|begin_of_text|><|header_start|>system<|header_end|>\n\nSYS<|eot|>"
               "<|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\nHello<|eot|>"
               "<|header_start|>user<|header_end|>\n\n2+2?<|eot|><|header_start|>assistant<|header_end|>\n\n"
               "Four.<|eot|>",
               ("Hello<|eot|>", "Four.<|eot|>")),
    "gemma2": ("<bos>", "<eos>",
               "<bos><start_of_turn>user\nSYS\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
               "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\nFour.<end_of_turn>\n",
               ("Hello<end_of_turn>\n", "Four.<end_of_turn>\n")),
    "gpt_oss": ("<|startoftext|>", "<|return|>",
                "<|start|>system<|message|>SYS<|end|><|start|>user<|message|>Hi<|end|><|start|>assistantHello"
                "<|start|>user<|message|>2+2?<|end|><|start|>assistant"
                "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>Four.",
                ("Hello", "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>Four.")),
    "ministral": ("<s>", "</s>", "<s>[INST]SYS\n\nHi[/INST]Hello</s>[INST]2+2?[/INST]Four.</s>",
                  ("Hello</s>", "Four.</s>")),
    "mistral_small": ("<s>", "</s>",
                      "<s>[SYSTEM_PROMPT]SYS[/SYSTEM_PROMPT][INST]Hi[/INST]Hello</s>[INST]2+2?[/INST]Four.</s>",
                      ("Hello</s>", "Four.</s>")),
    "phi4_mini": ("<|endoftext|>", "<|endoftext|>",
                  "<|system|>SYS<|end|><|user|>Hi<|end|><|assistant|>Hello<|end|><|user|>2+2?<|end|><|assistant|>"
                  "Four.<|end|><|endoftext|>",
                  ("Hello<|end|>", "Four.<|end|><|endoftext|>")),
    "glm4_moe": ("", "<|endoftext|>",
                 "[gMASK]<sop><|system|>\nSYS<|user|>\nHi<|assistant|>\nHello<|user|>\n2+2?<|assistant|>\n"
                 "<think>\n\n</think>\n\nFour.",
                 ("\nHello", "\n<think>\n\n</think>\n\nFour.")),
    "deepseekcoder": ("<｜begin▁of▁sentence｜>", "<|EOT|>",
                      "<｜begin▁of▁sentence｜>SYS### Instruction:\nHi\n### Response:\nHello\n<|EOT|>\n"
                      "### Instruction:\n2+2?\n### Response:\nFour.\n<|EOT|>\n",
                      ("\nHello\n<|EOT|>\n", "\nFour.\n<|EOT|>\n")),
    "granite3": ("<|end_of_text|>", "<|end_of_text|>",
                 "<|start_of_role|>system<|end_of_role|>SYS<|end_of_text|>\n"
                 "<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
                 "Hello<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>2+2?<|end_of_text|>\n"
                 "<|start_of_role|>assistant<|end_of_role|>Four.<|end_of_text|>\n",
                 ("Hello<|end_of_text|>\n", "Four.<|end_of_text|>\n")),
    "olmo": ("<|endoftext|>", "<|endoftext|>",
             "<|endoftext|>SYS<|user|>\nHi<|assistant|>\nHello<|endoftext|><|user|>\n2+2?<|assistant|>\n"
             "Four.<|endoftext|>",
             ("Hello<|endoftext|>", "Four.<|endoftext|>")),
    "seed_oss": ("<seed:bos>", "<seed:eos>",
                 "<seed:bos>system\nSYS<seed:eos><seed:bos>user\nHi<seed:eos><seed:bos>assistant\nHello<seed:eos>"
                 "<seed:bos>user\n2+2?<seed:eos><seed:bos>assistant\n<seed:think></seed:think>Four.<seed:eos>",
                 ("Hello<seed:eos>", "<seed:think></seed:think>Four.<seed:eos>")),
    "minimax1": ("", "<end_of_sentence>",
                 "<beginning_of_sentence>system ai_setting=assistant\nSYS<end_of_sentence>\n"
                 "<beginning_of_sentence>user name=user\nHi<end_of_sentence>\n"
                 "<beginning_of_sentence>ai name=assistant\nHello<end_of_sentence>\n"
                 "<beginning_of_sentence>user name=user\n2+2?<end_of_sentence>\n"
                 "<beginning_of_sentence>ai name=assistant\nFour.<end_of_sentence>\n",
                 ("Hello<end_of_sentence>\n", "Four.<end_of_sentence>\n")),
    "minimax2": ("", "[e~[",
                 "]~!b[]~b]system\nSYS[e~[\n]~b]user\nHi[e~[\n]~b]ai\nHello[e~[\n]~b]user\n2+2?[e~[\n]~b]ai\n"
                 "<think>\n\n</think>\n\nFour.[e~[\n",
                 ("Hello[e~[\n", "<think>\n\n</think>\n\nFour.[e~[\n")),
    "hunyuan": ("<|startoftext|>", "<|eos|>",
                "<|startoftext|>SYS<|extra_4|>Hi<|extra_0|>Hello<|eos|>2+2?<|extra_0|>Four.<|eos|>",
                ("Hello<|eos|>", "Four.<|eos|>")),
    "ernie": ("", "<|im_end|>",
              "<|im_start|>system\nSYS<|im_end|>\n\n<|im_start|>user\nHi<|im_end|>\n\n<|im_start|>assistant\n"
              "Hello<|im_end|>\n\n<|im_start|>user\n2+2?<|im_end|>\n\n<|im_start|>assistant\nFour.<|im_end|>\n\n",
              ("Hello<|im_end|>\n\n", "Four.<|im_end|>\n\n")),
    "exaone": ("[BOS]", "[|endofturn|]",
               "[|system|]SYS[|endofturn|]\n[|user|]Hi\n[|assistant|]Hello[|endofturn|]\n[|user|]2+2?\n"
               "[|assistant|]Four.[|endofturn|]\n",
               ("Hello[|endofturn|]\n", "Four.[|endofturn|]\n")),
    "cohere": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>",
               "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>SYS<|END_OF_TURN_TOKEN|>"
               "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
               "Hello<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>2+2?<|END_OF_TURN_TOKEN|>"
               "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Four.<|END_OF_TURN_TOKEN|>",
               ("Hello<|END_OF_TURN_TOKEN|>", "Four.<|END_OF_TURN_TOKEN|>")),
}
FAMILIES["granite4"] = FAMILIES["granite3"]  # same turns; granite4 adds a default system prompt (tested below)

# the control-token shapes of these families: <|x|>, <｜x｜>, <x>, [X], [|x|], and MiniMax-M2's markers
CONTROL = re.compile(r"<\|[^<>|]*\|>|<｜[^<>]*?｜>|</?[A-Za-z_:]+>|\[[A-Za-z_/]+\]|\[\|[a-z]+\|\]"
                     r"|\]~!b\[|\]~b\]|\[e~\[")


def family_tokenizer(bos: str, eos: str, text: str):
    """The tiny tokenizer with the family's control tokens (and BOS/EOS) as special tokens."""
    from tuneforge.testing import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()
    tokens = sorted(set(CONTROL.findall(text)) | ({bos} if bos else set()) | {eos})
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    tokenizer.bos_token, tokenizer.eos_token = bos or None, eos
    return tokenizer


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_renders_its_published_format(name):
    bos, eos, text, _ = FAMILIES[name]
    assert get_template(name, None).render_text(CHAT, "SYS", specials=Specials(bos, eos)) == text


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_ids_trained_spans_and_generation_prompt(name):
    bos, eos, text, replies = FAMILIES[name]
    tokenizer = family_tokenizer(bos, eos, text)
    template = get_template(name, tokenizer)
    pairs = template.encode_multiturn(tokenizer, CHAT, system="SYS")
    assert [t for prompt, reply in pairs for t in prompt + reply] == encode_text(tokenizer, text)
    decoded = [tokenizer.decode(reply, skip_special_tokens=False) for _, reply in pairs]
    assert decoded == list(replies)
    prompt_text = text[: len(text) - len(replies[1])]
    assert template.render_prompt(tokenizer, CHAT[:3], system="SYS") == encode_text(tokenizer, prompt_text)


@pytest.mark.parametrize("enable_thinking", [True, False])
def test_glm4_7_writes_an_empty_thought_as_the_closing_tag(enable_thinking):
    template = get_template("glm4_7", None, enable_thinking=enable_thinking)
    text = template.render_text(CHAT, "SYS", specials=Specials("", "<e>"))
    assert text == ("[gMASK]<sop><|system|>\nSYS<|user|>\nHi<|assistant|>\nHello<|user|>\n2+2?<|assistant|>\n"
                    "</think>Four.")
    thought = template.render_text([*CHAT[:3], {"role": "assistant", "content": "<think>add</think>4"}], "SYS",
                                   specials=Specials("", "<e>"))
    kept = "<|assistant|>\n<think>add</think>4"
    assert thought.endswith("<|assistant|>\n</think>4" if enable_thinking is False else kept)


def test_granite4_default_system_and_tool_result_turn():
    template = get_template("granite4", None)
    text = template.render_text([CHAT[0], {"role": "function", "content": '{"name": "f", "arguments": {}}'},
                                 {"role": "observation", "content": "42"}, CHAT[3]], specials=Specials("", "<e>"))
    assert text.startswith("<|start_of_role|>system<|end_of_role|>You are Granite, developed by IBM. You are a "
                           "helpful AI assistant.<|end_of_text|>\n")
    assert ("<|start_of_role|>tool<|end_of_role|>42<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
            "Four.<|end_of_text|>\n") in text


# ----------------------------------------------------------------- every LLaMA-Factory 0.9.5 name
# text templates of LLaMA-Factory v0.9.5 (src/llamafactory/data/template.py, templates without a multimodal plugin,
# plus gemma3 / llama4 / mistral_small / qwen3_5 / qwen3_5_nothink / qwen3_6, text-capable models served by one)
LF_TEXT = [
    "aeva", "alpaca", "bailing", "bailing_v2", "breeze", "chatglm3", "chatml", "chatml_de", "cohere", "cpm4",
    "dbrx", "deepseek", "deepseek3", "deepseekr1", "deepseekcoder", "default", "empty", "ernie",
    "ernie_nothink", "exaone", "falcon", "falcon_h1", "fewshot", "gemma", "gemma2", "gemma3", "gemma4", "glm4",
    "glm4_moe", "glm4_7", "glmz1", "gpt_oss", "granite3", "granite4", "hunyuan", "hunyuan_small", "hy3",
    "index", "intern2", "lfm2", "llama2", "llama2_zh", "llama3", "llama4", "mimo", "mimo_v2", "minimax1",
    "minimax2", "ministral", "mistral", "mistral_small", "moonlight", "olmo", "openchat", "openchat-3.6",
    "opencoder", "phi", "phi_small", "phi4", "phi4_mini", "qwen", "qwen3", "qwen3_nothink", "qwen3_5",
    "qwen3_5_nothink", "qwen3_6", "sailor", "seed_coder", "seed_oss", "smollm", "smollm2", "solar", "starchat",
    "telechat2", "vicuna", "xuanyuan", "yi", "youtu", "yuan", "zephyr",
]
# multimodal names accepted for text-only data (their text format equals the named text template's)
LF_MM_ACCEPTED = {"llava": "vicuna", "llava_next": "vicuna", "llava_next_video": "vicuna", "video_llava": "vicuna",
                  "llava_next_yi": "yi", "llava_next_video_yi": "yi", "qwen3_vl": "qwen3",
                  "qwen3_vl_nothink": "qwen3_nothink", "keye_vl": "qwen3", "gemma3n": "gemma", "gemma4n": "gemma4",
                  "pixtral": "ministral", "ministral3": "ministral"}
# multimodal names refused with the text template to use
LF_MM_REFUSED = {"llava_next_llama3": "llama3", "mllama": "llama3", "llava_next_mistral": "mistral",
                 "llava_next_video_mistral": "mistral", "llava_next_qwen": "qwen", "qwen2_vl": "qwen",
                 "qwen2_audio": "qwen", "qwen2_omni": "qwen", "qwen3_omni": "qwen3",
                 "qwen3_omni_nothink": "qwen3_nothink", "mimo_vl": "mimo", "minicpm_v": "chatml",
                 "minicpm_v_4_6": "chatml", "minicpm_o": "chatml", "intern_vl": "intern2", "intern_s1": "intern2",
                 "glm4v": "glmz1", "glm4_5v": "glm4_moe", "glm_ocr": "glm4", "granite3_vision": "granite3",
                 "kimi_vl": "moonlight", "lfm2_vl": "lfm2", "ernie_vl": "ernie_nothink", "youtu_vl": "youtu",
                 "yi_vl": "yi", "paligemma": "gemma", "paligemma_chat": "gemma", "dots_ocr": None}


def test_every_llamafactory_name_is_known():
    assert len(LF_TEXT) + len(LF_MM_ACCEPTED) + len(LF_MM_REFUSED) == 121
    assert set(LF_TEXT) | set(LF_MM_ACCEPTED) <= set(template_names())
    assert not set(LF_MM_REFUSED) & set(template_names())


@pytest.mark.parametrize("name", sorted(LF_TEXT))
def test_every_text_name_encodes_a_tool_free_chat(name, tiny_tokenizer):
    template = get_template(name, tiny_tokenizer)
    pairs = template.encode_multiturn(tiny_tokenizer, CHAT, system="SYS")
    assert len(pairs) == 2 and all(reply for _, reply in pairs)
    assert template.doc and template.family


@pytest.mark.parametrize(("name", "target"), sorted(LF_MM_ACCEPTED.items()))
def test_accepted_multimodal_name_renders_like_its_text_template(name, target):
    specials = Specials("<s>", "</s>")
    assert get_template(name, None).render_text(CHAT, "SYS", specials=specials) == \
        get_template(target, None).render_text(CHAT, "SYS", specials=specials)
    assert get_template(name, None).render_text(CHAT, specials=specials) == \
        get_template(target, None).render_text(CHAT, specials=specials)


@pytest.mark.parametrize(("name", "target"), sorted(LF_MM_REFUSED.items(), key=lambda item: item[0]))
def test_refused_multimodal_name_names_the_text_template(name, target):
    with pytest.raises(TemplateError, match=rf"'{name}' is a multimodal template .*not supported yet") as error:
        get_template(name, None)
    assert (f"use template: {target} " in str(error.value)) if target else "template: null" in str(error.value)


# ----------------------------------------------------------------- tool formats
TOOLS = json.dumps([{"name": "get_weather", "description": "Weather of a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                     "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}])
TOOL_CHAT = [{"role": "user", "content": "Paris?"},
             {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
             {"role": "observation", "content": '{"t": 21}'}, {"role": "assistant", "content": "21."}]


def test_default_tool_prompt_is_llamafactorys_word_for_word():
    text = get_template("default", None).render_text(TOOL_CHAT, "SYS", TOOLS, Specials("", "</s>"))
    assert text == (
        "System: SYSYou have access to the following tools:\n> Tool Name: get_weather\n"
        "Tool Description: Weather of a city\nTool Args:\n  - city (string, required): City name\n"
        "  - unit (string): , should be one of [c, f]\n\nUse the following format if using a tool:\n```\n"
        "Action: tool name (one of [get_weather])\nAction Input: the input to the tool, in a JSON format "
        'representing the kwargs (e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n</s>\n'
        'Human: Paris?</s>\nAssistant:Action: get_weather\nAction Input: {"city": "Paris"}</s>\n'
        'Human: {"t": 21}</s>\nAssistant:21.</s>\n')


def test_mistral_tool_format_on_ministral():
    text = get_template("ministral", None).render_text(TOOL_CHAT, None, TOOLS, Specials("<s>", "</s>"))
    schema = json.dumps([{"type": "function", "function": json.loads(TOOLS)[0]}], ensure_ascii=False)
    assert text == (f"<s>[INST][AVAILABLE_TOOLS] {schema}[/AVAILABLE_TOOLS]\n\nParis?[/INST]"
                    '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]</s>'
                    '[TOOL_RESULTS]{"content": {"t": 21}}[/TOOL_RESULTS]21.</s>')


def test_mistral_tool_turns_are_llamafactorys():
    text = get_template("mistral", None).render_text(TOOL_CHAT, "SYS", TOOLS, Specials("<s>", "</s>"))
    assert text.startswith("<s> [INST] SYS[AVAILABLE_TOOLS] [{")
    assert text.endswith('[/AVAILABLE_TOOLS]\n\nParis? [/INST][TOOL_CALLS] [{"name": "get_weather", "arguments": '
                         '{"city": "Paris"}}]</s>[TOOL_RESULTS] {"content": {"t": 21}}[/TOOL_RESULTS] 21.</s>')


def test_phi4_mini_tools_sit_in_the_system_turn():
    text = get_template("phi4_mini", None).render_text([*TOOL_CHAT[:1], TOOL_CHAT[3]], "SYS", TOOLS,
                                                       Specials("", "<|endoftext|>"))
    assert text.startswith('<|system|>SYS<|tool|>[{"name": "get_weather", "description": "Weather of a city", ')
    assert '"required": ["city"]}}]<|/tool|><|end|><|user|>Paris?<|end|><|assistant|>21.<|end|><|endoftext|>' in text


def test_qwen3_5_xml_tool_calls():
    text = get_template("qwen3_5", None).render_text(TOOL_CHAT, None, TOOLS, Specials("", "<|im_end|>"))
    assert text.startswith("<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n"
                           '{"name": "get_weather", "description": "Weather of a city", ')
    assert "\n</IMPORTANT><|im_end|>\n<|im_start|>user\nParis?<|im_end|>\n<|im_start|>assistant\n" in text
    assert text.endswith("<|im_start|>assistant\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
                         "</parameter>\n</function>\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n"
                         '{"t": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n'
                         "21.<|im_end|>\n")


def test_glm4_moe_xml_tool_calls():
    text = get_template("glm4_moe", None).render_text(TOOL_CHAT, "SYS", TOOLS, Specials("", "<e>"))
    assert text.startswith("[gMASK]<sop><|system|>\nSYS\n\n# Tools\n\nYou may call one or more functions")
    assert text.endswith("<|user|>\nParis?<|assistant|>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                         "<arg_value>Paris</arg_value>\n</tool_call><|observation|>\n{\"t\": 21}<|assistant|>\n"
                         "<think>\n\n</think>\n\n21.")


@pytest.mark.parametrize("name", ["seed_oss", "minimax2", "llama4", "lfm2"])
def test_pending_tool_format_refuses_tool_rows_only(name):
    template = get_template(name, None)
    assert template.render_text(CHAT, "SYS")  # plain chats render
    with pytest.raises(TemplateError, match=rf"template '{name}': tool_format '\w+' .*not implemented yet"):
        template.render_text(TOOL_CHAT, None, TOOLS)

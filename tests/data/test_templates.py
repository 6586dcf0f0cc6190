"""Template parity with the models' own chat templates, on the real tokenizers of ../shared/models.

For every shipped model folder, both its named template and the Jinja path (``template: null``) must give
token ids equal to ``tokenizer.apply_chat_template`` (single turn and 3 turns, with and without a system
prompt), the trained span of each turn must be exactly the reply plus its end-of-turn token(s), and the
generation prompt must equal ``apply_chat_template(..., add_generation_prompt=True)``.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

import pytest

from shared_models import SHARED_MODELS, require_shared, shared_tokenizer_dirs
from tuneforge.data.templates import get_template, resolve_template
from tuneforge.data.templates.jinja import JinjaTemplate

# folder -> (named template, reply text of a non-final turn, reply text of the final turn) as decoded;
# Phi-3's <|end|> eats the newline after it (rstrip=True), its template ends a conversation with EOS,
# Qwen3's template gives the final reply an (empty) <think> block.
MODELS = {
    "Qwen2.5-0.5B-Instruct": ("qwen", "{}<|im_end|>\n", "{}<|im_end|>\n"),
    "Qwen3-4B": ("qwen3", "{}<|im_end|>\n", "<think>\n\n</think>\n\n{}<|im_end|>\n"),
    "Llama-3.2-3B-Instruct": ("llama3", "{}<|eot_id|>", "{}<|eot_id|>"),
    "Mistral-7B-Instruct-v0.1": ("mistral", "{}</s>", "{}</s>"),
    "SmolLM2-135M-Instruct": ("smollm2", "{}<|im_end|>\n", "{}<|im_end|>\n"),
    "SmolLM2-360M-Instruct": ("smollm2", "{}<|im_end|>\n", "{}<|im_end|>\n"),
    # Yi's legacy SentencePiece conversion puts a "▁" before the text after a special token (here the "\n"),
    # in apply_chat_template's ids too; it decodes as a space
    "Yi-6B-Chat": ("yi", "{}<|im_end|> \n", "{}<|im_end|> \n"),
    "Phi-3-mini-4k-instruct": ("phi", "{}<|end|>", "{}<|end|><|endoftext|>"),
    "TinyLlama-1.1B-Chat-v1.0": ("zephyr", "{}</s>\n", "{}</s>\n"),
}

ONE = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help you today?"}]
THREE = [
    *ONE,
    {"role": "user", "content": "What is 2+2? Answer in one word."},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "Write a haiku about café ☕ mornings.\nKeep it short."},
    {"role": "assistant", "content": "Steam curls from the cup,\nfirst light on the window—\nthe day starts slowly."},
]
SYSTEMS = [None, "You are a concise assistant."]
CASES = [(conv, system) for conv in (ONE, THREE) for system in SYSTEMS]
CASE_IDS = [f"{'one' if conv is ONE else 'three'}-{'system' if system else 'nosystem'}" for conv, system in CASES]

DIRS = shared_tokenizer_dirs() or [SHARED_MODELS / "absent"]


def has_protobuf() -> bool:
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def load(path: Path):
    """The folder's tokenizer; skip (with the reason) when an optional converter package is missing."""
    from transformers import AutoTokenizer

    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared model fixtures live in ../shared/models)")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (ImportError, ValueError) as err:
        if (path / "tokenizer.json").is_file() or has_protobuf():
            raise
        pytest.skip(f"{path.name} ships only a sentencepiece tokenizer.model, which transformers 5 converts with "
                    f"the protobuf package (not installed; its tiktoken fallback fails: {str(err).splitlines()[0]})")


def hf_chat(conv: list[dict], system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + conv


def reference(tok, conv, system, **kwargs) -> list[int]:
    return tok.apply_chat_template(hf_chat(conv, system), tokenize=True, return_dict=False, **kwargs)


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def flatten(pairs) -> list[int]:
    return [token for prompt, reply in pairs for token in prompt + reply]


def assert_reply_spans(tok, pairs, conv, formats) -> None:
    """Each trained span decodes to exactly the reply plus its end-of-turn token(s)."""
    replies = [m["content"] for m in conv[1::2]]
    for index, ((_, reply_ids), reply) in enumerate(zip(pairs, replies, strict=True)):
        fmt = formats[1] if index == len(replies) - 1 else formats[0]
        assert decode(tok, reply_ids) == fmt.format(reply), f"turn {index}"


def model_info(path: Path):
    if path.name not in MODELS:
        pytest.skip(f"{path.name}: no named template mapped in MODELS (add it to the table)")
    return MODELS[path.name]


@pytest.mark.parametrize(("conv", "system"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("path", DIRS, ids=lambda p: p.name)
def test_named_template_matches_chat_template(path, conv, system):
    tok = load(path)
    name, *formats = model_info(path)
    template = get_template(name, tok)
    pairs = template.encode_multiturn(tok, conv, system=system)
    assert flatten(pairs) == reference(tok, conv, system)
    assert len(pairs) == len(conv) // 2
    assert_reply_spans(tok, pairs, conv, formats)
    gen = reference(tok, conv[:-1], system, add_generation_prompt=True)
    assert template.render_prompt(tok, conv[:-1], system=system) == gen


@pytest.mark.parametrize(("conv", "system"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("path", DIRS, ids=lambda p: p.name)
def test_jinja_template_matches_chat_template(path, conv, system):
    tok = load(path)
    template = resolve_template(None, tok)
    assert isinstance(template, JinjaTemplate)
    pairs = template.encode_multiturn(tok, conv, system=system)
    assert flatten(pairs) == reference(tok, conv, system)
    gen = reference(tok, conv[:-1], system, add_generation_prompt=True)
    assert template.render_prompt(tok, conv[:-1], system=system) == gen
    if path.name in MODELS:  # same trained spans as the named template
        assert_reply_spans(tok, pairs, conv, MODELS[path.name][1:])
        assert pairs == get_template(MODELS[path.name][0], tok).encode_multiturn(tok, conv, system=system)


ODD = [
    {"role": "user", "content": "  leading and trailing spaces  "},
    {"role": "assistant", "content": "\nstarts with a newline"},
    {"role": "user", "content": "tabs\tand emoji 🎉 and a literal </s> and <|im_end|>"},
    {"role": "assistant", "content": "ends with spaces   "},
]


@pytest.mark.parametrize("path", DIRS, ids=lambda p: p.name)
def test_parity_holds_for_odd_whitespace_and_control_text(path):
    """Whole-text tokenization keeps exact parity even where pieces would merge across a boundary."""
    tok = load(path)
    name = model_info(path)[0]
    for template in (get_template(name, tok), resolve_template(None, tok)):
        pairs = template.encode_multiturn(tok, ODD, system="Be exact.")
        assert flatten(pairs) == reference(tok, ODD, "Be exact.")
        prompt, reply = template.encode_oneturn(tok, ODD, system="Be exact.")
        assert prompt + reply == flatten(pairs) and reply == pairs[-1][1]


PIECES = ["a", " ", "  ", "\n", "\n\n", "\t", "é", "☕", "</s>", "<s>", "<|im_end|>", "[INST]", "<think>",
          "</think>", "Hello", "{", "<|end|>", "<|eot_id|>"]


@pytest.mark.parametrize("path", DIRS, ids=lambda p: p.name)
def test_parity_on_random_conversations(path):
    """Seeded random contents (whitespace runs, control-token text, think tags) keep exact parity."""
    tok = load(path)
    templates = (get_template(model_info(path)[0], tok), resolve_template(None, tok))
    rng = random.Random(path.name)
    for _ in range(12):
        conv = [{"role": role, "content": "".join(rng.choices(PIECES, k=rng.randint(1, 6)))}
                for _ in range(rng.randint(1, 3)) for role in ("user", "assistant")]
        system = rng.choice([None, "".join(rng.choices(PIECES, k=3))])
        ref, gen = reference(tok, conv, system), reference(tok, conv[:-1], system, add_generation_prompt=True)
        for template in templates:
            assert flatten(template.encode_multiturn(tok, conv, system=system)) == ref, (template.name, conv, system)
            assert template.render_prompt(tok, conv[:-1], system=system) == gen, (template.name, conv, system)


TOOLS = json.dumps([{"name": "get_weather", "description": "Weather of a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}])
TOOL_CONV = [
    {"role": "user", "content": "How warm is Paris?"},
    {"role": "function", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
    {"role": "observation", "content": json.dumps({"celsius": 21})},
    {"role": "assistant", "content": "It is 21 °C in Paris."},
]
TOOL_HF = [
    TOOL_CONV[0],
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": TOOL_CONV[2]["content"]},
    TOOL_CONV[3],
]


# folders whose chat_template renders tools -> the trained text of the tool-call turn
TOOL_CALL_REPLY = {
    "Qwen2.5-0.5B-Instruct": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
                             "<|im_end|>\n",
    "Qwen3-4B": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
    "Llama-3.2-3B-Instruct": '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
}
# three turns: a plain exchange, the tool exchange, a last plain exchange
TOOL_THREE = [*THREE[:2], *TOOL_CONV, {"role": "user", "content": "And in °F?"},
              {"role": "assistant", "content": "About 70 °F."}]
TOOL_THREE_HF = [*THREE[:2], *TOOL_HF, *TOOL_THREE[-2:]]
TOOL_CASES = [(conv, hf, system) for conv, hf in ((TOOL_CONV, TOOL_HF), (TOOL_THREE, TOOL_THREE_HF))
              for system in SYSTEMS]
TOOL_IDS = [f"{'one' if conv is TOOL_CONV else 'three'}-{'system' if system else 'nosystem'}"
            for conv, _, system in TOOL_CASES]


def tool_reference(tok, hf, system, **kwargs) -> list[int]:
    tools = [{"type": "function", "function": tool} for tool in json.loads(TOOLS)]
    return tok.apply_chat_template(hf_chat(hf, system), tools=tools, tokenize=True, return_dict=False, **kwargs)


@pytest.mark.parametrize(("conv", "hf", "system"), TOOL_CASES, ids=TOOL_IDS)
@pytest.mark.parametrize("folder", sorted(TOOL_CALL_REPLY))
def test_tool_calls_match_chat_template(folder, conv, hf, system):
    """Tool schemas (tools=), a tool call and its result render like the model's template, named and Jinja; the
    trained spans are exactly the replies: the call with its end-of-turn token, then the answers."""
    tok = load(require_shared(folder))
    name, middle, last = MODELS[folder]
    ref = tool_reference(tok, hf, system)
    for template in (get_template(name, tok), resolve_template(None, tok)):
        pairs = template.encode_multiturn(tok, conv, system=system, tools=TOOLS)
        assert flatten(pairs) == ref, (template.name, system)
        replies = [decode(tok, reply) for _, reply in pairs]
        answers = [m["content"] for m in conv if m["role"] == "assistant"]
        expected = [middle.format(a) for a in answers[:-1]] + [last.format(answers[-1])]
        expected.insert(len(answers) - (1 if conv is TOOL_CONV else 2), TOOL_CALL_REPLY[folder])
        assert replies == expected, template.name
        gen = tool_reference(tok, hf[:-1], system, add_generation_prompt=True)
        assert template.render_prompt(tok, conv[:-1], system=system, tools=TOOLS) == gen, template.name


def test_qwen3_thinking_with_tools_matches_chat_template():
    """A reasoning reply after a tool result keeps its <think> block (trained); one before the last user query
    loses it, as Qwen3's template renders history."""
    tok = load(require_shared("Qwen3-4B"))
    answer = "<think>\nThe tool says 21.\n</think>\n\nIt is 21 °C in Paris."
    old = {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"}
    conv = [THREE[0], old, *TOOL_CONV[:3], {"role": "assistant", "content": answer}]
    hf = [THREE[0], old, *TOOL_HF[:3], {"role": "assistant", "content": answer}]
    for system in SYSTEMS:
        ref = tool_reference(tok, hf, system)
        for template in (get_template("qwen3", tok), resolve_template(None, tok)):
            pairs = template.encode_multiturn(tok, conv, system=system, tools=TOOLS)
            assert flatten(pairs) == ref, (template.name, system)
            assert [decode(tok, reply) for _, reply in pairs] == [
                "Hello!<|im_end|>\n", TOOL_CALL_REPLY["Qwen3-4B"],
                "<think>\nThe tool says 21.\n</think>\n\nIt is 21 °C in Paris.<|im_end|>\n"], template.name


def test_every_shared_folder_is_mapped():
    """A new fixture folder should get an entry in MODELS (otherwise its named-template tests are skipped)."""
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"{SHARED_MODELS} is absent")
    unmapped = sorted(p.name for p in shared_tokenizer_dirs() if p.name not in MODELS)
    assert not unmapped, f"add {unmapped} to MODELS"


@pytest.mark.parametrize("folder", ["SmolLM2-135M-Instruct", "Yi-6B-Chat"])
def test_tool_result_turn_matches_role_loop_templates(folder):
    """SmolLM2 and Yi write each message's own role, so a tool result is a `<|im_start|>tool` turn there too."""
    tok = load(require_shared(folder))
    conv = [*THREE[:2], {"role": "observation", "content": '{"celsius": 21}'}, THREE[3]]
    hf = [*THREE[:2], {"role": "tool", "content": '{"celsius": 21}'}, THREE[3]]
    for system in SYSTEMS:
        pairs = get_template(MODELS[folder][0], tok).encode_multiturn(tok, conv, system=system)
        assert flatten(pairs) == reference(tok, hf, system)
        assert decode(tok, pairs[1][0]).replace("|> ", "|>").startswith("<|im_start|>tool\n")  # Yi: legacy "▁"

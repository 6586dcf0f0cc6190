"""JinjaTemplate: encode with the tokenizer's own ``chat_template`` (``template: null``), for any chat model.

The conversation is rendered by ``tokenizer.apply_chat_template`` and the assistant spans are found by rendering
prefixes of it: for the assistant message ``j``,

* the prompt ends where ``render(messages[:j], add_generation_prompt=True)`` stops agreeing with the full text;
* the reply ends where ``render(messages[:j + 1])`` (the conversation as if it ended with that reply) stops
  agreeing with the full text, once both are aligned on the reply's content.

So the reply span is the reply plus whatever the template closes a turn with (``<|im_end|>\\n``, ``<|eot_id|>``,
``</s>``, ...), and templates that render history differently from the last turn (Qwen3 drops old reasoning) still
split right. Example (Qwen2.5): ``[user "Hi", assistant "Hello"]`` -> prompt
``"<|im_start|>system\\nYou are Qwen...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"``,
reply ``"Hello<|im_end|>\\n"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..messages import Message
from .base import Template, TemplateError, check_roles, split_system
from .reasoning import split_thought
from .tools import arguments_text, decoded_arguments, openai_tool, parse_calls, parse_tools


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix: ``common_prefix("abcd", "abxy") == 2``."""
    low, high = 0, min(len(a), len(b))
    while low < high:  # binary search on slice equality: C-speed compares instead of a Python loop per char
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def hf_message(message: Message) -> dict[str, Any]:
    """Our message -> the dict chat templates expect (tool calls as ``tool_calls``, results as role ``tool``)."""
    role, content = message["role"], message["content"]
    if role == "observation":
        return {"role": "tool", "content": content}
    if role == "function":
        calls = [{"type": "function",
                  "function": {"name": c["name"], "arguments": decoded_arguments(c.get("arguments"))}}
                 for c in parse_calls(content)]
        return {"role": "assistant", "content": "", "tool_calls": calls}
    return {"role": role, "content": content}


def _anchors(message: Message) -> list[str]:
    """Texts that mark the end of a reply's content in the rendering, most specific first."""
    content = message["content"]
    if message["role"] == "function":
        return [arguments_text(decoded_arguments(call.get("arguments"))) for call in parse_calls(content)[-1:]]
    answer = split_thought(content).answer
    return [text for text in dict.fromkeys((content, answer, content.strip(), answer.strip())) if text]


def _content_end(text: str, message: Message, start: int) -> int:
    """End of the reply's content in ``text`` (searched from ``start``); ``start`` when it cannot be found."""
    for anchor in _anchors(message):
        found = text.find(anchor, start)
        if found >= 0:
            return found + len(anchor)
    return start


@dataclass(frozen=True)
class JinjaTemplate(Template):
    """A Template whose text comes from a Jinja ``chat_template`` (the tokenizer's, unless one is given)."""

    chat_template: str = ""

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, default_system: str | None = None, enable_thinking: bool | None = True,
                       tool_format: str | None = None) -> JinjaTemplate:
        """The tokenizer's chat template; its stop word is the token that closes a probe reply (e.g. <|im_end|>)."""
        del tool_format  # tools are rendered by the chat template itself
        chat_template = tokenizer.chat_template
        if not isinstance(chat_template, str):
            raise TemplateError("the tokenizer has no chat_template; name a template instead")
        name = "jinja:" + os.path.basename(str(getattr(tokenizer, "name_or_path", "")).rstrip("/"))
        template = cls(name=name, chat_template=chat_template, default_system=default_system or "",
                       enable_thinking=enable_thinking, doc="The tokenizer's own chat_template.")
        return _with_stops(template, tokenizer)

    def jinja_chat_template(self) -> str:
        return self.chat_template

    def pieces_for(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                   tools: str | None = None) -> list[str]:
        """Texts ``[prompt_0, reply_0, ...]`` cut from the chat template's rendering (see the module docstring)."""
        messages, system = split_system(messages, system)
        check_roles(messages, ends_with_reply=True)
        chat, skip = self._chat(messages, system)
        render = _Renderer(tokenizer, self.chat_template, self._kwargs(tools))
        full = render(chat)
        pieces, cursor = [], 0
        for index in range(1, len(messages), 2):
            prompt_end, reply_end = self._reply_span(render, chat, full, skip + index, messages[index])
            prompt_end = max(prompt_end, cursor)
            reply_end = max(reply_end, prompt_end)
            pieces += [full[cursor:prompt_end], full[prompt_end:reply_end]]
            cursor = reply_end
        pieces[-1] += full[cursor:]  # whatever the template adds after the last reply (Phi-3's EOS)
        return pieces

    def prompt_text_for(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                        tools: str | None = None) -> str:
        messages, system = split_system(messages, system)
        check_roles(messages, ends_with_reply=False)
        chat, _ = self._chat(messages, system)
        return _Renderer(tokenizer, self.chat_template, self._kwargs(tools))(chat, generation=True)

    @staticmethod
    def _reply_span(render: _Renderer, chat: list[dict], full: str, index: int, message: Message) -> tuple[int, int]:
        prompt = render(chat[:index], generation=True)
        prompt_end = common_prefix(prompt, full)
        alone = render(chat[: index + 1])  # the conversation as if it ended with this reply
        in_full = _content_end(full, message, prompt_end)
        in_alone = _content_end(alone, message, common_prefix(prompt, alone))
        return prompt_end, in_full + common_prefix(alone[in_alone:], full[in_full:])

    def _chat(self, messages: list[Message], system: str | None) -> tuple[list[dict], int]:
        """HF-style messages (system first when there is one) and how many leading messages are not ours."""
        if self.enable_thinking is False and "</think>" in self.chat_template:
            # thinking off: reasoning in the data is dropped (LLaMA-Factory's ReasoningTemplate does the same)
            messages = [{**m, "content": split_thought(m["content"]).answer} if m["role"] == "assistant" else m
                        for m in messages]
        chat = [hf_message(m) for m in messages]
        system = system or self.default_system
        return ([{"role": "system", "content": system}, *chat], 1) if system else (chat, 0)

    def _kwargs(self, tools: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        schemas = parse_tools(tools)
        if schemas:
            kwargs["tools"] = [openai_tool(tool) for tool in schemas]
        if self.enable_thinking is not None:
            kwargs["enable_thinking"] = self.enable_thinking
        return kwargs


class _Renderer:
    """``apply_chat_template(..., tokenize=False)`` with fixed template and keyword arguments."""

    def __init__(self, tokenizer: Any, chat_template: str, kwargs: dict[str, Any]):
        self.tokenizer, self.chat_template, self.kwargs = tokenizer, chat_template, kwargs

    def __call__(self, chat: list[dict], generation: bool = False) -> str:
        return self.tokenizer.apply_chat_template(chat, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=generation, **self.kwargs)


def _with_stops(template: JinjaTemplate, tokenizer: Any) -> JinjaTemplate:
    """Add the control token that closes a reply (``<|im_end|>``, ``<|eot_id|>``, ``<|end|>``) as the stop word."""
    import dataclasses

    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    try:
        reply = template.pieces_for(tokenizer, probe)[-1]
    except Exception:  # a template that rejects the probe (e.g. needs a system message) just gets no stop word
        return template
    closing = reply.split("Hello", 1)[-1].lstrip()
    added = sorted(tokenizer.get_added_vocab(), key=len, reverse=True)
    word = next((token for token in added if token and closing.startswith(token)), None)
    if word is None or word == tokenizer.eos_token:
        return template
    return dataclasses.replace(template, stops=(word,))

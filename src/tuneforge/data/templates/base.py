"""The chat template: data-like slots rendered to text, tokenized once, cut into (prompt, response) pairs.

A template is a handful of slot strings with placeholders: ``{{content}}`` (the message text), ``{{bos}}`` /
``{{eos}}`` (the tokenizer's BOS / EOS strings) and ``{{date}}`` (today, "26 Jul 2024" style, for Llama 3.1+).
Example, ChatML::

    Template("chatml", system="<|im_start|>system\\n{{content}}<|im_end|>\\n",
             user="<|im_start|>user\\n{{content}}<|im_end|>\\n<|im_start|>assistant\\n",
             assistant="{{content}}<|im_end|>\\n")

renders ``[user "Hi", assistant "Hello"]`` as
``"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n" + "Hello<|im_end|>\\n"``: the user slot carries the
assistant header, so each prompt piece ends where the reply starts, and the assistant slot is exactly what is trained.

The whole conversation is tokenized in one call, exactly like ``tokenizer.apply_chat_template``, and the ids are cut
at the piece boundaries (see ``spans.py``); so concatenating the pairs gives the model's own template ids whenever
the rendered text equals the model's template text (the tests check this for every shipped model).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...errors import TuneforgeError
from ..messages import ASSISTANT_ROLES, USER_ROLES, Message
from .reasoning import last_query_index, reasoned_reply, think_block
from .spans import encode_segments_batch, encode_text
from .tools import ToolFormat, get_tool_format, parse_tools

CONTENT, BOS, EOS, DATE = "{{content}}", "{{bos}}", "{{eos}}", "{{date}}"
Pair = tuple[list[int], list[int]]


class TemplateError(TuneforgeError, ValueError):
    """A conversation a template cannot encode, or an unknown / duplicate template; the message says which."""


@dataclass(frozen=True)
class Specials:
    """The strings substituted for ``{{bos}}``, ``{{eos}}`` and ``{{date}}``."""

    bos: str = ""
    eos: str = ""
    date: str = "26 Jul 2024"

    @classmethod
    def of(cls, tokenizer: Any) -> Specials:
        """From a tokenizer; the date is today's, like transformers' ``strftime_now("%d %b %Y")``."""
        return cls(tokenizer.bos_token or "", tokenizer.eos_token or "", datetime.now().strftime("%d %b %Y"))

    def fill(self, slot: str) -> str:
        return slot.replace(BOS, self.bos).replace(EOS, self.eos).replace(DATE, self.date)


def split_system(messages: list[Message], system: str | None) -> tuple[list[Message], str | None]:
    """Accept a leading ``{"role": "system"}`` message as the system prompt (HF style)."""
    if messages and messages[0]["role"] == "system":
        return list(messages[1:]), messages[0]["content"]
    return list(messages), system


def check_roles(messages: list[Message], *, ends_with_reply: bool) -> None:
    """Roles must alternate user|observation / assistant|function, starting with a user turn."""
    if not messages:
        raise TemplateError("a conversation needs at least one message")
    for index, message in enumerate(messages):
        allowed = USER_ROLES if index % 2 == 0 else ASSISTANT_ROLES
        if message["role"] not in allowed:
            raise TemplateError(f"message {index} has role {message['role']!r}; expected one of {allowed} "
                                "(turns alternate user|observation / assistant|function)")
    if (len(messages) % 2 == 0) != ends_with_reply:
        want = "an assistant reply" if ends_with_reply else "a user or observation message"
        raise TemplateError(f"the conversation must end with {want} (got {len(messages)} messages)")


@dataclass(frozen=True)
class Template:
    """A chat template (see the module docstring for the slot syntax).

    ``system_in_user``: the system text (rendered by the ``system`` slot) is prepended to the first user message
    (Llama 2, Mistral, Gemma). ``always_system``: the system slot is rendered even with no system (Llama 3.1+).
    ``strip_content``: message texts are stripped (Llama 2/3 templates ``trim`` them). ``suffix``: text after the
    final reply (Phi-3 ends a conversation with EOS). ``efficient_eos``: replies carry no EOS; the caller appends
    one EOS after the last reply and labels the first token of each later prompt as EOS (GLM-4 style).
    ``thought_words``: reasoning template (``<think>`` blocks, see ``reasoning.py``); ``empty_thought``: the text of
    an empty block when it is not the two words joined (GLM-4.7: ``"</think>"``). ``stops``: stop words besides
    EOS. ``replace_eos``: LLaMA-Factory's flag that the first stop word should become the tokenizer's EOS (for the
    model loader; encoding never depends on it, the slots spell their tokens).
    ``family``: the model family (the module or table group that defines it, e.g. "qwen").
    ``example``: the exact text of ``[system "SYS", user "Hi", assistant "Hello"]`` with BOS/EOS ``<s>``/``</s>``.
    """

    name: str
    user: str = CONTENT
    assistant: str = CONTENT + EOS
    system: str = CONTENT
    observation: str | None = None
    function: str | None = None
    prefix: str = ""
    suffix: str = ""
    default_system: str = ""
    system_in_user: bool = False
    always_system: bool = False
    strip_content: bool = False
    stops: tuple[str, ...] = ()
    efficient_eos: bool = False
    replace_eos: bool = False
    tool_format: str = "default"
    thought_words: tuple[str, str] | None = None
    empty_thought: str | None = None
    enable_thinking: bool | None = True
    family: str = ""
    doc: str = ""
    example: str = ""

    # ----------------------------------------------------------------- public API
    def encode_multiturn(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                         tools: str | None = None) -> list[Pair]:
        """One ``(prompt_ids, response_ids)`` per assistant turn; they concatenate to the whole conversation.

        Example (qwen): ``[user "Hi", assistant "Hello"]`` -> ``[(ids("<|im_start|>system\\n...<|im_end|>\\n
        <|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"), ids("Hello<|im_end|>\\n"))]``.
        The first prompt holds the BOS when the template has one. The text is tokenized once; a token that
        straddles a boundary (a reply starting with "\\n" merging with the header's "\\n") goes to the side holding
        most of its characters, ties to the later side, so the concatenation stays exact.
        """
        return _pairs_of(tokenizer, [self.pieces_for(tokenizer, messages, system, tools)])[0]

    def encode_multiturn_batch(self, tokenizer: Any, conversations: list[tuple[list[Message], str | None, str | None]]
                               ) -> list[list[Pair] | TemplateError]:
        """``encode_multiturn`` of many ``(messages, system, tools)`` in one tokenizer call; the same pairs.

        A conversation the template refuses gets its ``TemplateError`` in its place (the others are still encoded).
        """
        rendered: list[list[str] | TemplateError] = []
        for messages, system, tools in conversations:
            try:
                rendered.append(self.pieces_for(tokenizer, messages, system, tools))
            except TemplateError as error:
                rendered.append(error)
        encoded = iter(_pairs_of(tokenizer, [p for p in rendered if not isinstance(p, TemplateError)]))
        return [p if isinstance(p, TemplateError) else next(encoded) for p in rendered]

    def encode_oneturn(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                       tools: str | None = None) -> Pair:
        """``(everything before the last reply, the last reply)``: the pairs of ``encode_multiturn`` flattened."""
        pairs = self.encode_multiturn(tokenizer, messages, system, tools)
        prompt = [token for ids, reply in pairs[:-1] for token in ids + reply]
        return prompt + pairs[-1][0], pairs[-1][1]

    def render_prompt(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                      tools: str | None = None) -> list[int]:
        """Ids of a generation prompt: ``messages`` ends with a user/observation turn; the ids end with the
        assistant header (like ``apply_chat_template(..., add_generation_prompt=True)``)."""
        return encode_text(tokenizer, self.prompt_text_for(tokenizer, messages, system, tools))

    def stop_words(self) -> list[str]:
        """Strings that end a reply besides EOS, e.g. ``["<|im_end|>"]`` for qwen."""
        return list(self.stops)

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        """EOS id plus the ids of the stop words that are single tokens of ``tokenizer`` (order kept, no repeats)."""
        ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        for word in self.stops:
            token_id = tokenizer.convert_tokens_to_ids(word)
            if token_id is not None and (token_id != tokenizer.unk_token_id or word == tokenizer.unk_token):
                ids.append(token_id)
        return list(dict.fromkeys(ids))

    def jinja_chat_template(self) -> str:
        """A Jinja ``chat_template`` rendering system/user/assistant(/observation) messages like this template."""
        from .export import to_jinja

        return to_jinja(self)

    # ----------------------------------------------------------------- text rendering
    def pieces_for(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                   tools: str | None = None) -> list[str]:
        """``render_pieces`` with the tokenizer's BOS/EOS (JinjaTemplate renders with the tokenizer instead)."""
        return self.render_pieces(messages, system, tools, Specials.of(tokenizer))

    def prompt_text_for(self, tokenizer: Any, messages: list[Message], system: str | None = None,
                        tools: str | None = None) -> str:
        """``render_prompt_text`` with the tokenizer's BOS/EOS."""
        return self.render_prompt_text(messages, system, tools, Specials.of(tokenizer))

    def render_text(self, messages: list[Message], system: str | None = None, tools: str | None = None,
                    specials: Specials = Specials()) -> str:
        """The full text of a conversation ending with a reply (``example`` is this for the canonical one)."""
        return "".join(self.render_pieces(messages, system, tools, specials))

    def render_pieces(self, messages: list[Message], system: str | None, tools: str | None,
                      specials: Specials) -> list[str]:
        """Texts ``[prompt_0, reply_0, prompt_1, reply_1, ...]`` of a conversation ending with a reply."""
        messages, system = split_system(messages, system)
        check_roles(messages, ends_with_reply=True)
        pieces = self._pieces(messages, system, tools, specials)
        pieces[-1] += specials.fill(self.suffix)
        return pieces

    def render_prompt_text(self, messages: list[Message], system: str | None, tools: str | None,
                           specials: Specials) -> str:
        """The text of a generation prompt (see ``render_prompt``)."""
        messages, system = split_system(messages, system)
        check_roles(messages, ends_with_reply=False)
        text = "".join(self._pieces(messages, system, tools, specials))
        if self.thought_words and self.enable_thinking is False:  # Qwen3: enable_thinking=False pre-fills it
            empty = think_block(self.thought_words, empty=self.empty_thought)
            text += self._slot_head(self.assistant, specials) + empty
        return text

    def _pieces(self, messages: list[Message], system: str | None, tools: str | None,
                specials: Specials) -> list[str]:
        query = last_query_index([m["role"] for m in messages])
        pieces: list[str] = []
        for index, message in enumerate(messages):
            if index == 0:
                pieces.append(self._first_prompt(message, system, tools, specials))
            elif index % 2 == 0:
                pieces.append(self._fill(self._user_slot(message), self._user_content(message), specials))
            else:
                moved, reply = self._reply(message, index == len(messages) - 1, index > query, specials)
                pieces[-1] += moved
                pieces.append(reply)
        return pieces

    def _first_prompt(self, message: Message, system: str | None, tools: str | None, specials: Specials) -> str:
        """Prefix + system + first user message (the system folded into the user text when ``system_in_user``)."""
        text = system or self.default_system
        if parse_tools(tools):
            text = self.tool_formatter().system_text(text, tools)
        content, head = self._user_content(message), ""
        if self.system_in_user and text:
            content = self._fill(self.system, text, specials, strip=False) + content
        elif text or self.always_system:
            head = self._fill(self.system, text, specials)
        return specials.fill(self.prefix) + head + self._fill(self._user_slot(message), content, specials)

    def _reply(self, message: Message, is_last: bool, after_query: bool, specials: Specials) -> tuple[str, str]:
        """``(text added to the prompt, reply text)`` of an assistant or function message."""
        slot, content = self.assistant, message["content"]
        if message["role"] == "function":
            slot = self.function or self.assistant
            content = self.tool_formatter().call_text(content)
        if not self.thought_words:
            return "", self._fill(slot, content, specials)
        moved, content = reasoned_reply(self.thought_words, content, is_last=is_last, after_query=after_query,
                                        enable_thinking=self.enable_thinking, empty=self.empty_thought)
        if not moved:
            return "", self._fill(slot, content, specials)
        # the moved (untrained) empty block sits where the reply would start, after the slot's own head
        head = self._slot_head(slot, specials)
        return head + moved, self._fill(slot, content, specials)[len(head):]

    def tool_formatter(self) -> ToolFormat:
        """The template's tool format; TemplateError when it is one not implemented yet (see tools.py)."""
        try:
            return get_tool_format(self.tool_format)
        except ValueError as error:
            raise TemplateError(f"template {self.name!r}: {error}") from None

    def _user_content(self, message: Message) -> str:
        """The text a user / observation message puts in its slot (Llama 3 JSON-quotes tool results)."""
        return message["content"]

    def _user_slot(self, message: Message) -> str:
        return self.observation if message["role"] == "observation" and self.observation is not None else self.user

    def _fill(self, slot: str, content: str, specials: Specials, strip: bool = True) -> str:
        # content goes in last, so a "{{eos}}" typed in a message stays literal text
        if self.strip_content and strip:
            content = content.strip()
        return specials.fill(slot).replace(CONTENT, content)

    @staticmethod
    def _slot_head(slot: str, specials: Specials) -> str:
        """The part of a slot before ``{{content}}``."""
        return specials.fill(slot.split(CONTENT)[0])


def _pairs_of(tokenizer: Any, renderings: list[list[str]]) -> list[list[Pair]]:
    """Pieces ``[prompt_0, reply_0, ...]`` of each conversation -> its pairs, all texts tokenized in one call."""
    texts, cuts = [], []
    for pieces in renderings:
        ends, total = [], 0
        for piece in pieces:
            total += len(piece)
            ends.append(total)
        texts.append("".join(pieces))
        cuts.append(ends)
    return [list(zip(segments[0::2], segments[1::2], strict=True))
            for segments in encode_segments_batch(tokenizer, texts, cuts)]

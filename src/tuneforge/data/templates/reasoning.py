"""Chain-of-thought handling for reasoning templates (Qwen3-style ``<think>`` blocks).

The rules follow the Qwen3 chat template, so encoded conversations equal ``apply_chat_template``:

* an assistant turn *before* the last user query loses its thought (only the answer is rendered);
* an assistant turn *after* it keeps its thought as ``<think>\\n{thought}\\n</think>\\n\\n{answer}``; the final
  turn always gets a block, empty when it has no thought.

``enable_thinking`` then decides where the final block goes (LLaMA-Factory's ReasoningTemplate semantics):
``True``: in the response (trained; an empty block teaches "no thinking needed"); ``False``: every thought is
dropped and the empty block goes to the prompt (not trained); ``None``: thoughts are kept and trained, and a
turn without one gets the empty block in its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thought:
    """One assistant reply split into ``thought`` (None when it has none) and ``answer``.

    >>> split_thought("<think>\\nsum\\n</think>\\n\\n4")
    Thought(thought='sum', answer='4')
    """

    thought: str | None
    answer: str


def split_thought(content: str, close: str = "</think>", open_: str = "<think>") -> Thought:
    """Split a reply like the Qwen3 template: the answer follows the last ``close`` tag, the thought is what
    precedes the first one (after its ``open_`` tag); both trimmed of newlines."""
    if close not in content:
        return Thought(None, content)
    parts = content.split(close)
    return Thought(parts[0].split(open_)[-1].strip("\n"), parts[-1].lstrip("\n"))


def think_block(words: tuple[str, str], thought: str = "", empty: str | None = None) -> str:
    """``words = ("<think>\\n", "\\n</think>\\n\\n")`` and thought "x" give ``"<think>\\nx\\n</think>\\n\\n"``;
    an empty thought gives ``empty`` when set (GLM-4.7 writes just ``"</think>"``)."""
    if not thought and empty is not None:
        return empty
    return words[0] + thought + words[1]


def last_query_index(roles: list[str]) -> int:
    """Index of the last ``user`` message (observations do not count), -1 when there is none."""
    for index in range(len(roles) - 1, -1, -1):
        if roles[index] == "user":
            return index
    return -1


def reasoned_reply(words: tuple[str, str], content: str, *, is_last: bool, after_query: bool,
                   enable_thinking: bool | None, empty: str | None = None) -> tuple[str, str]:
    """``(prompt_part, response_part)`` of one assistant reply of a reasoning template.

    ``prompt_part`` is an empty think block moved into the prompt (not trained), or "".
    Example: final turn "4" with ``enable_thinking=True`` gives ``("", "<think>\\n\\n</think>\\n\\n4")``;
    with ``False`` it gives ``("<think>\\n\\n</think>\\n\\n", "4")``.
    """
    close, open_ = words[1].strip(), words[0].strip()
    parts = split_thought(content, close, open_)
    thought = None if enable_thinking is False else parts.thought
    if not after_query or not (is_last or thought):
        return "", parts.answer
    block, answer = think_block(words, thought or "", empty), parts.answer.lstrip("\n")  # Qwen3 lstrips after a block
    # an explicit (even empty) block in the data is kept as a trained part unless thinking is off
    if thought or enable_thinking is True or (enable_thinking is None and parts.thought is not None):
        return "", block + answer
    return block, answer

"""A Jinja ``chat_template`` equivalent to a named template, saved with exported tokenizers.

For system / user / assistant messages (and tool results as role ``tool`` or ``observation``) the Jinja string
renders the same text as :meth:`Template.render_text`; e.g. for chatml ``[user "Hi", assistant "Hello"]`` gives
``"<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello<|im_end|>\\n"``. Tool calls are not rendered
(they are assistant ``function`` messages in our schema, rendered by the Python side). As in LLaMA-Factory, the
user slot carries the assistant header, so it is emitted after every user message.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from .base import BOS, CONTENT, DATE, EOS

if TYPE_CHECKING:
    from .base import Template

_PLACEHOLDER = re.compile(r"(\{\{(?:content|bos|eos|date)\}\})")
_VARIABLES = {BOS: "(bos_token or '')", EOS: "(eos_token or '')", DATE: "date_string"}


def slot_expr(slot: str, content: str = "content") -> str:
    """Jinja expression of a slot: ``"<a>{{content}}{{eos}}"`` -> ``"<a>" + content + (eos_token or '')``."""
    parts = []
    for piece in _PLACEHOLDER.split(slot):
        if piece == CONTENT:
            parts.append(content)
        elif piece in _VARIABLES:
            parts.append(_VARIABLES[piece])
        elif piece:
            parts.append(json.dumps(piece))  # Jinja decodes string literals with Python escapes, as JSON writes them
    return " + ".join(parts) or "''"


def _header(template: Template) -> list[str]:
    lines = [
        "{%- set system_message = " + json.dumps(template.default_system) + " %}",
        "{%- set loop_messages = messages %}",
        "{%- if messages and messages[0]['role'] == 'system' %}",
        "{%- set system_message = messages[0]['content'] or system_message %}",
        "{%- set loop_messages = messages[1:] %}",
        "{%- endif %}",
    ]
    if DATE in template.system + template.user + template.prefix:
        lines += ["{%- if date_string is not defined %}{%- if strftime_now is defined %}",
                  "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}",
                  "{%- set date_string = '26 Jul 2024' %}{%- endif %}{%- endif %}"]
    lines.append("{{- " + slot_expr(template.prefix) + " }}")
    if not template.system_in_user:
        condition = "true" if template.always_system else "system_message"
        system = "(system_message | trim)" if template.strip_content else "system_message"
        lines.append("{%- if " + condition + " %}{{- " + slot_expr(template.system, system) + " }}{%- endif %}")
    return lines


def _block(template: Template, thought: str) -> str:
    """Jinja expression of a think block around the expression ``thought`` (``empty_thought`` when it is empty)."""
    start, end = template.thought_words or ("", "")
    full = json.dumps(start) + " + " + thought + " + " + json.dumps(end)
    if template.empty_thought is None:
        return "(" + full + ")"
    return "(" + full + " if " + thought + " else " + json.dumps(template.empty_thought) + ")"


def _reasoning(template: Template) -> list[str]:
    """Jinja mirroring reasoning.reasoned_reply: sets ``content`` of an assistant message."""
    if not template.thought_words:
        return []
    start, end = template.thought_words
    open_tag, close_tag = json.dumps(start.strip()), json.dumps(end.strip())
    thinking = "false" if template.enable_thinking is False else "true"
    return [
        "{%- set answer = content %}{%- set thought = '' %}",
        "{%- if " + close_tag + " in content %}",
        "{%- set answer = content.split(" + close_tag + ")[-1].lstrip('\\n') %}",
        "{%- set thought = content.split(" + close_tag + ")[0].split(" + open_tag + ")[-1].strip('\\n') %}",
        "{%- endif %}",
        "{%- if (enable_thinking if enable_thinking is defined else " + thinking + ") is false %}"
        "{%- set thought = '' %}{%- endif %}",
        "{%- if loop.index0 > ns.last_query and (loop.last or thought) %}",
        "{%- set content = " + _block(template, "thought") + " + answer.lstrip('\\n') %}",
        "{%- else %}{%- set content = answer %}{%- endif %}",
    ]


def _loop(template: Template) -> list[str]:
    content = "(content | trim)" if template.strip_content else "content"
    observation = template.observation if template.observation is not None else template.user
    lines = ["{%- set ns = namespace(last_query=-1) %}",
             "{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
             "{%- set ns.last_query = loop.index0 %}{%- endif %}{%- endfor %}",
             "{%- for message in loop_messages %}",
             "{%- set content = message['content'] %}"]
    if template.system_in_user:
        lines.append("{%- if loop.first and system_message %}{%- set content = "
                     + slot_expr(template.system, "system_message") + " + content %}{%- endif %}")
    lines += ["{%- if message['role'] == 'user' %}{{- " + slot_expr(template.user, content) + " }}",
              "{%- elif message['role'] in ['tool', 'observation'] %}{{- " + slot_expr(observation, content) + " }}",
              "{%- elif message['role'] == 'assistant' %}",
              *_reasoning(template),
              "{{- " + slot_expr(template.assistant, content) + " }}",
              "{%- endif %}",
              "{%- endfor %}"]
    return lines


def _footer(template: Template) -> list[str]:
    lines = []
    if template.thought_words:
        block = _block(template, "''")
        head = slot_expr(template.assistant.split(CONTENT)[0])
        thinking = "false" if template.enable_thinking is False else "true"
        lines.append("{%- if add_generation_prompt and (enable_thinking if enable_thinking is defined else "
                     + thinking + ") is false %}{{- " + head + " + " + block + " }}{%- endif %}")
    if template.suffix:
        lines.append("{%- if not add_generation_prompt and loop_messages and loop_messages[-1]['role'] == "
                     "'assistant' %}{{- " + slot_expr(template.suffix) + " }}{%- endif %}")
    return lines


def to_jinja(template: Template) -> str:
    """The Jinja chat_template string of ``template`` (one statement per line, whitespace-controlled)."""
    return "\n".join(_header(template) + _loop(template) + _footer(template))

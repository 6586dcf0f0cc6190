"""OpenAI chat format: ``messages`` with ``role``/``content``, assistant ``tool_calls`` and ``tool`` results.

Example (columns ``{"messages": "messages", "tools": "tools"}``, tags ``role``/``content``/``user``/
``assistant``/``system``)::

    {"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function":
                      {"name": "weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}]},
                  {"role": "tool", "content": "{\\"temp\\": 21}"},
                  {"role": "assistant", "content": "21 degrees."}]}
    -> _prompt [user, function '[{"name": "weather", "arguments": {"city": "Paris"}}]', observation]
       _response [assistant "21 degrees."]

Differences from ShareGPT: ``tool_calls`` become one function message (a JSON list; string arguments
are parsed into objects, and text sent along with the calls is dropped because one turn holds one
kind of content), ``tool`` is always an observation, consecutive observations merge into one whose
content is a JSON list of the results, a content given as a list of text parts is joined, and
``{"type": "function", "function": {...}}`` tool schemas are unwrapped to the function. Nothing is
added to the system prompt (LLaMA-Factory appends "detailed thinking off"; we do not).
"""

from __future__ import annotations

import json
from typing import Any

from ..validate import BAD_VALUE, WRONG_TYPE, RowProblem, Turn, check_content, clip, type_name
from .sharegpt import ShareGPTConverter


class OpenAIConverter(ShareGPTConverter):
    """``OpenAIConverter(attr, policy)(row) -> aligned row``; raises RowProblem for a bad row."""

    def __init__(self, attr, policy) -> None:
        super().__init__(attr, policy)
        self.roles.setdefault("tool", "observation")  # the OpenAI spec's name, whatever the tags say
        self.names["observation"] = self.names.get("observation") or "tool"

    def _tools(self, row: dict[str, Any]) -> str:
        text = super()._tools(row)
        if not text:
            return ""
        tools = json.loads(text)
        if isinstance(tools, list):
            tools = [t["function"] if isinstance(t, dict) and t.get("type") == "function" and "function" in t else t
                     for t in tools]
        return json.dumps(tools, ensure_ascii=False)

    def _turns(self, located: list[tuple[str, Any]]) -> list[Turn]:
        merged: list[Turn] = []
        for where, message in located:
            turn = self._turn(message, where)
            if turn.role == "observation":
                check_content(turn)  # before merging, so a bad result is named by its own position
            if turn.role == "observation" and merged and merged[-1].role == "observation":
                merged[-1] = _merge(merged[-1], turn)
            else:
                merged.append(turn)
        for turn in merged:
            if isinstance(turn.content, list):  # only merged results are lists here: parts were joined
                turn.content = json.dumps(turn.content, ensure_ascii=False)
        return merged

    def _turn(self, message: Any, where: str) -> Turn:
        turn = super()._turn(message, where)
        calls = message.get("tool_calls")
        if calls:
            if turn.role != "assistant":
                raise RowProblem(f"{where}.tool_calls", BAD_VALUE, f"tool_calls belong to assistant messages, "
                                                                   f"not {turn.tag!r}")
            return Turn("function", _calls_json(calls, f"{where}.tool_calls"), where, "tool_calls", "tool_calls",
                        turn.role_key)
        if isinstance(turn.content, list):
            turn.content = _join_parts(turn.content, turn.where(turn.content_key))
        return turn


def _merge(first: Turn, second: Turn) -> Turn:
    """Two tool results in a row: one observation holding the JSON list of both."""
    results = first.content if isinstance(first.content, list) else [first.content]
    return Turn("observation", [*results, second.content], first.field, first.tag, first.content_key, first.role_key)


def _calls_json(calls: Any, where: str) -> str:
    """``[{"function": {"name": "f", "arguments": "{\\"x\\": 1}"}}] -> '[{"name": "f", "arguments": {"x": 1}}]'``."""
    if not isinstance(calls, list):
        raise RowProblem(where, WRONG_TYPE, f"expected a list of tool calls, got {type_name(calls)}")
    return json.dumps([_call(call, f"{where}[{i}]") for i, call in enumerate(calls)], ensure_ascii=False)


def _call(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise RowProblem(f"{where}.function", WRONG_TYPE, f"expected {{'name': ..., 'arguments': ...}}, got "
                                                         f"{clip(call)}")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            raise RowProblem(f"{where}.function.arguments", BAD_VALUE, f"arguments must be JSON ({err.msg}): "
                                                                       f"{clip(arguments)}") from None
    return {"name": function["name"], "arguments": {} if arguments is None else arguments}


def _join_parts(parts: list[Any], where: str) -> str:
    """``[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}] -> "ab"``; other part types are refused."""
    texts = []
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type_name(part)
            raise RowProblem(f"{where}[{index}]", BAD_VALUE, f"only text content parts are supported, got {kind!r}")
        texts.append(part["text"])
    return "".join(texts)

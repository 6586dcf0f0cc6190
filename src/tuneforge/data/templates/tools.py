"""Tool formats: how tool schemas enter the system prompt and how an assistant tool call is written.

``_tools`` holds a JSON list of function schemas (``{"name", "description", "parameters"}``, or OpenAI's
``{"type": "function", "function": {...}}``); a ``function`` message holds ``{"name", "arguments"}`` or a list of
them. Formats: ``default`` (ReAct-style ``Action:`` lines), ``qwen`` (Hermes ``<tool_call>`` JSON, as the Qwen2.5 and
Qwen3 chat templates render it), ``llama3`` (bare JSON calls) and ``glm4``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON exactly as the ``tojson`` filter of transformers' chat templates writes it (non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def parse_tools(tools: str | list | None) -> list[dict[str, Any]]:
    """The tool schemas of ``_tools`` ("" or None: none). Raises ValueError on malformed JSON."""
    if not tools:
        return []
    value = json.loads(tools) if isinstance(tools, str) else tools
    value = value if isinstance(value, list) else [value]
    if not all(isinstance(tool, dict) for tool in value):
        raise ValueError(f"tools must be a JSON list of objects, got {tools!r}")
    return value


def function_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """``{"type": "function", "function": f}`` -> ``f``; a bare schema is returned as is."""
    return tool["function"] if tool.get("type") == "function" and "function" in tool else tool


def openai_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A bare schema wrapped the way chat templates expect: ``{"type": "function", "function": schema}``."""
    return tool if "type" in tool else {"type": "function", "function": tool}


def parse_calls(content: str) -> list[dict[str, Any]]:
    """The calls of a ``function`` message: ``'{"name": "f", "arguments": {"x": 1}}'`` -> ``[{"name": "f", ...}]``."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        raise ValueError(f"a function message must hold JSON {{'name', 'arguments'}}, got {content!r}") from None
    calls = value if isinstance(value, list) else [value]
    for call in calls:
        if not isinstance(call, dict) or "name" not in call:
            raise ValueError(f"a tool call needs a 'name', got {call!r}")
    return calls


def arguments_text(arguments: Any) -> str:
    """A string is taken verbatim (already JSON), anything else is dumped (like the Qwen3 template)."""
    return arguments if isinstance(arguments, str) else dumps(arguments if arguments is not None else {})


@dataclass(frozen=True)
class ToolFormat:
    """``tools(schemas) -> text``, ``calls(calls) -> text``; ``join(system, tools_text)`` builds the system."""

    tools: Callable[[list[dict[str, Any]]], str]
    calls: Callable[[list[dict[str, Any]]], str]

    def system_text(self, system: str, tools: str | list | None) -> str:
        """``system`` plus the tool text, separated by a blank line (just one of them when the other is empty)."""
        schemas = parse_tools(tools)
        if not schemas:
            return system
        text = self.tools(schemas)
        return f"{system}\n\n{text}" if system else text

    def call_text(self, content: str) -> str:
        return self.calls(parse_calls(content))


def _default_tools(schemas: list[dict[str, Any]]) -> str:
    lines, names = ["You have access to the following tools:"], []
    for tool in map(function_schema, schemas):
        names.append(tool["name"])
        lines += [f"> Tool Name: {tool['name']}", f"Tool Description: {tool.get('description', '')}", "Tool Args:"]
        params = tool.get("parameters") or {}
        required = set(params.get("required", []))
        for arg, spec in (params.get("properties") or {}).items():
            flag = ", required" if arg in required else ""
            lines.append(f"  - {arg} ({spec.get('type', 'any')}{flag}): {spec.get('description', '')}")
        lines.append("")
    lines += ["Use the following format if using a tool:", "```",
              f"Action: tool name (one of [{', '.join(names)}])",
              'Action Input: the input to the tool, in a JSON format representing the kwargs (e.g. {"x": 1})', "```"]
    return "\n".join(lines)


def _default_calls(calls: list[dict[str, Any]]) -> str:
    return "\n".join(f"Action: {c['name']}\nAction Input: {arguments_text(c.get('arguments'))}" for c in calls)


_QWEN_HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
_QWEN_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
              '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
              "<args-json-object>}\n</tool_call>")


def _qwen_tools(schemas: list[dict[str, Any]]) -> str:
    return _QWEN_HEAD + "".join("\n" + dumps(openai_tool(tool)) for tool in schemas) + _QWEN_TAIL


def _qwen_calls(calls: list[dict[str, Any]]) -> str:
    return "\n".join(f'<tool_call>\n{{"name": "{c["name"]}", "arguments": {arguments_text(c.get("arguments"))}}}'
                     "\n</tool_call>" for c in calls)


def _llama3_tools(schemas: list[dict[str, Any]]) -> str:
    head = ("You have access to the following functions. To call a function, please respond with JSON for a "
            'function call. Respond in the format {"name": function name, "parameters": dictionary of argument '
            "name and its value}. Do not use variables.\n\n")
    return head + "\n\n".join(dumps(openai_tool(tool), indent=4) for tool in schemas)


def _llama3_calls(calls: list[dict[str, Any]]) -> str:
    return "\n".join(f'{{"name": "{c["name"]}", "parameters": {arguments_text(c.get("arguments"))}}}' for c in calls)


_GLM4_HINT = "在调用上述函数时，请使用 Json 格式表示调用的参数。"


def _glm4_tools(schemas: list[dict[str, Any]]) -> str:
    parts = ["# 可用工具"]
    for tool in map(function_schema, schemas):
        parts.append(f"## {tool['name']}\n\n{dumps(tool, indent=4)}\n{_GLM4_HINT}")
    return "\n\n".join(parts)


def _glm4_calls(calls: list[dict[str, Any]]) -> str:
    return "\n".join(f"{c['name']}\n{arguments_text(c.get('arguments'))}" for c in calls)


TOOL_FORMATS: dict[str, ToolFormat] = {
    "default": ToolFormat(_default_tools, _default_calls),
    "qwen": ToolFormat(_qwen_tools, _qwen_calls),
    "llama3": ToolFormat(_llama3_tools, _llama3_calls),
    "glm4": ToolFormat(_glm4_tools, _glm4_calls),
}


def get_tool_format(name: str) -> ToolFormat:
    """The named tool format; ValueError with the known names otherwise."""
    if name not in TOOL_FORMATS:
        from ...utils.suggest import did_you_mean

        known = ", ".join(TOOL_FORMATS)
        raise ValueError(f"unknown tool_format {name!r} (known: {known}).{did_you_mean(name, TOOL_FORMATS)}")
    return TOOL_FORMATS[name]

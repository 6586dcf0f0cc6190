"""Tool formats: how tool schemas enter the system prompt and how an assistant tool call is written.

``_tools`` holds a JSON list of function schemas (``{"name", "description", "parameters"}``, or OpenAI's
``{"type": "function", "function": {...}}``); a ``function`` message holds ``{"name", "arguments"}`` or a list of
them. Formats: ``default`` (LLaMA-Factory's ReAct-style ``Action:`` lines), ``qwen`` (Hermes ``<tool_call>`` JSON,
as the Qwen2.5 and Qwen3 chat templates render it), ``llama3`` (schemas in the first user message, bare JSON calls,
as the Llama 3.1+ chat templates do), ``glm4``, ``mistral`` (``[AVAILABLE_TOOLS]``), ``phi4_mini``
(``<|tool|>``), ``qwen3_5`` (``<function=...>`` XML calls) and ``glm4_moe`` (``<arg_key>`` XML calls).
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
    """``tools(schemas) -> text`` and ``calls(calls) -> text``; ``system_text`` puts the tool text after the system.

    ``blank_line``: system and tool text are separated by a blank line (the Qwen templates); otherwise they are
    concatenated as LLaMA-Factory does (its tool prompts carry their own leading text).
    """

    tools: Callable[[list[dict[str, Any]]], str]
    calls: Callable[[list[dict[str, Any]]], str]
    blank_line: bool = False

    def system_text(self, system: str, tools: str | list | None) -> str:
        """``system`` plus the tool text (just one of them when the other is empty)."""
        schemas = parse_tools(tools)
        if not schemas:
            return system
        text = self.tools(schemas)
        return f"{system}\n\n{text}" if system and self.blank_line else system + text

    def call_text(self, content: str) -> str:
        return self.calls(parse_calls(content))


def _arg_line(arg: str, spec: dict[str, Any], required: set[str]) -> str:
    """One argument of LLaMA-Factory's default tool prompt: ``  - city (string, required): The city``."""
    flag = ", required" if arg in required else ""
    enum = f", should be one of [{', '.join(map(str, spec['enum']))}]" if spec.get("enum") else ""
    items = f", where each item should be {spec['items'].get('type', '')}" if spec.get("items") else ""
    return f"  - {arg} ({spec.get('type', '')}{flag}): {spec.get('description', '')}{enum}{items}\n"


def _default_tools(schemas: list[dict[str, Any]]) -> str:
    """LLaMA-Factory's default ReAct prompt, word for word (its own format; no model defines it)."""
    text, names = "You have access to the following tools:\n", []
    for tool in map(function_schema, schemas):
        names.append(tool["name"])
        params = tool.get("parameters") or {}
        required = set(params.get("required", []))
        args = "".join(_arg_line(arg, spec, required) for arg, spec in (params.get("properties") or {}).items())
        text += f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\nTool Args:\n{args}\n"
    return (text + "Use the following format if using a tool:\n```\n"
            f"Action: tool name (one of [{', '.join(names)}])\n"
            "Action Input: the input to the tool, in a JSON format representing the kwargs "
            '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n')


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


# the Llama 3.1+ chat_template puts this (and the schemas) at the top of the first user message
LLAMA3_TOOLS_HEAD = ("Given the following functions, please respond with a JSON for a function call with its proper "
                     "arguments that best answers the given prompt.\n\n"
                     'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
                     "value}.Do not use variables.\n\n")


def _llama3_tools(schemas: list[dict[str, Any]]) -> str:
    return LLAMA3_TOOLS_HEAD + "".join(dumps(openai_tool(tool), indent=4) + "\n\n" for tool in schemas)


def _llama3_calls(calls: list[dict[str, Any]]) -> str:
    return "\n".join(f'{{"name": "{c["name"]}", "parameters": {arguments_text(c.get("arguments"))}}}' for c in calls)


_GLM4_HEAD = ("你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
              "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具")
_GLM4_HINT = "在调用上述函数时，请使用 Json 格式表示调用的参数。"


def _glm4_tools(schemas: list[dict[str, Any]]) -> str:
    return _GLM4_HEAD + "".join(f"\n\n## {tool['name']}\n\n{dumps(tool, indent=4)}\n{_GLM4_HINT}"
                                for tool in map(function_schema, schemas))


def _glm4_calls(calls: list[dict[str, Any]]) -> str:
    if len(calls) > 1:
        raise ValueError("GLM-4 renders one tool call per message; split the parallel calls into turns")
    return f"{calls[0]['name']}\n{arguments_text(calls[0].get('arguments'))}"


def _mistral_tools(schemas: list[dict[str, Any]]) -> str:
    return "[AVAILABLE_TOOLS] " + dumps([openai_tool(tool) for tool in schemas]) + "[/AVAILABLE_TOOLS]"


def _mistral_calls(calls: list[dict[str, Any]]) -> str:
    return dumps([{"name": c["name"], "arguments": decoded_arguments(c.get("arguments"))} for c in calls])


def decoded_arguments(arguments: Any) -> Any:
    """A call's arguments as an object: a JSON string is decoded (templates ``tojson`` them, and Mistral dumps the
    whole call list once); ``None`` is ``{}``, text that is not JSON stays text."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return {} if arguments is None else arguments


def _value_text(value: Any) -> str:
    """An XML-style argument value: strings verbatim, anything else as JSON (``3`` -> ``"3"``)."""
    return value if isinstance(value, str) else dumps(value)


def _arguments_of(call: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a call as a mapping (XML formats write one element per argument)."""
    arguments = decoded_arguments(call.get("arguments"))
    if not isinstance(arguments, dict):
        raise ValueError(f"tool call {call['name']!r}: XML tool formats need object arguments, got {arguments!r}")
    return arguments


_QWEN35_TAIL = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified "
    "format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your function call in "
    "natural language BEFORE the function call, but NOT after\n- If there is no function call available, answer "
    "the question like normal with your current knowledge and do not tell the user about function calls\n"
    "</IMPORTANT>")


def _qwen35_tools(schemas: list[dict[str, Any]]) -> str:
    return ("# Tools\n\nYou have access to the following functions:\n\n<tools>"
            + "".join("\n" + dumps(function_schema(tool)) for tool in schemas) + _QWEN35_TAIL)


def _qwen35_calls(calls: list[dict[str, Any]]) -> str:
    """``<tool_call>\\n<function=f>\\n<parameter=x>\\n1\\n</parameter>\\n</function>\\n</tool_call>`` per call."""
    def one(call: dict[str, Any]) -> str:
        params = "".join(f"\n<parameter={k}>\n{_value_text(v)}\n</parameter>" for k, v in _arguments_of(call).items())
        return f"<tool_call>\n<function={call['name']}>{params}\n</function>\n</tool_call>"

    return "\n".join(map(one, calls))


_GLM4_MOE_TAIL = (
    "\n</tools>\n\nFor each function call, output the function name and arguments within the following XML "
    "format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
    "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>\n")


def _glm4_moe_tools(schemas: list[dict[str, Any]]) -> str:
    return _QWEN_HEAD + "".join("\n" + dumps(openai_tool(tool)) for tool in schemas) + _GLM4_MOE_TAIL


def _glm4_moe_calls(calls: list[dict[str, Any]]) -> str:
    """``\\n<tool_call>f\\n<arg_key>x</arg_key>\\n<arg_value>1</arg_value>\\n</tool_call>`` per call (GLM-4.5 opens
    each call on a new line after ``<|assistant|>``)."""
    return "".join(f"\n<tool_call>{c['name']}"
                   + "".join(f"\n<arg_key>{k}</arg_key>\n<arg_value>{_value_text(v)}</arg_value>"
                             for k, v in _arguments_of(c).items())
                   + "\n</tool_call>" for c in calls)


def _phi4_mini_tools(schemas: list[dict[str, Any]]) -> str:
    return "<|tool|>" + dumps([function_schema(tool) for tool in schemas]) + "<|/tool|>"


TOOL_FORMATS: dict[str, ToolFormat] = {
    "default": ToolFormat(_default_tools, _default_calls),
    "qwen": ToolFormat(_qwen_tools, _qwen_calls, blank_line=True),
    "llama3": ToolFormat(_llama3_tools, _llama3_calls),
    "glm4": ToolFormat(_glm4_tools, _glm4_calls),
    "mistral": ToolFormat(_mistral_tools, _mistral_calls),
    "phi4_mini": ToolFormat(_phi4_mini_tools, _default_calls),
    "qwen3_5": ToolFormat(_qwen35_tools, _qwen35_calls, blank_line=True),
    "glm4_moe": ToolFormat(_glm4_moe_tools, _glm4_moe_calls, blank_line=True),
}
# LLaMA-Factory tool formats whose wording is not written here yet: a template using one renders chats without
# tools normally and refuses rows with tools or tool calls (see ``get_tool_format``)
PENDING_TOOL_FORMATS = ("seed_oss", "minimax1", "minimax2", "ling", "lfm2", "gemma4", "llama4")


def get_tool_format(name: str) -> ToolFormat:
    """The named tool format; ValueError with the known names otherwise (or for a pending one, what to use)."""
    if name in PENDING_TOOL_FORMATS:
        raise ValueError(f"tool_format {name!r} (LLaMA-Factory's) is not implemented yet, so rows with tools or tool "
                         "calls cannot be rendered with it; set template: null to use the model's own chat_template, "
                         f"or tool_format: one of {', '.join(TOOL_FORMATS)}")
    if name not in TOOL_FORMATS:
        from ...utils.suggest import did_you_mean

        known = ", ".join(TOOL_FORMATS)
        raise ValueError(f"unknown tool_format {name!r} (known: {known}).{did_you_mean(name, TOOL_FORMATS)}")
    return TOOL_FORMATS[name]

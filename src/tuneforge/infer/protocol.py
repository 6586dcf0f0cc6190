"""The OpenAI chat-completions subset the API server speaks: request models, conversion, response bodies.

Accepted: ``messages`` (roles system/developer first, then user/assistant turns, ``tool`` results; content a string
or a list of ``{"type": "text"}`` parts), ``max_tokens`` / ``max_completion_tokens``, ``temperature`` (0 = greedy),
``top_p``, ``n``, ``stop`` (a string or up to 16 strings), ``stream``. Unknown fields are ignored, as OpenAI
clients send many. Refused with 400: images/audio parts, ``tools`` / ``tool_calls`` (function calling is not
served yet), ``n > 1`` with ``stream``, texts holding an unpaired surrogate (``"\\ud800"``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` and an OpenAI-style error body."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict[str, Any]:
        return error_body(str(self), kind=self.kind, param=self.param, code=self.code)


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI returns it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > 16:
            raise RequestError("stop takes at most 16 strings", param="stop")
        return [encodable(s, "stop") for s in stops if s]

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def encodable(text: str, param: str) -> str:
    """``text`` if it is valid Unicode; a lone UTF-16 surrogate (JSON ``"\\ud800"``) cannot be tokenized: 400."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        message = f"{param}: character {err.start} is an unpaired UTF-16 surrogate ({text[err.start]!a}); " \
                  "send valid Unicode"
        raise RequestError(message, param=param, code="invalid_encoding") from None
    return text


def _text(message: ChatMessage, index: int) -> str:
    return encodable(_joined(message, index), f"messages[{index}].content")


def _joined(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(f"messages[{index}]: only text content parts are supported (got type "
                               f"{part.get('type')!r})", param=f"messages[{index}].content")
        texts.append(part["text"])
    return "".join(texts)


def to_conversation(request: ChatCompletionRequest) -> tuple[list[dict[str, str]], str | None]:
    """``(messages in our schema, system prompt or None)``; leading system/developer messages become the system
    prompt (joined by newlines). Role order is checked later by the template (a TemplateError → 400)."""
    if request.tools:
        raise RequestError("function calling (tools) is not supported by this server", param="tools")
    if request.stream and request.n > 1:
        raise RequestError("n > 1 cannot be streamed; ask for n = 1 or stream = false", param="n")
    systems: list[str] = []
    messages: list[dict[str, str]] = []
    for index, message in enumerate(request.messages):
        if message.tool_calls:
            raise RequestError("tool_calls are not supported by this server", param=f"messages[{index}]")
        text = _text(message, index)
        if message.role in ("system", "developer"):
            if messages:
                raise RequestError("system messages must come before the conversation", param=f"messages[{index}]")
            systems.append(text)
            continue
        role = "observation" if message.role in ("tool", "function") else message.role
        messages.append({"role": role, "content": text})
    if not messages:
        raise RequestError("messages holds no user message", param="messages")
    return messages, "\n".join(systems) if systems else None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(cid: str, model: str, completions: list[Any]) -> dict[str, Any]:
    """The non-streamed response for ``completions`` (``Completion`` objects of one prompt)."""
    prompt_tokens = completions[0].prompt_tokens if completions else 0
    generated = sum(c.completion_tokens for c in completions)
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                     "finish_reason": c.finish_reason} for i, c in enumerate(completions)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated,
                  "total_tokens": prompt_tokens + generated},
    }


def chunk_body(cid: str, model: str, created: int, delta: dict[str, str], finish_reason: str | None = None,
               ) -> dict[str, Any]:
    """One streamed ``chat.completion.chunk``."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def models_body(model: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": int(time.time()),
                                        "owned_by": "tuneforge"}]}

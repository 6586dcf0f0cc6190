"""ASGI guards of the API server that act before any route runs: the ``Host`` allow-list and the body-size limit.

Both answer with an OpenAI-style JSON error and never call the app for a refused request:

* :class:`HostGuard` (400 ``invalid_host``): a browser page on ``evil.example`` whose name was re-pointed at
  127.0.0.1 (DNS rebinding) still sends ``Host: evil.example``, so a key-less server on loopback answers only
  loopback names unless told otherwise (:func:`allowed_hosts`);
* :class:`BodyLimit` (413 ``request_too_large``): the body is read (at most ``limit`` bytes, whatever
  ``Content-Length`` claims) before the app sees it, so a 10 MB prompt is refused before it is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from .protocol import error_body

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(setting: str | None, *, bind: str, has_key: bool) -> frozenset[str] | None:
    """Host names to answer (lower case, no port), or ``None`` for any.

    ``setting`` is ``API_ALLOWED_HOSTS`` (comma list, ``*`` = any). Unset: any host when a key is required (the key
    is the protection), else the loopback names plus the bound address:
    ``allowed_hosts(None, bind="127.0.0.1", has_key=False) == {"localhost", "127.0.0.1", "::1"}``.
    """
    if setting:
        names = {n.strip().lower().strip("[]") for n in setting.split(",") if n.strip()}
        return None if "*" in names else frozenset(names)
    if has_key:
        return None
    extra = set() if bind in WILDCARD_BINDS else {bind.lower().strip("[]")}
    return frozenset(LOOPBACK_NAMES) | extra


def host_name(value: bytes) -> str:
    """The name in a ``Host`` header: ``b"[::1]:8000"`` -> ``"::1"``, ``b"Example.COM:80"`` -> ``"example.com"``."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _header(scope: dict, name: bytes) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k.lower() == name), None)


async def _refuse(scope: dict, receive: Any, send: Any, status: int, message: str, code: str) -> None:
    await JSONResponse(error_body(message, code=code), status_code=status)(scope, receive, send)


class HostGuard:
    """ASGI middleware: 400 for an HTTP request whose ``Host`` is not in ``allowed`` (see :func:`allowed_hosts`)."""

    def __init__(self, app: Any, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or host_name(_header(scope, b"host") or b"") in self.allowed:
            await self.app(scope, receive, send)
            return
        await _refuse(scope, receive, send, 400, "this server does not answer for that Host name; add it to "
                      "API_ALLOWED_HOSTS (or set API_KEY) to allow it", "invalid_host")


class BodyLimit:
    """ASGI middleware: read each request body up to ``limit`` bytes, then replay it to the app; 413 past it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        body = None if declared and declared.isdigit() and int(declared) > self.limit else await self._read(receive)
        if body is None:
            await _refuse(scope, receive, send, 413, f"the request body is larger than the server's limit of "
                          f"{self.limit} bytes (API_MAX_BODY_MB)", "request_too_large")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Any) -> bytes | None:
        """The whole body, or ``None`` once it passes the limit (the rest is not read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: an empty body, the app sees the disconnect
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` once, then the real channel (so disconnects still reach the app)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

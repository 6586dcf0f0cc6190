"""``tuneforge api``: an OpenAI-compatible server (FastAPI + uvicorn) over the shared :class:`Engine`.

Routes: ``POST /v1/chat/completions`` (plain, or ``stream: true`` as server-sent events ``data: {chunk}`` ending
with ``data: [DONE]``), ``GET /v1/models``, ``GET /health``.

Concurrency: up to ``MAX_CONCURRENT`` generations run at once, each in its own worker thread with its own streamer
(torch releases the GIL inside its kernels); further requests wait for a free slot. Safety defaults: binds
``API_HOST`` (127.0.0.1 unless opened on purpose); with ``API_KEY`` set every route but ``/health`` (the docs and
unknown paths included) answers 401 without ``Authorization: Bearer KEY`` (compared in constant time); no CORS
unless origins are configured; every refused request gets a 4xx OpenAI-style JSON error, an internal failure a
500 with a generic message (the traceback goes to the server log only).

Abuse: a key-less server answers only loopback ``Host`` names (DNS rebinding; ``guards.py``); bodies, prompt
tokens and ``max_tokens`` x ``n`` are bounded (:class:`Limits`, ``admission.py``); prompts are tokenized in a
worker thread with message texts kept literal (a typed ``<|im_end|>`` stays text; ``literal.py``); a client that
disconnects, streamed or not, stops its generation and frees its slot; shutdown cancels what still runs after
``GRACEFUL_SHUTDOWN_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.templates.base import TemplateError
from .admission import Limits, admit, token_budget
from .engine import Engine, Stream
from .guards import BodyLimit, HostGuard, allowed_hosts
from .protocol import (
    ChatCompletionRequest,
    RequestError,
    chunk_body,
    completion_body,
    completion_id,
    error_body,
    models_body,
)

__all__ = ["ClientGone", "Limits", "create_app", "serve", "token_budget"]

logger = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})
DISCONNECT_POLL_S = 0.1  # how often a waiting non-streamed request checks that its client is still there
GRACEFUL_SHUTDOWN_S = 5  # on Ctrl-C / SIGTERM, requests still running after this are cancelled (generation stops)


class ClientGone(Exception):
    """The client of a non-streamed request disconnected before its answer was ready."""


class Activity:
    """Generations in flight: current count, the peak, and the last 1000 ``(start, end)`` times (monotonic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.spans: deque[tuple[float, float]] = deque(maxlen=1000)

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        start = time.monotonic()
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
                self.spans.append((start, time.monotonic()))


class Slots:
    """``MAX_CONCURRENT`` generation slots; the semaphore is made per event loop (tests may run several)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._by_loop: dict[int, asyncio.Semaphore] = {}

    def get(self) -> asyncio.Semaphore:
        loop = id(asyncio.get_running_loop())
        if loop not in self._by_loop:
            self._by_loop[loop] = asyncio.Semaphore(self.size)
        return self._by_loop[loop]


class BearerAuth:
    """ASGI middleware: deny every HTTP request without the bearer key, except ``OPEN_PATHS``."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key.encode("utf-8")

    def authorized(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        scheme, _, token = value.partition(b" ")
        # compare_digest on bytes of any length: its time does not depend on where the first difference is
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.authorized(scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        body = error_body("missing or wrong API key: send `Authorization: Bearer <API_KEY>`", code="invalid_api_key")
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def create_app(engine: Engine, *, model_name: str = "gpt-3.5-turbo", api_key: str | None = None,
               max_concurrent: int = 1, cors_origins: Sequence[str] | None = None,
               limits: Limits = Limits()) -> FastAPI:
    """The ASGI app serving ``engine`` (``app.state.activity`` records the generations, for monitoring/tests)."""
    app = FastAPI(title="tuneforge", version="1")
    app.state.engine, app.state.model_name, app.state.limits = engine, model_name, limits
    app.state.slots, app.state.activity = Slots(max_concurrent), Activity()
    _add_error_handlers(app)
    _add_routes(app)
    if limits.body_bytes is not None:  # inside the key check: a body is only buffered for an authorized client
        app.add_middleware(BodyLimit, limit=limits.body_bytes)
    if api_key:
        app.add_middleware(BearerAuth, key=api_key)
    if cors_origins:  # added late = outer: preflight requests are answered before authentication
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    if limits.hosts is not None:  # outermost: a rebound name gets nothing, not even a preflight answer
        app.add_middleware(HostGuard, allowed=limits.hosts)
    return app


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    problems = err.errors()
    if not problems:
        return "invalid request", None
    first = problems[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return f"{loc + ': ' if loc else ''}{first.get('msg', 'invalid value')}", loc


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Any, err: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(err)
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(RequestError)
    async def refused(_request: Any, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(TemplateError)
    async def bad_conversation(_request: Any, err: TemplateError) -> JSONResponse:
        return JSONResponse(error_body(f"messages: {err}", param="messages"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Any, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(err.detail), kind=kind), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def crashed(_request: Any, err: Exception) -> JSONResponse:
        logger.exception("request failed")
        return JSONResponse(error_body("internal error; see the server log", kind="server_error"), status_code=500)


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return models_body(app.state.model_name)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        # tokenizing a long prompt takes seconds: in a worker thread, so /health and other clients go on
        prompt, params = await run_in_threadpool(admit, app.state.engine, app.state.limits, body)
        if body.stream:
            stream = Stream(app.state.engine, prompt, params)
            return StreamingResponse(_events(app, stream), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            completions = await cancel_on_disconnect(request, _generate(app, [prompt] * body.n, params))
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; the generation was stopped and its slot freed
        return completion_body(completion_id(), app.state.model_name, completions)


def _tracked_batch(app: FastAPI, prompts: list[list[int]], params: Any, cancel: threading.Event) -> list[Any]:
    with app.state.activity.track():
        return app.state.engine.generate_batch(prompts, params, cancel)


async def _generate(app: FastAPI, prompts: list[list[int]], params: Any) -> list[Any]:
    """Generate in a worker thread once a slot is free; if this task is cancelled (client gone, server stopping)
    the generation is told to stop and the slot is released only after the thread let go of the model."""
    cancel = threading.Event()
    async with app.state.slots.get():
        worker = asyncio.ensure_future(run_in_threadpool(_tracked_batch, app, prompts, params, cancel))
        try:
            return await asyncio.shield(worker)
        finally:
            cancel.set()  # ends generation at its next token when we got here by cancellation
            await asyncio.wait({worker})
            if worker.done() and not worker.cancelled():
                worker.exception()  # retrieved: a failure after cancellation is not logged as "never retrieved"


async def _until_disconnected(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, Any]) -> Any:
    """``await work``, cancelled (``ClientGone``) as soon as the client of ``request`` disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone
    return task.result()


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(app: FastAPI, stream: Stream) -> AsyncIterator[str]:
    """The SSE body: a role chunk, content chunks, a final chunk with ``finish_reason``, then ``[DONE]``."""
    cid, created, model = completion_id(), int(time.time()), app.state.model_name
    async with app.state.slots.get():
        with app.state.activity.track():
            try:
                yield _sse(chunk_body(cid, model, created, {"role": "assistant", "content": ""}))
                async for delta in iterate_in_threadpool(iter(stream)):
                    yield _sse(chunk_body(cid, model, created, {"content": delta}))
                yield _sse(chunk_body(cid, model, created, {}, stream.finish_reason or "stop"))
            except Exception:  # headers are sent: report in-band instead of a broken connection
                logger.exception("streamed generation failed")
                yield _sse(error_body("internal error; see the server log", kind="server_error"))
            finally:
                stream.cancel.set()  # at once: a cancelled request must not leave the generation running
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(stream.close)
    yield _sse("[DONE]")


def cors_origins_of(cfg: Any) -> list[str]:
    """Allowed CORS origins from ``API_CORS_ORIGINS`` (comma-separated); none (no CORS) by default."""
    value = cfg.env.API_CORS_ORIGINS
    if not value:
        return []
    return [o.strip() for o in (value.split(",") if isinstance(value, str) else value) if o.strip()]


def limits_of(cfg: Any) -> Limits:
    """The request limits set by the ``API_*`` keys of ``cfg``."""
    env = cfg.env
    return Limits(body_bytes=int(env.API_MAX_BODY_MB * 2**20), prompt_tokens=env.API_MAX_PROMPT_TOKENS,
                  total_tokens=env.API_MAX_TOTAL_TOKENS,
                  hosts=allowed_hosts(env.API_ALLOWED_HOSTS, bind=env.API_HOST, has_key=bool(env.API_KEY)))


def app_from_config(cfg: Any) -> FastAPI:
    """Load the model of ``cfg`` and build the app with the ``API_*`` / ``MAX_CONCURRENT`` settings."""
    env = cfg.env
    return create_app(Engine.from_config(cfg), model_name=env.API_MODEL_NAME, api_key=env.API_KEY,
                      max_concurrent=env.MAX_CONCURRENT, cors_origins=cors_origins_of(cfg), limits=limits_of(cfg))


def server_config(app: FastAPI, cfg: Any) -> Any:
    """The ``uvicorn.Config`` of ``serve``: on shutdown, requests still running after ``GRACEFUL_SHUTDOWN_S``
    are cancelled, which stops their generations (no waiting for 2000 tokens to finish)."""
    import uvicorn

    env = cfg.env
    return uvicorn.Config(app, host=env.API_HOST, port=env.API_PORT, access_log=env.API_VERBOSE,
                          log_level="info" if env.API_VERBOSE else "warning",
                          timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


def serve(cfg: Any) -> None:
    """Run the server on ``API_HOST:API_PORT`` until interrupted."""
    import uvicorn

    env = cfg.env
    if env.API_HOST not in ("127.0.0.1", "localhost", "::1") and not env.API_KEY:
        logger.warning("serving on %s without API_KEY: anyone who can reach port %d can use the model",
                       env.API_HOST, env.API_PORT)
    app = app_from_config(cfg)
    logger.info("OpenAI-compatible API on http://%s:%d/v1 (model name %r)", env.API_HOST, env.API_PORT,
                env.API_MODEL_NAME)
    uvicorn.Server(server_config(app, cfg)).run()

"""``tuneforge api``: an OpenAI-compatible server (FastAPI + uvicorn) over the shared :class:`Engine`.

Routes: ``POST /v1/chat/completions`` (plain, or ``stream: true`` as server-sent events ``data: {chunk}`` ending
with ``data: [DONE]``), ``GET /v1/models``, ``GET /health``.

Concurrency: up to ``MAX_CONCURRENT`` generations run at once, each in its own worker thread with its own streamer
(torch releases the GIL inside its kernels); further requests wait for a free slot. Safety defaults: binds
``API_HOST`` (127.0.0.1 unless opened on purpose); with ``API_KEY`` set every route but ``/health`` (the docs and
unknown paths included) answers 401 without ``Authorization: Bearer KEY`` (compared in constant time); no CORS
unless origins are configured; every refused request gets a 4xx OpenAI-style JSON error, an internal failure a
500 with a generic message (the traceback goes to the server log only).
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
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.templates.base import TemplateError
from .engine import Engine, Stream
from .protocol import (
    ChatCompletionRequest,
    RequestError,
    chunk_body,
    completion_body,
    completion_id,
    error_body,
    models_body,
    to_conversation,
)

logger = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})


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
               max_concurrent: int = 1, cors_origins: Sequence[str] | None = None) -> FastAPI:
    """The ASGI app serving ``engine`` (``app.state.activity`` records the generations, for monitoring/tests)."""
    app = FastAPI(title="tuneforge", version="1")
    app.state.engine, app.state.model_name = engine, model_name
    app.state.slots, app.state.activity = Slots(max_concurrent), Activity()
    _add_error_handlers(app)
    _add_routes(app)
    if api_key:
        app.add_middleware(BearerAuth, key=api_key)
    if cors_origins:  # added last = outermost: preflight requests are answered before authentication
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
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
    async def chat_completions(request: ChatCompletionRequest) -> Any:
        engine: Engine = app.state.engine
        messages, system = to_conversation(request)
        prompt = engine.encode(messages, system)
        budget = token_budget(engine, len(prompt), request.token_limit())
        params = engine.params.override(max_tokens=budget, temperature=request.temperature,
                                        top_p=request.top_p, stop=request.stop_list())
        if request.stream:
            stream = Stream(engine, prompt, params)
            return StreamingResponse(_events(app, stream), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        async with app.state.slots.get():
            completions = await run_in_threadpool(_tracked_batch, app, [prompt] * request.n, params)
        return completion_body(completion_id(), app.state.model_name, completions)


def token_budget(engine: Engine, prompt_len: int, requested: int | None) -> int:
    """Tokens to generate: the request's ``max_tokens`` (else the config's), never past the model's context, so
    no request can keep a worker busy without end. A prompt that fills the context is refused (400)."""
    wanted = requested if requested is not None else engine.params.new_tokens(prompt_len)
    limit = getattr(getattr(engine.model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return wanted
    if prompt_len >= limit:
        raise RequestError(f"the prompt is {prompt_len} tokens; this model reads at most {limit}",
                           param="messages", code="context_length_exceeded")
    return min(wanted, limit - prompt_len)


def _tracked_batch(app: FastAPI, prompts: list[list[int]], params: Any) -> list[Any]:
    with app.state.activity.track():
        return app.state.engine.generate_batch(prompts, params)


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


def app_from_config(cfg: Any) -> FastAPI:
    """Load the model of ``cfg`` and build the app with the ``API_*`` / ``MAX_CONCURRENT`` settings."""
    env = cfg.env
    return create_app(Engine.from_config(cfg), model_name=env.API_MODEL_NAME, api_key=env.API_KEY,
                      max_concurrent=env.MAX_CONCURRENT, cors_origins=cors_origins_of(cfg))


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
    uvicorn.run(app, host=env.API_HOST, port=env.API_PORT, access_log=env.API_VERBOSE,
                log_level="info" if env.API_VERBOSE else "warning")

"""The OpenAI-compatible server, live on 127.0.0.1 and driven by the real ``openai`` client."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from infer_kit import make_cfg

from tuneforge.infer.api import create_app
from tuneforge.infer.engine import Engine

KEY = "test-key-123"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """``(base_url, app)`` of a live uvicorn server (key required, 8 slots) in a background thread."""
    import uvicorn

    cfg = make_cfg(tiny_model_dir, do_sample=True, temperature=1.0, max_new_tokens=16)
    app = create_app(Engine.from_config(cfg), model_name="tiny-chat", api_key=KEY, max_concurrent=8)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_health_and_models(server, client):
    assert httpx.get(f"{server[0]}/health").json() == {"status": "ok"}
    assert [m.id for m in client.models.list().data] == ["tiny-chat"]


def test_completion(client):
    done = client.chat.completions.create(model="tiny-chat", messages=HI, max_tokens=5, temperature=0)
    [choice] = done.choices
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert done.usage.completion_tokens <= 5 and done.usage.prompt_tokens > 0
    again = client.chat.completions.create(model="tiny-chat", messages=HI, max_tokens=5, temperature=0)
    assert again.choices[0].message.content == choice.message.content  # temperature 0 is greedy


def test_streaming_equals_plain(client):
    plain = client.chat.completions.create(model="m", messages=HI, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="m", messages=HI, max_tokens=8, temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


def test_sse_wire_format(server):
    body = {"messages": HI, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server[0]}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [line for line in answer.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")


def test_n_and_stop(client):
    two = client.chat.completions.create(model="m", messages=HI, n=2, max_tokens=6)
    assert [c.index for c in two.choices] == [0, 1]
    base = client.chat.completions.create(model="m", messages=HI, max_tokens=12, temperature=0).choices[0]
    stop = base.message.content[3:6]
    cut = client.chat.completions.create(model="m", messages=HI, max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == base.message.content[:base.message.content.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_wrong_or_missing_key_is_401(server):
    url = server[0]
    bad = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="m", messages=HI, max_tokens=2)
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/docs"),
                         ("GET", "/openapi.json"), ("GET", "/no/such/route")]:
        answer = httpx.request(method, f"{url}{path}", json={"messages": HI})
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "invalid_api_key"


def test_every_route_but_health_needs_the_key(server):
    url, app = server
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            answer = httpx.request(method, f"{url}{route.path}")
            assert (answer.status_code == 401) == (route.path != "/health"), (method, route.path)


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"model": "m"}',
    b'{"messages": []}',
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 7}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}',
    b'{"messages": [{"role": "wizard", "content": "hi"}]}',
    b'{"messages": [{"role": "assistant", "content": "hi"}]}',
    b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "n": 2, "stream": true}',
])
def test_malformed_requests_get_a_4xx_json_error(server, body):
    answer = httpx.post(f"{server[0]}/v1/chat/completions", content=body,
                        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500
    error = answer.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]


def test_unknown_route_with_key_is_404_json(server):
    answer = httpx.get(f"{server[0]}/v2/nothing", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 404 and "error" in answer.json()


def test_eight_concurrent_requests_overlap(server, client):
    _, app = server
    activity = app.state.activity
    before = len(activity.spans)

    def ask(i: int) -> str:
        return client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q{i}"}],
                                              max_tokens=16).choices[0].finish_reason

    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(ask, range(8)))
    assert len(reasons) == 8
    spans = list(activity.spans)[before:]
    assert len(spans) == 8
    overlapping = sum(1 for i, (s1, e1) in enumerate(spans) for s2, e2 in spans[i + 1:] if s1 < e2 and s2 < e1)
    assert overlapping >= 1 and activity.peak >= 2


def test_a_client_that_leaves_mid_stream_frees_its_worker(server):
    url, app = server
    activity = app.state.activity
    body = {"messages": HI, "max_tokens": 2000, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}) as answer:
        lines = answer.iter_lines()
        assert next(lines).startswith("data: ")
        assert activity.active == 1
    deadline = time.monotonic() + 10
    while activity.active:
        assert time.monotonic() < deadline, "generation kept running after the client left"
        time.sleep(0.05)
    start, end = activity.spans[-1]
    assert end - start < 8  # 2000 tokens would take far longer: it was cancelled


def test_an_internal_failure_is_a_generic_500(tiny_model_dir):
    from fastapi.testclient import TestClient

    class Broken(Engine):
        def generate_batch(self, *args, **kwargs):
            raise RuntimeError("secret internal detail")

    engine = Engine.from_config(make_cfg(tiny_model_dir))
    broken = Broken(engine.model, engine.tokenizer, engine.template, engine.params)
    with TestClient(create_app(broken), raise_server_exceptions=False) as local:
        answer = local.post("/v1/chat/completions", json={"messages": HI})
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error"
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_token_budget_never_passes_the_context(server):
    from tuneforge.infer.api import token_budget
    from tuneforge.infer.protocol import RequestError

    engine = server[1].state.engine
    limit = engine.model.config.max_position_embeddings
    assert token_budget(engine, limit - 10, 10**9) == 10
    assert token_budget(engine, 5, 7) == 7
    assert token_budget(engine, 5, None) == 16  # the config's max_new_tokens
    with pytest.raises(RequestError, match="at most"):
        token_budget(engine, limit, 1)

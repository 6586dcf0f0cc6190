"""Offline start-up: with no network a hub id fails in under 3 s with one message; the hub is probed once."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from model_helpers import make_cfg

from tuneforge.model import ModelLoadError, load_model, load_tokenizer, offline


@pytest.fixture
def no_hub(monkeypatch):
    """The hub endpoint is a closed local port and no offline variable is set: only the probe can tell."""
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: connections are refused
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if the test run had no HF_HUB_OFFLINE either
    offline.probe_failed.cache_clear()
    yield port
    offline.probe_failed.cache_clear()


def test_the_offline_setting_skips_the_probe(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(offline, "can_connect", lambda *_: pytest.fail("probed despite HF_HUB_OFFLINE"))
    assert offline.local_only("org/model")
    assert not offline.local_only(str(tmp_path))  # a local folder never needs the hub


def test_a_refused_endpoint_is_probed_once(no_hub, monkeypatch):
    calls = []
    real = offline.can_connect
    monkeypatch.setattr(offline, "can_connect", lambda *a: calls.append(a) or real(*a))
    assert offline.probe_target() == ("127.0.0.1", no_hub)
    assert offline.hub_unreachable() and offline.hub_unreachable()
    assert len(calls) == 1


def test_a_silent_endpoint_times_out(monkeypatch):
    def silent(*_args, **_kwargs):
        time.sleep(1)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "create_connection", silent)
    started = time.monotonic()
    assert not offline.can_connect("hub.invalid", 443, timeout=0.3)
    assert time.monotonic() - started < 2


def test_the_proxy_is_probed_when_set(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("https_proxy", "http://proxy.corp:3128")
    assert offline.probe_target() == ("proxy.corp", 3128)


def _count_connections(monkeypatch) -> list:
    """Every TCP connection attempt from now on: the probe, and at most one request that finds the port closed;
    the retries this replaced made dozens over a minute."""
    attempts: list = []
    real = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: attempts.append(a) or real(*a, **k))
    return attempts


def test_a_hub_id_without_network_fails_fast_with_one_message(no_hub, caplog, monkeypatch):
    cfg = make_cfg("tuneforge-test/no-such-model")
    attempts = _count_connections(monkeypatch)
    with caplog.at_level(logging.INFO), pytest.raises(ModelLoadError, match="cannot be reached"):
        load_tokenizer(cfg)
    assert len(attempts) <= 2, f"{len(attempts)} connection attempts: the hub was retried instead of probed once"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "retries or warnings were printed"


def test_an_adapter_typo_fails_fast(no_hub, tiny_model_dir, tiny_tokenizer, monkeypatch):
    # an owner/name typo looks like a hub id to `check` (a bare name is already a check error); loading must fail fast
    cfg = make_cfg(tiny_model_dir, adapter_name_or_path="me/my-adapter-typo", finetuning_type="lora")
    attempts = _count_connections(monkeypatch)
    with pytest.raises(ModelLoadError, match="my-adapter-typo"):
        load_model(cfg, tiny_tokenizer, is_trainable=False)
    assert len(attempts) <= 2, f"{len(attempts)} connection attempts: the hub was retried instead of probed once"


def test_a_cached_hub_adapter_resolves_to_its_snapshot_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--org--adapter"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123" / "sub"
    snapshot.mkdir(parents=True)
    (snapshot / "adapter_config.json").write_text("{}")
    found = offline.offline_folder("org/adapter", "adapter_config.json", subfolder="sub", cache_dir=str(tmp_path))
    assert found == str(repo / "snapshots" / "abc123")
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        offline.offline_folder("org/other", "adapter_config.json", cache_dir=str(tmp_path))

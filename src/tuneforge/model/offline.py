"""Is the Hugging Face hub reachable? Asked once per process, answered in at most ``PROBE_TIMEOUT_S``.

Without network, every hub lookup of ``from_pretrained`` retries for about a minute, printing each retry. Instead
the loader asks :func:`local_only` first: ``HF_HUB_OFFLINE=1``, or a hub endpoint (or proxy) that does not accept a
TCP connection within ``PROBE_TIMEOUT_S``, means "use the local cache only" (``local_files_only=True``), so a
name that is not cached fails at once with one message. Local folders never trigger the probe.

>>> local_only("Qwen/Qwen2.5-0.5B")    # no network: True after one probe; later calls reuse the answer
True
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 1.5  # a reachable endpoint answers a TCP handshake far faster; DNS included
TRUE_VALUES = ("1", "true", "yes", "y", "on")


def offline_by_setting() -> bool:
    """``HF_HUB_OFFLINE`` (or transformers' ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in TRUE_VALUES
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def probe_target() -> tuple[str, int]:
    """``(host, port)`` a hub request connects to first: the HTTPS proxy when one is set, else the endpoint."""
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(endpoint.scheme or "https")
    target = urlparse(proxy if proxy and "://" in proxy else f"http://{proxy}") if proxy else endpoint
    default_port = 443 if target.scheme == "https" else 80
    return target.hostname or "huggingface.co", target.port or default_port


def can_connect(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` s, name resolution included (it runs in
    a thread, since ``getaddrinfo`` itself has no timeout)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=connect, daemon=True, name="tuneforge-hub-probe")
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def hub_unreachable() -> bool:
    """True when the hub cannot be used: offline by setting, or the (one) probe failed."""
    return offline_by_setting() or probe_failed()


@functools.cache
def probe_failed() -> bool:
    """The probe of :func:`probe_target`, run once per process."""
    host, port = probe_target()
    if can_connect(host, port):
        return False
    # debug only: a name missing from the cache then fails with one error that says the hub is unreachable
    logger.debug("the Hugging Face hub (%s:%d) cannot be reached: models are read from the local cache only "
                 "(set HF_HUB_OFFLINE=1 to skip this check)", host, port)
    return True


def local_only(name: str | None) -> bool:
    """Whether loading ``name`` must use the local cache only: it is not a local path and the hub is unreachable."""
    if not name or Path(name).expanduser().exists():
        return False
    return hub_unreachable()


def offline_folder(name: str, filename: str, *, subfolder: str | None = None, cache_dir: str | None = None) -> str:
    """``name`` itself, unless it must come from the local cache (:func:`local_only`): then the cached snapshot
    folder holding ``subfolder/filename``, or a ModelLoadError at once. For loaders that cannot be told
    ``local_files_only`` themselves (PEFT's adapter lookup)."""
    if not local_only(name):
        return name
    from huggingface_hub import try_to_load_from_cache

    from .errors import ModelLoadError

    inner = f"{subfolder.strip('/')}/{filename}" if subfolder else filename
    hit = try_to_load_from_cache(name, inner, cache_dir=cache_dir)
    if not isinstance(hit, str):
        raise ModelLoadError(f"{name!r} is not a local folder, the Hugging Face hub cannot be reached (no network, "
                             f"or HF_HUB_OFFLINE is set) and it is not in the local cache; check the path or "
                             f"download it on a machine with network access (hf download {name})")
    return str(Path(hit).parents[inner.count("/")])

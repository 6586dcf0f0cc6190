"""Load and abuse test of ``tuneforge api`` on 127.0.0.1 with the tiny shipped model (CPU is enough).

The server runs in a child process (its RSS is read from /proc) with the production limits of ``limits_of`` (the
``API_*`` defaults, no key: loopback Host names only). The parent sends, with a bounded count and time:

1. ``--requests`` chat completions (``max_tokens`` 32, every 4th streamed) from ``--clients`` threads: latency
   percentiles and requests/s;
2. the same wave again while abusers send 10 MB bodies (413), 3 MB prompts (400 before tokenizing), foreign
   ``Host`` names (400) and plain requests they abandon after 0.3 s: latency of the normal clients and of
   ``/health`` under abuse, and whether the slots were freed;
3. RSS of the server before, after each phase, and its peak (VmHWM).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=src .venv/bin/python bench/api_load.py --requests 64 --clients 16

Prints a markdown table and writes ``--json`` (default /tmp/api_load.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HI = [{"role": "user", "content": "hello there"}]


def serve(model_dir: str, port: int, slots: int) -> None:
    """Child process: the API over the tiny model with the production limits."""
    import uvicorn

    from tuneforge.config.loader import resolve
    from tuneforge.infer.api import app_from_config

    keys = {"model_name_or_path": model_dir, "template": "chatml", "do_sample": False, "report_to": "none"}
    cfg = resolve(keys, environ={"MAX_CONCURRENT": str(slots), "API_VERBOSE": "0"}).config
    uvicorn.run(app_from_config(cfg), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def rss_mib(pid: int) -> dict[str, float]:
    """``{"rss": current, "peak": VmHWM}`` of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss": int(fields["VmRSS"].split()[0]) / 1024, "peak": int(fields["VmHWM"].split()[0]) / 1024}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ask(url: str, i: int) -> float:
    """One completion (every 4th streamed); its latency in seconds (raises on a non-200 answer)."""
    body = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 32, "stream": i % 4 == 0}
    started = time.monotonic()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as answer:
        answer.raise_for_status()
        for _ in answer.iter_bytes():
            pass
    return time.monotonic() - started


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": max(values), "n": len(values)}


def wave(url: str, requests: int, clients: int) -> dict[str, Any]:
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda i: ask(url, i), range(requests)))
    took = time.monotonic() - started
    return {**percentiles(latencies), "req_per_s": requests / took, "seconds": took}


def abuse(url: str, stop: threading.Event, counts: dict[str, Any]) -> None:
    """Hostile traffic until ``stop``: every kind once per round; answers are counted by status code."""
    port = url.rsplit(":", 1)[1]
    big_prompt = {"messages": [{"role": "user", "content": "spam " * 600_000}]}  # 3 MB: under the body limit
    kinds = {
        "10MB body": lambda: httpx.post(f"{url}/v1/chat/completions", content=b"x" * (10 * 2**20),
                                        headers={"Content-Type": "application/json"}, timeout=60),
        "3MB prompt": lambda: httpx.post(f"{url}/v1/chat/completions", json=big_prompt, timeout=60),
        "foreign Host": lambda: httpx.get(f"{url}/v1/models", headers={"Host": f"evil.example:{port}"}, timeout=60),
        "abandoned": lambda: httpx.post(f"{url}/v1/chat/completions", json={"messages": HI, "max_tokens": 900},
                                        timeout=0.3),
    }
    while not stop.is_set():
        for name, send in kinds.items():
            try:
                code = str(send().status_code)
            except httpx.TimeoutException:
                code = "client left"
            counts.setdefault(name, {}).setdefault(code, 0)
            counts[name][code] += 1


def health_latency(url: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        httpx.get(f"{url}/health", timeout=60).raise_for_status()
        out.append(time.monotonic() - started)
        time.sleep(0.05)


def under_abuse(url: str, requests: int, clients: int, abusers: int) -> dict[str, Any]:
    stop, counts, health = threading.Event(), {}, []
    threads = [threading.Thread(target=abuse, args=(url, stop, counts)) for _ in range(abusers)]
    threads.append(threading.Thread(target=health_latency, args=(url, stop, health)))
    for thread in threads:
        thread.start()
    try:
        result = wave(url, requests, clients)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    return {**result, "health": percentiles(health), "abuse": counts}


def start_server(model_dir: str, slots: int) -> tuple[multiprocessing.Process, str]:
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(model_dir, port, slots), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not proc.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def row(name: str, r: dict[str, Any]) -> str:
    return (f"| {name} | {r['n']} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | "
            f"{r.get('req_per_s', 0):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--abusers", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8, help="MAX_CONCURRENT of the server")
    parser.add_argument("--json", default="/tmp/api_load.json")
    args = parser.parse_args()
    from tuneforge.testing import save_tiny_model

    model_dir = str(save_tiny_model(Path(tempfile.mkdtemp(prefix="api_load_")) / "tiny"))
    proc, url = start_server(model_dir, args.slots)
    try:
        memory = {"start": rss_mib(proc.pid)}
        warm = wave(url, 4, 2)
        memory["warm"] = rss_mib(proc.pid)
        normal = wave(url, args.requests, args.clients)
        memory["after load"] = rss_mib(proc.pid)
        hostile = under_abuse(url, args.requests, args.clients, args.abusers)
        memory["after abuse"] = rss_mib(proc.pid)
        time.sleep(1)
        idle = httpx.get(f"{url}/health", timeout=10).status_code == 200
        after = wave(url, 8, 8)  # the abandoned requests freed their slots: this wave is as fast as before
    finally:
        proc.terminate()
        proc.join(timeout=30)
    report = {"warm": warm, "normal": normal, "abuse": hostile, "after": after, "memory_mib": memory, "ok": idle,
              "args": vars(args)}
    Path(args.json).write_text(json.dumps(report, indent=2))
    print("| phase | requests | p50 s | p90 s | p99 s | max s | req/s |\n|---|---|---|---|---|---|---|")
    print("\n".join([row("normal load", normal), row("same load under abuse", hostile),
                     row("/health under abuse", hostile["health"]), row("after abuse (8 x 8)", after)]))
    print("\nabuse answers:", json.dumps(hostile["abuse"]))
    print("server RSS MiB (current / peak):", ", ".join(f"{k} {v['rss']:.0f} / {v['peak']:.0f}"
                                                       for k, v in memory.items()))


if __name__ == "__main__":
    main()

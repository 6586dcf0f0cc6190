"""``tuneforge api CONFIG [overrides]``: an OpenAI-compatible server on ``API_HOST:API_PORT`` (127.0.0.1:8000)."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from ..infer.errors import InferError
from .runner import run_command


def _api(cfg: Any, _args: argparse.Namespace) -> int:
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise InferError(f"the API server needs {' and '.join(missing)}: pip install 'tuneforge[api]'")
    from ..infer.api import serve

    serve(cfg)
    return 0


def run(args: argparse.Namespace) -> int:
    return run_command(args, _api)

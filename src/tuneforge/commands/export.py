"""``tuneforge export CONFIG [--force] [overrides]``: merge the adapters and write a plain model to ``export_dir``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .runner import run_command


def _export(cfg: Any, args: argparse.Namespace) -> int:
    from ..infer.export import export_model

    dest = export_model(cfg, force=bool(getattr(args, "force", False)))
    sys.stdout.write(f"{dest}\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_command(args, _export)

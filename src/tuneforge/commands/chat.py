"""``tuneforge chat CONFIG [overrides]``: chat in the terminal with the model (base + adapters) of a config.

Piped input (not a terminal) is scripted mode: one message per line in, one answer per line out (see
``tuneforge.infer.chat``); ``clear`` forgets the history, ``exit`` ends.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .runner import run_command


def _chat(cfg: Any, _args: argparse.Namespace) -> int:
    from ..infer.chat import chat_from_config

    return chat_from_config(cfg, sys.stdin, sys.stdout, sys.stderr)


def run(args: argparse.Namespace) -> int:
    return run_command(args, _chat)

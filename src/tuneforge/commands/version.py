"""``tuneforge version``."""

from __future__ import annotations

import argparse

from .. import __version__


def run(args: argparse.Namespace) -> int:
    print(f"tuneforge {__version__}")
    return 0

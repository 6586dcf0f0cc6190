"""Pieces every command shares: resolving the config and reporting bad input without a traceback."""

from __future__ import annotations

import argparse
import sys

from ..config.diagnostics import ConfigError
from ..config.loader import Resolution, load
from ..config.report import render_diagnostics


def resolve_args(args: argparse.Namespace) -> Resolution:
    """Resolve ``args.config`` plus ``args.overrides``; raises ConfigError for an unreadable file."""
    argv = ([args.config] if args.config else []) + list(args.overrides or [])
    return load(argv)


def report_config_error(err: ConfigError) -> int:
    render_diagnostics(err.diagnostics, sys.stderr, sys.stderr.isatty())
    return 2


def resolve_or_exit(args: argparse.Namespace) -> Resolution | int:
    """The Resolution when it has no error; otherwise print every diagnostic and return exit code 2."""
    try:
        res = resolve_args(args)
    except ConfigError as err:
        return report_config_error(err)
    if res.errors:
        render_diagnostics(res.diagnostics, sys.stderr, sys.stderr.isatty())
        return 2
    return res

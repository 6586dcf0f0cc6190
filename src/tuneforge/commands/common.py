"""Pieces every command shares: resolving the config and reporting bad input without a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from ..config.diagnostics import ConfigError
from ..config.loader import Resolution, load
from ..config.report import render_diagnostics
from ..errors import TuneforgeError


def resolve_args(args: argparse.Namespace) -> Resolution:
    """Resolve ``args.config`` plus ``args.overrides``; raises ConfigError for an unreadable file."""
    argv = ([args.config] if args.config else []) + list(args.overrides or [])
    return load(argv)


def setup_logging(level: str) -> None:
    """Log lines go to stderr (stdout carries only answers and results)."""
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="[tuneforge] %(levelname)s %(message)s")
    # huggingface_hub has its own stderr handler and also propagates to ours: every hub warning came out twice
    logging.getLogger("huggingface_hub").propagate = False


def report_config_error(err: ConfigError) -> int:
    render_diagnostics(err.diagnostics, sys.stderr, sys.stderr.isatty())
    return 2


def resolve_or_exit(args: argparse.Namespace, tolerate: frozenset[str] = frozenset()) -> Resolution | int:
    """The Resolution when it has no error (errors of the rules in ``tolerate`` do not count: a command that plans
    for another machine, like ``estimate``, ignores this machine's facts); otherwise print every diagnostic and
    return exit code 2."""
    try:
        res = resolve_args(args)
    except ConfigError as err:
        return report_config_error(err)
    if any(d.rule not in tolerate for d in res.errors):
        render_diagnostics(res.diagnostics, sys.stderr, sys.stderr.isatty())
        return 2
    return res


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input, not a bug: exit 2, no traceback (every one derives from
    :class:`TuneforgeError`; a foreign exception that is a user error gets mapped here, in this one place)."""
    return (TuneforgeError,)


def print_user_error(err: BaseException) -> None:
    """Print a user error to stderr: every diagnostic of a ConfigError, else the message and its detail lines."""
    if isinstance(err, ConfigError):
        report_config_error(err)
        return
    sys.stderr.write(f"error: {err}\n")
    for line in getattr(err, "messages", [])[:20]:
        sys.stderr.write(f"  {line}\n")


def run_guarded(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; a user mistake prints its message and returns 2 instead of a traceback."""
    try:
        return fn(args)
    except _user_errors() as err:
        print_user_error(err)
        return 2

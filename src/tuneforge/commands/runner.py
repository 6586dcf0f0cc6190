"""What the commands share above train and infer: resolve the config, log to stderr, map errors to exit 2 (chat,
export, api, predict), and what a stage is handed from the layers above it (``stage_hooks``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def run_command(args: argparse.Namespace, body: Callable[[Any, argparse.Namespace], int]) -> int:
    """Resolve ``args`` (exit 2 on config errors, warnings shown on stderr), set up logging, run ``body(cfg, args)``;
    an ``InferError`` or any other user error of the project prints its message and returns 2."""
    from .common import resolve_or_exit, run_guarded, setup_logging

    def guarded(ns: argparse.Namespace) -> int:
        res = resolve_or_exit(ns)
        if isinstance(res, int):
            return res
        warnings = [d for d in res.diagnostics if d.level == "warning"]
        if warnings:
            from ..config.report import render_diagnostics

            render_diagnostics(warnings, sys.stderr, sys.stderr.isatty())
        setup_logging(res.config.env.TUNEFORGE_VERBOSITY)
        return body(res.config, ns)

    return run_guarded(guarded, args)


def stage_hooks(cfg: Any) -> dict[str, Any]:
    """Keyword arguments the commands layer gives a stage's ``run``: a predictor for stages that generate
    predictions after training (catalog ``predicts``), so that ``train`` never imports ``infer``."""
    from ..catalog import stage

    if not stage(cfg.finetuning.stage).predicts:
        return {}
    from ..infer.predict import predict_and_save

    return {"predict": predict_and_save}

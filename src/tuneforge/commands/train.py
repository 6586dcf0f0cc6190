"""``tuneforge train CONFIG [overrides]``: check the config, then run its stage (pt, sft, rm, dpo, kto, ppo).

Exit codes: 0 done (also when stopped by SIGTERM/Ctrl-C after saving a checkpoint), 2 bad config or data,
1 the run failed (e.g. too many non-finite steps).
"""

from __future__ import annotations

import argparse
import sys

from ..config.report import render_diagnostics
from .common import resolve_or_exit, run_guarded, setup_logging


def _nothing_to_do(cfg) -> bool:
    ev = cfg.evaluation
    return not (cfg.training.do_train or ev.do_eval or ev.do_predict)


def _run(args: argparse.Namespace) -> int:
    res = resolve_or_exit(args)
    if isinstance(res, int):
        return res
    cfg = res.config
    if res.diagnostics:
        render_diagnostics(res.diagnostics, sys.stderr, sys.stderr.isatty())
    if _nothing_to_do(cfg):
        sys.stderr.write("error: do_train, do_eval and do_predict are all false: nothing to do "
                         "(set do_train: true)\n")
        return 2
    from ..estimate.guard import memory_refusal
    from ..launcher import relaunch, should_relaunch

    if refusal := memory_refusal(cfg, should_relaunch(cfg.env), args.config):
        sys.stderr.write(f"error: {refusal}\n")
        return 2
    if should_relaunch(cfg.env):
        return relaunch(cfg.env, ["train", *([args.config] if args.config else []), *args.overrides])
    setup_logging(cfg.env.TUNEFORGE_VERBOSITY)
    from ..train import stage_runner
    from .runner import stage_hooks

    metrics = stage_runner(cfg.finetuning.stage)(cfg, **stage_hooks(cfg))
    if "interrupted_by" in metrics:
        sys.stderr.write(f"stopped by {metrics['interrupted_by']}; resume with resume_from_checkpoint=true\n")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..train.core.callbacks import TrainingError

    try:
        return run_guarded(_run, args)
    except TrainingError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1

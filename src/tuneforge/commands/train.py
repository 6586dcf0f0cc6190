"""``tuneforge train CONFIG [overrides]``: check the config, then run its stage (pt, sft, rm, dpo, kto, ppo).

Exit codes: 0 done; 2 bad config, data or output_dir (not empty, in use, unwritable); 1 the run failed (too many
non-finite steps, or the disk filled up: one line naming the path and the free space); 143 stopped by SIGTERM and
130 by SIGINT (Ctrl-C), as shells report them, after the checkpoint of the current step was saved.
"""

from __future__ import annotations

import argparse
import sys

from ..config.report import render_diagnostics
from .common import resolve_or_exit, run_guarded, setup_logging

# A run stopped by a signal (after saving its checkpoint) exits as a shell reports a process killed by it, so
# schedulers never read it as finished.
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


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
    from ..train.core.folder import check_output_dir

    if cfg.training.do_train and cfg.monitoring.output_dir:
        check_output_dir(cfg.monitoring.output_dir)  # before data and model load

    from .runner import stage_hooks

    metrics = stage_runner(cfg.finetuning.stage)(cfg, **stage_hooks(cfg))
    stopped = metrics.get("interrupted_by")
    if stopped:
        sys.stderr.write(f"stopped by {stopped}; resume with resume_from_checkpoint=true\n")
        return SIGNAL_EXIT.get(stopped, 1)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..train.core.callbacks import TrainingError
    from ..train.core.checkpoints import OutputWriteError

    try:
        return run_guarded(_run, args)
    except (TrainingError, OutputWriteError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 1

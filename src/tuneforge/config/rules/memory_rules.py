"""The memory estimate of a training config (``tuneforge estimate``): one line, and a warning when it won't fit.

Silent when the model's shape is unknown here (no config.json, not a published shape) or nothing is trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from . import Ctx, Finding, rule


@cache
def _hardware():
    """The GPU this machine has (nvidia-smi; no CUDA context), once per process; None without one."""
    from ...estimate.hardware import detect

    return detect()


def _estimate(ctx: Ctx):
    from ...estimate import ArchError, estimate_config

    if not ctx.tr.do_train or not ctx.model.model_name_or_path:
        return None
    try:
        return estimate_config(ctx.cfg, _hardware())
    except (ArchError, ValueError):
        return None


@rule("notice")
def memory_estimate(ctx: Ctx) -> Iterator[Finding]:
    from ...estimate.report import one_line

    est = _estimate(ctx)
    if est is not None:
        yield "ignore_memory_estimate", one_line(est) + " (by component, for any card: tuneforge estimate CONFIG " \
                                                        "--gpu NAME)"


@rule("warning")
def memory_fits(ctx: Ctx) -> Iterator[Finding]:
    """Predicted reserved memory plus CUDA context above the detected card's memory."""
    est = _estimate(ctx)
    if est is None or est.fits is not False or ctx.model.ignore_memory_estimate:
        return
    hw = est.hardware
    yield "per_device_train_batch_size", (
        f"predicted {est.memory.device_total_gib:.1f} GiB per device is more than the {hw.memory_gib:.1f} GiB of "
        f"{hw.name}: training would run out of memory; `tuneforge estimate CONFIG --fit` prints a config that "
        "fits (train refuses to start unless ignore_memory_estimate: true)")

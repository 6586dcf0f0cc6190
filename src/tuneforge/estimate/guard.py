"""The memory check ``tuneforge train`` runs before it loads anything on a GPU machine.

Example: a 7B full fine-tune on a 24 GB card is refused with the predicted peak, the free memory and the
``--fit`` command, unless ``ignore_memory_estimate: true``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from . import ArchError, estimate_config
from .hardware import detect, free_memory_gib


def memory_refusal(cfg: Any, launching: bool, config_path: str | None = None) -> str | None:
    """Why training must not start here, or None: it fits, no GPU is seen, the shape is unknown, nothing is
    trained, a torchrun child is running (its parent checked; other ranks' memory is in use), or the user opted out.

    ``launching``: torchrun will start one process per GPU (NPROC_PER_NODE of them); otherwise one process.
    """
    if cfg.model.ignore_memory_estimate or not cfg.training.do_train or "LOCAL_RANK" in os.environ:
        return None
    hw, free = detect(), free_memory_gib()
    if hw is None or not free:
        return None
    world = (cfg.env.NPROC_PER_NODE or hw.gpus) if launching else 1
    available = min(free[:max(1, world)])
    try:
        est = estimate_config(cfg, replace(hw, gpus=world, memory_gib=available))
    except ArchError:
        return None
    if est.fits:
        return None
    path = config_path or "CONFIG"
    worst = "" if est.plan.packing else " (worst case: every row cutoff_len tokens)"
    return (f"predicted peak {est.memory.device_total_gib:.1f} GiB per device (reserved memory + CUDA context)"
            f"{worst} is more than the {available:.1f} GiB free on {hw.name}, so the run would most likely stop "
            f"with out-of-memory. `tuneforge estimate {path} --gpu-memory {available:.0f}GiB --fit` prints a config "
            "that fits; set ignore_memory_estimate: true to train anyway")

"""Training: ``core/`` (trainer, callbacks, checkpoints, records, plots, run lifecycle), ``stages/`` (pt, sft, rm,
dpo, kto) and ``ppo/``. Nothing heavy is imported here, so that looking a stage up stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..catalog import stage


def stage_runner(name: str) -> Callable[[Any], dict]:
    """The ``run`` function of stage ``name`` (its catalog record names the module; the schema allows no other)."""
    return importlib.import_module(stage(name).run).run

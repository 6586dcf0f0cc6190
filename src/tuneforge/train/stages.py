"""Stage name → the module that runs it (each exposes ``run(cfg) -> dict``); imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

STAGES = {"pt": "pt", "sft": "sft", "rm": "rm", "dpo": "dpo", "kto": "kto", "ppo": "ppo"}


def stage_runner(stage: str) -> Callable[[Any], dict]:
    """The ``run`` function of ``stage``; a stage whose module is missing is a clear error."""
    try:
        module = importlib.import_module(f"tuneforge.train.{STAGES[stage]}")
    except ModuleNotFoundError as err:
        if err.name != f"tuneforge.train.{STAGES[stage]}":
            raise
        raise NotImplementedError(f"stage {stage} is not available in this version of tuneforge") from None
    return module.run

"""Stage name → the module that runs it (each exposes ``run(cfg) -> dict``); imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

STAGES = {"pt": "pt", "sft": "sft", "rm": "rm", "dpo": "dpo", "kto": "kto", "ppo": "ppo"}


def stage_runner(stage: str) -> Callable[[Any], dict]:
    """The ``run`` function of ``stage`` (a key of :data:`STAGES`; the config schema allows no other)."""
    return importlib.import_module(f"tuneforge.train.{STAGES[stage]}").run

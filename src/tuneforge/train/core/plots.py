"""Loss and metric curves from ``trainer_state.json``: ``training_<key>.png`` (LLaMA-Factory's file names).

Each figure shows the raw values and an exponential moving average. Keys per stage follow LLaMA-Factory
(the stage catalog's ``plot_keys``); per-dataset evaluation keys (``eval_<name>_loss``) found in the log are added.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ... import catalog

logger = logging.getLogger(__name__)

_PER_DATASET_EVAL = re.compile(r"^eval_.+_(loss|accuracy)$")


def ema(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Bias-corrected exponential moving average: ``s_t = w·s_{t-1} + (1-w)·x_t``, divided by ``1 - w^t``.

    The default weight grows with the number of points (0.6 up to 10 points, 0.9 from 40 on), so short runs are
    not flattened. The bias correction keeps the first points on the raw curve instead of near 0.
    """
    if weight is None:
        weight = min(0.9, 1.0 - 4.0 / max(len(values), 10))
    out, running = [], 0.0
    for t, value in enumerate(values, start=1):
        running = weight * running + (1.0 - weight) * value
        out.append(running / (1.0 - weight**t))
    return out


def plot_keys(stage: str, log_history: Iterable[dict[str, Any]]) -> list[str]:
    """The stage's keys plus every per-dataset eval loss/accuracy that appears in ``log_history``."""
    keys = list(catalog.stage(stage).plot_keys)
    for entry in log_history:
        for key in entry:
            if _PER_DATASET_EVAL.match(key) and key not in keys:
                keys.append(key)
    return keys


def _series(log_history: Iterable[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in log_history:
        if key in entry and "step" in entry and isinstance(entry[key], int | float):
            steps.append(entry["step"])
            values.append(float(entry[key]))
    return steps, values


def _draw(steps: list[int], values: list[float], key: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The object API (no pyplot): no global figure state, no GUI backend, safe off the main thread.
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
    if len(values) > 1:
        axes.plot(steps, ema(values), color="#1f77b4", label="smoothed")
    axes.set_title(f"training {key} of {path.parent.name}")
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    axes.legend()
    figure.savefig(path, format="png")


def plot_loss(output_dir: str | os.PathLike, keys: Iterable[str] = ("loss",)) -> list[Path]:
    """Draw one PNG per key from ``<output_dir>/trainer_state.json`` and return the files written.

    A key with no logged value is skipped with a warning (e.g. ``eval_loss`` when nothing was evaluated).
    File names: ``training_<key with / replaced by _>.png``.

    Raises:
        FileNotFoundError: when ``trainer_state.json`` is absent.
    """
    out = Path(output_dir)
    history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    written = []
    for key in keys:
        steps, values = _series(history, key)
        if not values:
            logger.warning("plot_loss: no %r in the log history of %s, no figure for it", key, out)
            continue
        path = out / f"training_{key.replace('/', '_')}.png"
        _draw(steps, values, key, path)
        written.append(path)
    return written

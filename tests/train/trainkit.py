"""Helpers of the trainer tests: a config builder, toy datasets, a collator that keeps sample ids, a loss
that records what it saw, and a callback that snapshots parameters after every optimizer step."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from tuneforge.config.loader import resolve
from tuneforge.data.collator import PaddingCollator
from tuneforge.testing import PAD_ID
from tuneforge.train.core.loss import StageLoss

BASE_KEYS = {
    "stage": "sft",
    "finetuning_type": "full",
    "model_name_or_path": "tiny-llama",
    "report_to": "none",
    "use_cpu": True,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "save_strategy": "no",
    "disable_tqdm": True,
    "per_device_train_batch_size": 2,
    "seed": 7,
}


def make_cfg(output_dir: Path, **keys: Any):
    """A resolved config with small-run defaults; ``keys`` are flat LLaMA-Factory keys that win."""
    return resolve({**BASE_KEYS, "output_dir": str(output_dir), **keys}, environ={}).config


def random_rows(n: int = 40, seed: int = 0, min_len: int = 5, max_len: int = 24) -> list[dict[str, Any]]:
    """Random token rows of varied length; the first 1-3 tokens are prompt (label -100)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ids = [rng.randint(5, 1023) for _ in range(rng.randint(min_len, max_len))]
        prompt = rng.randint(1, 3)
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "sample_id": i})
    return rows


def counting_rows(n: int = 64, seed: int = 0, period: int = 8, length: int = 24) -> list[dict[str, Any]]:
    """A learnable task: each row counts upwards modulo ``period`` from a random start (token = 10 + value)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        start = rng.randrange(period)
        ids = [10 + (start + t) % period for t in range(length)]
        rows.append({"input_ids": ids, "labels": list(ids), "sample_id": i})
    return rows


class IdCollator:
    """``PaddingCollator`` that also passes ``sample_ids`` through (the loss ignores unknown keys)."""

    def __init__(self) -> None:
        self.pad = PaddingCollator(pad_token_id=PAD_ID)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.pad(rows)
        batch["sample_ids"] = torch.tensor([r["sample_id"] for r in rows])
        return batch


class RecordingLoss(StageLoss):
    """The default causal-LM loss, recording the sample ids of every training micro-batch.

    ``poison(step)`` returns True for optimizer steps whose loss should be made NaN (``trainer`` must be set).
    """

    def __init__(self, poison=None) -> None:
        self.ids: list[list[int]] = []
        self.poison = poison
        self.trainer = None

    def __call__(self, model, batch, num_items_in_batch):
        from tuneforge.losses.ce import causal_lm_loss

        loss, _ = causal_lm_loss(model, batch, num_items_in_batch=num_items_in_batch)
        if model.training:
            self.ids.append(batch["sample_ids"].tolist())
            if self.poison is not None and self.poison(self.trainer.state.global_step + 1):
                loss = loss + float("nan")  # NaN loss, finite gradients: only the loss check can catch it
        return loss, {}


class ParamSnapshots(TrainerCallback):
    """Copies of all parameters after each optimizer step, keyed by step (0 = before training)."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _copy(model) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in model.named_parameters()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = self._copy(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = self._copy(model)


def same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> bool:
    return all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def step_logs(log_history: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The per-step training log entries (those with ``loss`` and ``learning_rate``), by step."""
    return {e["step"]: e for e in log_history if "loss" in e and "learning_rate" in e}

"""Non-finite guard: a NaN loss or an inf gradient skips that update; five in a row stop the run."""

from __future__ import annotations

import json

import pytest
import torch
from trainkit import IdCollator, ParamSnapshots, RecordingLoss, make_cfg, random_rows, same_params, step_logs
from transformers import TrainerCallback

from tuneforge.testing import build_tiny_model
from tuneforge.train.core.callbacks import MAX_NONFINITE_STEPS, TrainingError
from tuneforge.train.core.checkpoints import checkpoint_dirs
from tuneforge.train.core.trainer import build_trainer, run_training


class InfGradientAt(TrainerCallback):
    """Put +inf into one gradient just before the optimizer step ``step`` (runs before the guard)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            model.model.layers[0].mlp.up_proj.weight.grad[0, 0] = float("inf")


def _trainer(out, loss, callbacks, **keys):
    cfg = make_cfg(out, **keys)
    trainer = build_trainer(cfg, build_tiny_model(seed=0), None, random_rows(40), None, IdCollator(),
                            compute_loss=loss, callbacks=callbacks)
    loss.trainer = trainer
    return cfg, trainer


def test_nan_loss_and_inf_gradient_steps_are_skipped(tmp_path):
    snaps = ParamSnapshots()
    loss = RecordingLoss(poison=lambda step: step == 3)
    _, trainer = _trainer(tmp_path, loss, [snaps, InfGradientAt(5)], max_steps=7)
    trainer.train()

    by_step = snaps.by_step
    assert same_params(by_step[3], by_step[2])  # NaN loss at step 3: nothing moved
    assert same_params(by_step[5], by_step[4])  # inf gradient at step 5: nothing moved
    for step in (1, 4, 6, 7):
        assert not same_params(by_step[step], by_step[step - 1]), step
    assert all(torch.isfinite(p).all() for p in by_step[7].values())
    logs = step_logs(trainer.state.log_history)
    assert [logs[s]["skipped_steps"] for s in range(1, 8)] == [0, 0, 1, 1, 2, 2, 2]
    assert trainer.guard.skipped_steps == 2
    assert trainer.state.global_step == 7  # skipped steps still consume their batches


def test_consecutive_nonfinite_steps_stop_the_run(tmp_path):
    assert MAX_NONFINITE_STEPS == 5
    out = tmp_path / "run"
    loss = RecordingLoss(poison=lambda step: step >= 4)
    cfg, trainer = _trainer(out, loss, [], max_steps=20, save_strategy="steps", save_steps=2)
    with pytest.raises(TrainingError, match=r"stopped at step 8 on rank 0: 5 consecutive"):
        run_training(cfg, trainer, dataset_fingerprints={})
    # checkpoint-2 is from before the bad region; saves at steps 4 and 6 fell inside it and were withheld.
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-2"]
    assert json.loads((out / "tuneforge_run.json").read_text())["status"].startswith("failed: TrainingError")

"""Kill-and-resume equivalence: SIGTERM mid-step saves a complete checkpoint, and resuming it equals not stopping."""

from __future__ import annotations

import json
import os
import signal

import pytest
from safetensors.torch import load_file
from trainkit import IdCollator, RecordingLoss, make_cfg, random_rows, step_logs
from transformers import TrainerCallback

from tuneforge.testing import build_tiny_model
from tuneforge.train.core.checkpoints import COMPLETE_MARKER, ResumeError, checkpoint_dirs, is_complete
from tuneforge.train.core.trainer import build_trainer, run_training

pytestmark = pytest.mark.slow  # end-to-end runs: make test-fast skips them

# 40 rows, batch 2 × GA 2: 10 optimizer steps per epoch, so 12 steps cross an epoch boundary (a reshuffle).
RUN = {"max_steps": 12, "save_strategy": "steps", "save_steps": 4, "gradient_accumulation_steps": 2,
       "lr_scheduler_type": "cosine", "warmup_steps": 3, "learning_rate": 5e-3}
ROWS = random_rows(40, seed=11)
FINGERPRINTS = {"toy": "fp-1"}


class SigtermMidStep(TrainerCallback):
    """Send SIGTERM to this process after the first micro-batch of optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step, self.sent = step, False

    def on_substep_end(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def _run(out, callbacks=(), **keys):
    cfg = make_cfg(out, **{**RUN, **keys})
    loss = RecordingLoss()
    trainer = build_trainer(cfg, build_tiny_model(seed=0), None, ROWS, None, IdCollator(), compute_loss=loss,
                            callbacks=callbacks)
    metrics = run_training(cfg, trainer, dataset_fingerprints=FINGERPRINTS)
    return trainer, loss, metrics


def test_sigterm_then_resume_equals_uninterrupted(tmp_path):
    ref, ref_loss, _ = _run(tmp_path / "ref")

    out = tmp_path / "run"
    previous = signal.getsignal(signal.SIGTERM)
    first, first_loss, first_metrics = _run(out, callbacks=[SigtermMidStep(7)])
    assert first_metrics["interrupted_by"] == "SIGTERM"
    assert first.state.global_step == 7
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored after training
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-4", "checkpoint-7"]
    assert all(is_complete(p) for p in checkpoint_dirs(out))
    assert not (out / "model.safetensors").exists()  # a stopped run leaves no "final" model
    assert json.loads((out / "tuneforge_run.json").read_text())["status"] == "interrupted by SIGTERM"

    resumed, resumed_loss, _ = _run(out, resume_from_checkpoint=True)
    assert resumed.state.global_step == 12

    ref_logs, got = step_logs(ref.state.log_history), step_logs(resumed.state.log_history)
    assert sorted(got) == list(range(1, 13))
    for step in range(1, 13):
        assert got[step]["loss"] == pytest.approx(ref_logs[step]["loss"], abs=1e-6), step
        assert got[step]["learning_rate"] == ref_logs[step]["learning_rate"], step
    # Every micro-batch of the reference, in the same order: no sample repeated or skipped across the stop.
    assert first_loss.ids + resumed_loss.ids == ref_loss.ids
    assert len(ref_loss.ids) == 24
    final_ref, final = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    assert max((final_ref[k] - final[k]).abs().max().item() for k in final_ref) <= 1e-6
    # trainer_log.jsonl has each step once, in order.
    lines = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [x["current_steps"] for x in lines if "loss" in x] == list(range(1, 13))


def test_resume_refuses_drift_naming_each_change(tmp_path):
    out = tmp_path / "run"
    _run(out, max_steps=4)
    assert is_complete(out / "checkpoint-4")
    cfg = make_cfg(out, **{**RUN, "max_steps": 8, "gradient_accumulation_steps": 4, "cutoff_len": 512},
                   resume_from_checkpoint=True)
    trainer = build_trainer(cfg, build_tiny_model(seed=0), None, ROWS, None, IdCollator())
    with pytest.raises(ResumeError) as err:
        run_training(cfg, trainer, dataset_fingerprints={"toy": "fp-2"})
    message = str(err.value)
    assert "gradient_accumulation_steps: 2 → 4" in message
    assert "cutoff_len: 2048 → 512" in message
    assert "dataset 'toy': fp-1 → fp-2" in message
    assert "max_steps" not in message  # extending a run is allowed


def test_incomplete_checkpoint_is_never_resumed(tmp_path):
    out = tmp_path / "run"
    _run(out, max_steps=8)
    (out / "checkpoint-8" / COMPLETE_MARKER).unlink()  # as if the process died while saving step 8
    (out / "checkpoint-8" / "model.safetensors").write_bytes(b"half a file")

    cfg = make_cfg(out, **{**RUN, "max_steps": 8}, resume_from_checkpoint=str(out / "checkpoint-8"))
    trainer = build_trainer(cfg, build_tiny_model(seed=0), None, ROWS, None, IdCollator())
    with pytest.raises(ResumeError, match="incomplete"):
        run_training(cfg, trainer, dataset_fingerprints=FINGERPRINTS)

    resumed, _, _ = _run(out, max_steps=8, resume_from_checkpoint=True)  # picks checkpoint-4, redoes 5..8
    assert step_logs(resumed.state.log_history).keys() == set(range(1, 9))
    assert is_complete(out / "checkpoint-8")
    load_file(out / "checkpoint-8" / "model.safetensors")  # rewritten whole

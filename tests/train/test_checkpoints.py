"""output_dir protection, completion markers, resume resolution, drift messages and the signal handler."""

from __future__ import annotations

import json
import os
import signal

import pytest
from trainkit import IdCollator, make_cfg, random_rows

from tuneforge.testing import build_tiny_model
from tuneforge.train.core.checkpoints import (
    COMPLETE_MARKER,
    CheckpointCallback,
    OutputDirError,
    ResumeError,
    latest_complete_checkpoint,
    manifest_changes,
    mark_complete,
    resolve_resume,
    run_manifest,
    stop_on_signals,
    verify_resume,
)
from tuneforge.train.core.lifecycle import prepare_output_dir
from tuneforge.train.core.trainer import build_trainer, run_training


def _fake_checkpoint(root, step, complete=True, manifest=None):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        mark_complete(path, manifest or {})
    return path


def test_non_empty_output_dir_is_refused_and_overwrite_keeps_what_no_run_wrote(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_model.safetensors").write_text("earlier results")
    cfg = make_cfg(out, max_steps=1)
    trainer = build_trainer(cfg, build_tiny_model(), None, random_rows(8), None, IdCollator())
    with pytest.raises(OutputDirError, match=r"not empty .*resume_from_checkpoint: true.*overwrite_output_dir"):
        run_training(cfg, trainer, dataset_fingerprints={})

    # No tuneforge run record says a run wrote it (e.g. a LLaMA-Factory output): overwriting must not delete it.
    cfg = make_cfg(out, max_steps=1, overwrite_output_dir=True)
    trainer = build_trainer(cfg, build_tiny_model(), None, random_rows(8), None, IdCollator())
    with pytest.raises(OutputDirError, match=r"not written by a tuneforge run: adapter_model\.safetensors"):
        run_training(cfg, trainer, dataset_fingerprints={})
    assert (out / "adapter_model.safetensors").read_text() == "earlier results"
    assert sorted(p.name for p in out.iterdir()) == ["adapter_model.safetensors"]


def test_overwrite_never_clears_a_folder_holding_the_model(tmp_path):
    model_dir = tmp_path / "out" / "base-model"
    model_dir.mkdir(parents=True)
    with pytest.raises(OutputDirError, match="base-model"):
        prepare_output_dir(tmp_path / "out", overwrite=True, protected=[model_dir])
    assert model_dir.is_dir()
    prepare_output_dir(tmp_path / "missing", overwrite=False)  # absent or empty folders are fine


def test_resume_resolution_uses_only_complete_checkpoints(tmp_path):
    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 12)
    _fake_checkpoint(tmp_path, 16, complete=False)
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-12"
    assert resolve_resume(True, tmp_path).name == "checkpoint-12"
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume(str(tmp_path / "checkpoint-4"), tmp_path).name == "checkpoint-4"
    with pytest.raises(ResumeError, match="incomplete"):
        resolve_resume(str(tmp_path / "checkpoint-16"), tmp_path)
    with pytest.raises(ResumeError, match="does not exist"):
        resolve_resume(str(tmp_path / "checkpoint-99"), tmp_path)
    empty = tmp_path / "empty"
    _fake_checkpoint(empty, 3, complete=False)
    with pytest.raises(ResumeError, match=r"no complete checkpoint; incomplete .*checkpoint-3"):
        resolve_resume(True, empty)


def test_marker_is_written_last_and_removed_before_a_resave(tmp_path):
    path = _fake_checkpoint(tmp_path, 5, manifest={"stage": "sft"})
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert marker["step"] == 5 and marker["manifest"] == {"stage": "sft"}
    assert not list(path.glob(".*.tmp"))

    class Args:
        output_dir, should_save = str(tmp_path), True

    class State:
        global_step = 5

    class Control:
        should_save = should_training_stop = False

    callback = CheckpointCallback()
    callback.on_step_end(Args, State, Control)  # step 5 is about to be saved again: not complete meanwhile
    assert not (path / COMPLETE_MARKER).exists()
    assert Control.should_save is False
    callback.request_stop("SIGTERM")
    callback.on_step_end(Args, State, Control)
    assert Control.should_save and Control.should_training_stop


def test_drift_message_names_every_change(tmp_path):
    old_cfg = make_cfg(tmp_path, finetuning_type="lora", lora_rank=8, template="qwen", cutoff_len=1024)
    new_cfg = make_cfg(tmp_path, finetuning_type="lora", lora_rank=16, template="llama3", cutoff_len=1024,
                       lora_target="q_proj,v_proj")
    old = run_manifest(old_cfg, dataset_fingerprints={"a": "1", "b": "2"}, world_size=2)
    new = run_manifest(new_cfg, dataset_fingerprints={"a": "1", "c": "3"}, world_size=1)
    path = _fake_checkpoint(tmp_path, 7, manifest=old)
    with pytest.raises(ResumeError) as err:
        verify_resume(path, new)
    message = str(err.value)
    for expected in ("lora_rank: 8 → 16", "lora_alpha: 16 → 32", "template: 'qwen' → 'llama3'",
                     "lora_target: ['all'] → ['q_proj', 'v_proj']", "world_size: 2 → 1",
                     "dataset 'b': 2 → (absent)", "dataset 'c': (absent) → 3"):
        assert expected in message
    assert "cutoff_len" not in message and "dataset 'a'" not in message
    assert manifest_changes(old, old) == []
    verify_resume(_fake_checkpoint(tmp_path, 8, manifest=old), old)  # identical: accepted


def test_signals_request_a_stop_and_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    callback = CheckpointCallback()
    with stop_on_signals(callback):
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: it becomes a save-and-stop request
        assert callback.stop_signal == "SIGINT"
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with pytest.raises(KeyboardInterrupt), stop_on_signals(callback):
        os.kill(os.getpid(), signal.SIGINT)  # second signal (a stop is already pending): stop at once

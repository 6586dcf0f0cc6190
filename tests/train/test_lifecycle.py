"""The run lifecycle: owned-only overwrite, protected inputs, the output lock, safe rotation, storage errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from trainkit import IdCollator, make_cfg, random_rows
from transformers import TrainerCallback

from tuneforge.testing import build_tiny_model
from tuneforge.train.core.checkpoints import (
    OutputDirError,
    OutputWriteError,
    checkpoint_dirs,
    is_complete,
    mark_complete,
    rotate_checkpoints,
)
from tuneforge.train.core.folder import LOCK_FILE, check_output_dir
from tuneforge.train.core.lifecycle import RunLifecycle, input_paths, prepare_output_dir
from tuneforge.train.core.records import RUN_FILE, read_record
from tuneforge.train.core.trainer import build_trainer, run_training

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def _train(out, callbacks=(), **keys):
    cfg = make_cfg(out, **{"max_steps": 2, **keys})
    trainer = build_trainer(cfg, build_tiny_model(seed=0), None, random_rows(16), None, IdCollator(),
                            callbacks=callbacks)
    return trainer, run_training(cfg, trainer, dataset_fingerprints={"toy": "fp"})


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# ---- overwrite_output_dir removes only what runs wrote ------------------------------------------------------------


def test_overwrite_removes_only_what_runs_wrote_and_names_anything_else(tmp_path):
    out = tmp_path / "run"
    _train(out, save_strategy="steps", save_steps=1)
    written = _names(out)
    assert read_record(out)["outputs"] == sorted(written)  # the record lists every entry of the run
    (out / "notes.txt").write_text("mine")
    (out / "eval-set").mkdir()

    with pytest.raises(OutputDirError, match=r"not written by a tuneforge run: eval-set, notes\.txt") as err:
        _train(out, overwrite_output_dir=True)
    assert "Move those out of output_dir" in str(err.value)
    assert _names(out) == written | {"notes.txt", "eval-set"}  # nothing removed, no lock left behind

    (out / "notes.txt").unlink()
    (out / "eval-set").rmdir()
    _train(out, overwrite_output_dir=True, max_steps=1)
    assert not (out / "checkpoint-2").exists()  # the earlier run's outputs were replaced
    assert read_record(out)["status"] == "completed"


def test_a_resumed_run_keeps_ownership_and_never_claims_user_files(tmp_path):
    out = tmp_path / "run"
    _train(out, save_strategy="steps", save_steps=1)
    (out / "notes.txt").write_text("mine, added between the runs")
    _train(out, resume_from_checkpoint=True, save_strategy="steps", save_steps=1, max_steps=3)
    record = read_record(out)
    assert record["status"] == "completed" and record["resumed_from"].endswith("checkpoint-2")
    assert record["outputs"] == sorted(_names(out) - {"notes.txt"})
    with pytest.raises(OutputDirError, match=r"not written by a tuneforge run: notes\.txt\. Move"):
        _train(out, overwrite_output_dir=True)


def test_overwrite_after_a_kill_between_record_writes(tmp_path):
    out = tmp_path / "run"
    _train(out)
    record = read_record(out)
    # As if killed right after the final save, before the last record write: the record lists only early entries.
    record.update(status="running", outputs=["tuneforge_config.yaml", "trainer_log.jsonl"])
    (out / RUN_FILE).write_text(json.dumps(record))
    (out / "checkpoint-9").mkdir()  # a save cut short
    _train(out, overwrite_output_dir=True, max_steps=1)
    assert read_record(out)["global_step"] == 1 and not (out / "checkpoint-9").exists()


def test_without_a_run_record_only_tuneforge_files_count_as_ours(tmp_path):
    out = tmp_path / "hf-run"
    mark_complete(_mkdir(out / "checkpoint-3"), {})
    (out / "tuneforge_config.yaml").write_text("stage: sft\n")
    prepare_output_dir(out, overwrite=True)  # a complete checkpoint and our config: removable
    assert _names(out) == set()
    (out / "config.json").write_text("{}")  # a transformers output, but no tuneforge record says it is a run's
    with pytest.raises(OutputDirError, match=r"not written by a tuneforge run: config\.json"):
        prepare_output_dir(out, overwrite=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_reference_model_inside_output_dir_survives_overwrite(tmp_path, tiny_model_dir):
    from tuneforge.train import stage_runner

    out = tmp_path / "out"
    shutil.copytree(tiny_model_dir, out / "ref-model")
    weights = (out / "ref-model" / "model.safetensors").read_bytes()
    cfg = make_cfg(out, stage="dpo", do_train=True, finetuning_type="lora", model_name_or_path=str(tiny_model_dir),
                   ref_model=str(out / "ref-model"), dataset="dpo_demo", dataset_dir=str(DATA_DIR), template="chatml",
                   cutoff_len=32, max_samples=4, max_steps=1, overwrite_output_dir=True)
    with pytest.raises(OutputDirError) as err:
        stage_runner("dpo")(cfg)
    assert f"{(out / 'ref-model').resolve()} is an input of this run" in str(err.value)
    assert "not written by a tuneforge run: ref-model" in str(err.value)  # both problems in one message
    assert (out / "ref-model" / "model.safetensors").read_bytes() == weights
    assert _names(out) == {"ref-model"}


def test_input_paths_list_every_input(tmp_path):
    eval_file = tmp_path / "eval.json"
    eval_file.write_text("[]")
    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    cfg = make_cfg(tmp_path / "out", stage="ppo", finetuning_type="lora", adapter_name_or_path="a1,a2",
                   ref_model="ref", ref_model_adapters="ref-a", reward_model="rm", reward_model_adapters="rm-a",
                   reward_model_type="lora", dataset="dpo_demo", eval_dataset=str(eval_file),
                   dataset_dir=str(DATA_DIR), tokenized_path="tok", media_dir="media", deepspeed=str(ds),
                   fsdp_config="fsdp.json")
    assert set(input_paths(cfg)) == {"tiny-llama", "a1", "a2", "ref", "ref-a", "rm", "rm-a", str(DATA_DIR),
                                     str(DATA_DIR / "dpo_demo.json"), str(eval_file), "tok", "media", str(ds),
                                     "fsdp.json"}
    api = make_cfg(tmp_path / "out", stage="ppo", reward_model="http://127.0.0.1:9/score", reward_model_type="api")
    assert "http://127.0.0.1:9/score" not in input_paths(api)


# ---- the lock ------------------------------------------------------------------------------------------------------


def test_a_second_run_on_a_folder_in_use_fails_clearly(tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg(out, max_steps=1, overwrite_output_dir=True)
    first = RunLifecycle(cfg, out, manifest={}, fingerprints={})
    first.start()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(OutputDirError, match=rf"in use by another tuneforge run \(pid {os.getpid()} on this host"):
        _train(out, overwrite_output_dir=True)
    with pytest.raises(OutputDirError, match="in use by another tuneforge run"):
        check_output_dir(out)  # the CLI's early check says the same before loading anything
    assert read_record(out)["status"] == "running"  # the first run's record and folder are untouched
    with first.guard(lambda: 0):
        first.finish(None)
    assert not (out / LOCK_FILE).exists()
    _train(out, overwrite_output_dir=True)  # free again


def test_a_stale_lock_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    pid = _dead_pid()
    (out / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "started": "earlier"}))
    with caplog.at_level(logging.WARNING, logger="tuneforge.train.core.folder"):
        _train(out)
    assert f"taking over the stale lock {out / LOCK_FILE}: its run (pid {pid}" in caplog.text
    assert read_record(out)["status"] == "completed" and not (out / LOCK_FILE).exists()


# ---- rotation ------------------------------------------------------------------------------------------------------


class CrashBeforeMarker(TrainerCallback):
    """Raise in ``on_save`` of ``step``: the checkpoint's files are written, its completion marker is not."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("killed while saving")


def test_rotation_never_leaves_zero_complete_checkpoints(tmp_path):
    out = tmp_path / "run"
    keys = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2, "save_total_limit": 1}
    with pytest.raises(RuntimeError, match="killed while saving"):
        _train(out, callbacks=[CrashBeforeMarker(4)], **keys)
    assert is_complete(out / "checkpoint-2")  # the old checkpoint survives until the new one is complete
    assert (out / "checkpoint-4" / "model.safetensors").is_file() and not is_complete(out / "checkpoint-4")
    assert read_record(out)["status"] == "failed: RuntimeError: killed while saving"
    assert not (out / LOCK_FILE).exists()

    trainer, _ = _train(out, resume_from_checkpoint=True, **keys)
    assert trainer.state.global_step == 4
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-4"] and is_complete(out / "checkpoint-4")


def test_rotate_checkpoints_keeps_the_best_next_to_the_newest(tmp_path):
    for step in (2, 4, 6, 8):
        mark_complete(_mkdir(tmp_path / f"checkpoint-{step}"), {})
    _mkdir(tmp_path / "checkpoint-1")  # incomplete: never rotated away
    removed = rotate_checkpoints(tmp_path, 1, best=str(tmp_path / "checkpoint-4"))
    assert [p.name for p in removed] == ["checkpoint-2", "checkpoint-6"]
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-1", "checkpoint-4", "checkpoint-8"]
    assert rotate_checkpoints(tmp_path, None) == []


# ---- storage errors ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MiB tmpfs: room for the run's record and the first model save (0.9 MB), not for its optimizer state."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_is_one_clear_error(small_disk):
    out = small_disk / "run"
    with pytest.raises(OutputWriteError) as err:
        _train(out, save_strategy="steps", save_steps=1)
    message = str(err.value)
    assert message.startswith(f"no space left on device writing {out}") and " free): free some space" in message
    # The unfinished checkpoint is gone (never resumable), which left room to record the failure.
    assert [p.name for p in checkpoint_dirs(out)] == []
    assert read_record(out)["status"].startswith("failed: OutputWriteError: no space left on device")
    assert not (out / LOCK_FILE).exists()


def test_storage_error_recognises_a_full_disk_only(tmp_path):
    import errno

    from tuneforge.train.core.folder import storage_error

    mark_complete(_mkdir(tmp_path / "checkpoint-4"), {})
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "optimizer.pt"))
    message = str(storage_error(wrapped, tmp_path))
    assert message.startswith(f"no space left on device writing {tmp_path / 'optimizer.pt'} (")
    assert message.endswith("then resume_from_checkpoint: true continues from checkpoint-4")
    assert storage_error(RuntimeError("Error while serializing: StorageFull"), tmp_path) is not None  # safetensors
    assert storage_error(RuntimeError("CUDA out of memory"), tmp_path) is None  # there is room on this disk
    assert storage_error(KeyboardInterrupt(), tmp_path) is None


def test_an_unwritable_output_dir_is_one_clear_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OutputDirError, match=rf"output_dir {afile} cannot be written \(it is a file; .* free\)"):
        check_output_dir(afile)
    with pytest.raises(OutputDirError, match=r"output_dir /proc/tuneforge-test/out cannot be written \("):
        check_output_dir("/proc/tuneforge-test/out")
    with pytest.raises(OutputDirError, match=r"cannot be written \(it is a file"):  # the run itself checks too
        RunLifecycle(make_cfg(afile), afile, manifest={}, fingerprints={}).start()


@pytest.mark.slow
def test_cli_unwritable_output_dir_and_sigterm_exit_codes(tmp_path, tiny_model_dir):
    import signal
    import time

    config = tmp_path / "cfg.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\nstage: sft\ndo_train: true\ndataset: alpaca_demo\n"
                      f"dataset_dir: {DATA_DIR}\ntemplate: chatml\ncutoff_len: 32\nmax_samples: 8\n"
                      "max_steps: 100000\nlogging_steps: 1\nsave_strategy: 'no'\nuse_cpu: true\nreport_to: none\n"
                      "disable_tqdm: true\n")
    command = [sys.executable, "-m", "tuneforge", "train", str(config)]
    done = subprocess.run([*command, f"output_dir={config}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"output_dir {config} is a file" in done.stderr  # `check` (run by train first) names it

    out = tmp_path / "run"
    proc = subprocess.Popen([*command, f"output_dir={out}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not (out / "trainer_log.jsonl").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    saved = checkpoint_dirs(out)
    assert len(saved) == 1 and is_complete(saved[0])
    assert read_record(out)["status"] == "interrupted by SIGTERM" and not (out / LOCK_FILE).exists()


def test_cli_sigint_exits_130_after_saving(tmp_path, tiny_model_dir):
    import signal
    import threading
    import time

    from tuneforge.cli import main

    out = tmp_path / "run"
    config = tmp_path / "cfg.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\nstage: sft\ndo_train: true\ndataset: alpaca_demo\n"
                      f"dataset_dir: {DATA_DIR}\ntemplate: chatml\ncutoff_len: 32\nmax_samples: 8\nmax_steps: 100000\n"
                      f"logging_steps: 1\nsave_strategy: 'no'\nuse_cpu: true\nreport_to: none\ndisable_tqdm: true\n"
                      f"output_dir: {out}\n")

    def interrupt_once_training() -> None:
        deadline = time.time() + 120
        while not (out / "trainer_log.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: delivered to the main thread, where training runs

    threading.Thread(target=interrupt_once_training, daemon=True).start()
    assert main(["train", str(config)]) == 130
    saved = checkpoint_dirs(out)
    assert len(saved) == 1 and is_complete(saved[0])
    assert read_record(out)["status"] == "interrupted by SIGINT"


# ---- PPO shares the lifecycle ---------------------------------------------------------------------------------


def _ppo(model_dir: Path, out: Path, **keys) -> dict:
    from tuneforge.config.loader import resolve
    from tuneforge.train import stage_runner

    config = {"model_name_or_path": str(model_dir), "do_train": True, "stage": "ppo", "finetuning_type": "lora",
              "reward_model": "http://127.0.0.1:9/unused", "reward_model_type": "api", "dataset": "quickstart_task",
              "dataset_dir": str(DATA_DIR), "template": "chatml", "cutoff_len": 32, "max_samples": 8,
              "output_dir": str(out), "per_device_train_batch_size": 2, "max_steps": 3, "max_new_tokens": 2,
              "save_strategy": "steps", "save_steps": 1, "save_total_limit": 1, "report_to": "none",
              "disable_tqdm": True, "use_cpu": True, **keys}
    res = resolve(config, environ={})
    assert res.errors == [], res.errors
    return stage_runner("ppo")(res.config, reward=lambda completion_ids, **_: [1.0] * len(completion_ids))


def test_ppo_rotates_after_the_marker_records_outputs_and_protects_inputs(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    _ppo(tiny_model_dir, out)
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-3"] and is_complete(out / "checkpoint-3")
    record = read_record(out)
    assert record["status"] == "completed" and record["outputs"] == sorted(_names(out))
    assert not (out / LOCK_FILE).exists()

    shutil.copytree(tiny_model_dir, out / "ref-model")
    with pytest.raises(OutputDirError, match="ref-model is an input of this run"):
        _ppo(tiny_model_dir, out, ref_model=str(out / "ref-model"), overwrite_output_dir=True)
    assert _names(out) == set(record["outputs"]) | {"ref-model"}


@pytest.mark.slow
def test_cli_full_disk_exits_1_with_one_line(small_disk, tiny_model_dir, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\nstage: sft\ndo_train: true\ndataset: alpaca_demo\n"
                      f"dataset_dir: {DATA_DIR}\ntemplate: chatml\ncutoff_len: 32\nmax_samples: 8\nmax_steps: 3\n"
                      f"save_steps: 1\nfinetuning_type: full\nuse_cpu: true\nreport_to: none\ndisable_tqdm: true\n"
                      f"output_dir: {small_disk / 'run'}\n")
    done = subprocess.run([sys.executable, "-m", "tuneforge", "train", str(config)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: no space left on device writing {small_disk / 'run'}")

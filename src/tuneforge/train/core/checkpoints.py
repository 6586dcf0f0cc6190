"""Runs that survive: complete-only checkpoints, safe rotation, graceful stop, resume without drift.

transformers 5 writes ``checkpoint-N`` in place, so a kill during the save leaves a folder that looks valid. We
mark completion instead: after HF's save (``on_save``) every file of the folder is fsynced, then
``checkpoint-N/tuneforge_complete.json`` (holding the run manifest) is written atomically. A folder without it is
never resumed. Before step N's save can begin, an old marker of ``checkpoint-N`` is removed, so a marker always
describes the files next to it.

The manifest records what must not change across a resume (dataset fingerprints, cutoff_len, batch geometry,
world size, template, LoRA shape, stage, method, data order); :func:`verify_resume` names every change, old → new.

``save_total_limit`` is ours, not transformers': HF rotates before the new checkpoint is marked complete, so a
crash in that gap could leave no complete checkpoint. :func:`rotate_checkpoints` runs only after the marker.
(The output folder itself - ownership, lock, run record - is :mod:`tuneforge.train.core.lifecycle`.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ...config.report import plain
from ...errors import TuneforgeError

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "tuneforge_complete.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

# Keys whose change makes a resumed run differ from the interrupted one (sample order, shapes, objective).
DRIFT_KEYS = (
    "stage", "finetuning_type", "template", "cutoff_len", "packing", "neat_packing",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "data_seed", "disable_shuffling",
)  # fmt: skip
LORA_DRIFT_KEYS = ("lora_rank", "lora_alpha", "lora_target", "additional_target")
METHOD_DRIFT_KEYS = {"lora": LORA_DRIFT_KEYS, "oft": ("oft_rank", "oft_block_size", "oft_target", "additional_target")}


class OutputDirError(TuneforgeError, ValueError):
    """output_dir holds files this run would overwrite, is in use by another run, or cannot be written."""


class OutputWriteError(OSError):
    """Writing the run's outputs failed for lack of space (or the folder became unwritable) during the run."""


class ResumeError(TuneforgeError, ValueError):
    """The requested checkpoint cannot be resumed: missing, incomplete, or saved by a different run."""


# ---- checkpoint folders -------------------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int | None:
    """``checkpoint-12`` → 12; None for any other name."""
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, complete or not, by increasing N."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def is_complete(checkpoint: str | os.PathLike) -> bool:
    """Whether the checkpoint's completion marker exists (it is written only after every file was synced)."""
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    complete = [p for p in checkpoint_dirs(output_dir) if is_complete(p)]
    return complete[-1] if complete else None


def read_manifest(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The run manifest stored in a complete checkpoint's marker."""
    return json.loads((Path(checkpoint) / COMPLETE_MARKER).read_text(encoding="utf-8")).get("manifest", {})


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return  # e.g. directories cannot be opened on Windows; the data files are synced regardless
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on directories
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk, deepest first."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder), directory=True)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` via a synced temporary file and a rename, so readers see all of it or nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(plain(dict(data)), handle, indent=2, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync(path.parent, directory=True)


def mark_complete(checkpoint: Path, manifest: Mapping[str, Any], extra_files: Mapping[str, str] | None = None) -> None:
    """Write ``extra_files`` (name → text) into ``checkpoint``, sync everything, then write the marker last."""
    for name, text in (extra_files or {}).items():
        (checkpoint / name).write_text(text, encoding="utf-8")
    fsync_tree(checkpoint)
    marker = {"step": checkpoint_step(checkpoint), "completed_at": datetime.now(UTC).isoformat(),
              "manifest": dict(manifest)}
    write_json_atomic(checkpoint / COMPLETE_MARKER, marker)


def invalidate(checkpoint: Path) -> None:
    """Remove a marker before the folder is written again (a resumed run re-saving the same step)."""
    (checkpoint / COMPLETE_MARKER).unlink(missing_ok=True)


def saved_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was saved at, from its ``trainer_state.json`` (the one reader of it)."""
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def rotate_checkpoints(output_dir: str | os.PathLike, limit: int | None, best: str | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints so that ``limit`` remain; call it only after the newest one is marked
    complete, so at least one complete checkpoint always survives. As transformers: ``best`` (the best
    checkpoint) is kept next to the newest, so ``limit`` 1 keeps two while they differ. Incomplete folders are
    left alone. Example: checkpoints 2, 4, 6 complete, ``limit=2`` → checkpoint-2 removed."""
    complete = [p for p in checkpoint_dirs(output_dir) if is_complete(p)]
    if not limit or len(complete) <= limit:
        return []
    keep = next((p for p in complete[:-1] if best and p.resolve() == Path(best).resolve()), None)
    if keep is not None:
        complete.remove(keep)
        complete.insert(len(complete) - 1, keep)
        limit = max(limit, 2)
    removed = complete[:-limit]
    for path in removed:
        logger.info("save_total_limit %d: removing %s", limit, path.name)
        shutil.rmtree(path)
    return removed


def remove_incomplete_after(output_dir: str | os.PathLike, step: int) -> list[Path]:
    """Delete unmarked ``checkpoint-N`` folders with N > ``step``: leftovers of a killed save that the resumed run
    would write into again. Older unmarked folders are left alone (they may not be ours)."""
    removed = [p for p in checkpoint_dirs(output_dir) if checkpoint_step(p) > step and not is_complete(p)]
    for path in removed:
        logger.warning("removing incomplete checkpoint %s (no %s: its save never finished)", path, COMPLETE_MARKER)
        shutil.rmtree(path)
    return removed


# ---- resume ------------------------------------------------------------------------------------------------------


def resolve_resume(resume: bool | str | os.PathLike | None, output_dir: str | os.PathLike) -> Path | None:
    """Turn ``resume_from_checkpoint`` into a complete checkpoint folder, or None for a fresh run.

    ``True`` picks the latest complete checkpoint of ``output_dir``; a path must be a complete checkpoint.

    Raises:
        ResumeError: nothing complete to resume, or the given folder is missing or has no completion marker.
    """
    if resume in (None, False, ""):
        return None
    if resume is True:
        found = latest_complete_checkpoint(output_dir)
        if found is None:
            partial = [p.name for p in checkpoint_dirs(output_dir)]
            extra = f"; incomplete (never resumed): {', '.join(partial)}" if partial else ""
            raise ResumeError(f"resume_from_checkpoint: true, but {output_dir} has no complete checkpoint{extra}")
        return found
    path = Path(resume).expanduser()
    if not path.is_dir():
        raise ResumeError(f"resume_from_checkpoint: {path} does not exist")
    if not is_complete(path):
        raise ResumeError(
            f"resume_from_checkpoint: {path} is incomplete (no {COMPLETE_MARKER}: its save was interrupted or it "
            "was not written by tuneforge); give a complete checkpoint, or true for the latest complete one"
        )
    return path


def run_manifest(cfg: Any, *, dataset_fingerprints: Mapping[str, str], world_size: int) -> dict[str, Any]:
    """What a resumed run must share with the run that saved the checkpoint (JSON-ready)."""
    keys = DRIFT_KEYS + METHOD_DRIFT_KEYS.get(cfg.finetuning.finetuning_type, ())
    manifest = {key: plain(cfg.value(key)) for key in keys}
    manifest["world_size"] = world_size
    manifest["dataset_fingerprints"] = dict(sorted(dataset_fingerprints.items()))
    return manifest


def _fingerprint_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            changes.append(f"dataset {name!r}: {old.get(name, '(absent)')} → {new.get(name, '(absent)')}")
    return changes


def manifest_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One ``key: old → new`` line per difference (keys absent from either side are not compared)."""
    changes = []
    for key in sorted(set(saved) & set(current)):
        if key == "dataset_fingerprints":
            changes += _fingerprint_changes(saved[key] or {}, current[key] or {})
        elif saved[key] != current[key]:
            changes.append(f"{key}: {saved[key]!r} → {current[key]!r}")
    return changes


def verify_resume(checkpoint: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse to resume when the current run differs from the one that saved ``checkpoint``.

    Raises:
        ResumeError: naming every changed key with its old and new value.
    """
    changes = manifest_changes(read_manifest(checkpoint), json.loads(json.dumps(plain(dict(manifest)))))
    if changes:
        listed = "\n  ".join(changes)
        raise ResumeError(
            f"cannot resume from {checkpoint}: this run differs from the one that saved it:\n  {listed}\n"
            "Resume with the original values, or start a new run (new output_dir) that loads these weights "
            "(model_name_or_path / adapter_name_or_path pointing at the checkpoint) with a fresh schedule."
        )


# ---- the callback and the signal handler ---------------------------------------------------------------------------


class CheckpointCallback(TrainerCallback):
    """Completion markers on every save, rotation after them, and a graceful stop when :meth:`request_stop` was
    called.

    ``manifest``, ``extra_files`` (name → text written into each checkpoint, e.g. the resolved config),
    ``save_total_limit`` and ``on_saved`` (called after each complete save, e.g. to update the run record) are set
    by :func:`tuneforge.train.core.trainer.run_training` before training starts.
    """

    def __init__(self) -> None:
        self.manifest: dict[str, Any] = {}
        self.extra_files: dict[str, str] = {}
        self.stop_signal: str | None = None
        self.save_total_limit: int | None = None
        self.on_saved: Callable[[], None] | None = None

    def request_stop(self, reason: str) -> None:
        """Save at the end of the current optimizer step and stop (safe to call from a signal handler)."""
        self.stop_signal = reason

    def on_step_end(self, args, state, control, **kwargs):
        if args.should_save:  # the processes that write checkpoints (and markers) of this file system
            invalidate(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        if self.stop_signal is not None:
            logger.warning("%s received: saving checkpoint-%d and stopping", self.stop_signal, state.global_step)
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stop_signal is not None:
            control.should_evaluate = False  # leave quickly: the job is being stopped

    def on_evaluate(self, args, state, control, **kwargs):
        # A signal that arrived during a (long) evaluation: the step is already finished, so save right after it.
        if self.stop_signal is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's shard and RNG file is on disk before the marker says so
        if args.should_save:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}", self.manifest, self.extra_files)
            rotate_checkpoints(args.output_dir, self.save_total_limit, state.best_model_checkpoint)
            if self.on_saved is not None:
                self.on_saved()


@contextmanager
def stop_on_signals(callback: CheckpointCallback, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)
                    ) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT ask ``callback`` to save and stop; the previous handlers come back after.

    A second signal while the first is being honoured restores the previous handler and re-delivers the signal
    (Ctrl-C twice stops at once). Outside the main thread (where handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # getsignal() is None for handlers installed outside Python; SIG_DFL is the closest thing to restore.
    previous = {sig: signal.getsignal(sig) or signal.SIG_DFL for sig in signals}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if callback.stop_signal is None:
            callback.request_stop(name)
            sys.stderr.write(f"\n{name}: saving a checkpoint at the end of this optimizer step, then stopping "
                             f"(send {name} again to stop at once)\n")
            return
        signal.signal(signum, previous[signum])
        signal.raise_signal(signum)

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

"""One run lifecycle, shared by the trainer path (``run_training``) and PPO (``PPORun``).

A run's output folder never loses user data:

* **Ownership.** ``tuneforge_run.json`` lists the top-level entries tuneforge runs wrote in ``output_dir``
  (``outputs``; rewritten at every complete checkpoint and at the end). ``overwrite_output_dir: true`` removes
  only those, ``checkpoint-N`` folders and tuneforge's own files, and refuses - naming them - when anything else is
  there. After a kill between two record writes, names in ``known_outputs.yaml`` count as the run's own too (only
  in a folder holding a run record).
* **Inputs.** Clearing is refused when any input path (:func:`input_paths`) lies inside ``output_dir``.
* **Lock.** ``output_dir/.tuneforge.lock`` (pid, host, start time; :mod:`.folder`), created atomically, keeps a
  second run out; a lock whose process is gone (same host) is taken over with a warning.
* **Record.** ``running`` → ``completed`` / ``interrupted by SIGTERM`` / ``failed: ...``.
* **Storage.** An unwritable ``output_dir`` is an :class:`OutputDirError`; running out of space mid-run an
  :class:`OutputWriteError`: one line naming the path and the free space.

Usage (rank 0 prepares; the other ranks wait at ``barrier``)::

    life = RunLifecycle(cfg, "saves/run", manifest=manifest, fingerprints={"alpaca_en": "3f2a..."})
    checkpoint = life.start()         # the checkpoint to resume, or None; folder ready, locked, record "running"
    with life.guard(lambda: step):    # "failed: ..." on an error, disk full as one line; the lock is released
        ...                           # train; life.checkpoint_saved() after each complete checkpoint
        life.finish(None, global_step=step, metrics=metrics)
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ...config.schema import Config
from .checkpoints import (
    OutputDirError,
    checkpoint_step,
    is_complete,
    latest_complete_checkpoint,
    remove_incomplete_after,
    resolve_resume,
    saved_step,
    verify_resume,
)
from .folder import LOCK_FILE, OutputLock, storage_error
from .records import CONFIG_FILE, RUN_FILE, RunRecord, read_record, write_config

logger = logging.getLogger(__name__)

OWN_FILES = frozenset({RUN_FILE, CONFIG_FILE, LOCK_FILE, f".{RUN_FILE}.tmp"})


# ---- inputs ------------------------------------------------------------------------------------------------------


def _dataset_files(cfg: Config) -> list[str]:
    """Local data files of ``dataset`` and ``eval_dataset`` (registry entries and direct paths)."""
    from ...data.registry import RegistryError, get_dataset_attr

    files = []
    for name in [*(cfg.data.dataset or []), *(cfg.data.eval_dataset or [])]:
        try:
            attr = get_dataset_attr(name, cfg.data.dataset_dir)
        except (RegistryError, OSError, ValueError):
            continue  # the data loader reports it; here it only cannot be protected
        if attr.source == "file":
            files.append(attr.path)
    return files


def input_paths(cfg: Config) -> list[str]:
    """Every path the run reads: model, adapters, reference and reward models (+ adapters; not an API reward),
    dataset folder and files, tokenized data, media folder, DeepSpeed / FSDP config files.

    Example: ``input_paths(cfg)`` → ``["models/qwen", "data", "data/alpaca_en_demo.json", "ds_z3.json"]``.
    """
    m, d, ft, tr = cfg.model, cfg.data, cfg.finetuning, cfg.training
    paths = [m.model_name_or_path, *(m.adapter_name_or_path or []), ft.ref_model, *(ft.ref_model_adapters or []),
             *(ft.reward_model_adapters or []), d.dataset_dir, d.tokenized_path, d.media_dir, *_dataset_files(cfg)]
    if ft.reward_model_type != "api":
        paths.append(ft.reward_model)
    paths += [value for value in (tr.deepspeed, tr.fsdp_config) if isinstance(value, str)]
    return [str(p) for p in paths if p]


def disable_dropout(model: nn.Module) -> int:
    """Set every ``nn.Dropout`` to p=0 and return how many were on. dpo/kto (as LLaMA-Factory and TRL) and PPO need
    it: with dropout the policy differs from its reference at equal weights (noise in the implicit rewards), and
    PPO's ratio is not exactly 1 on the first pass over fresh rollouts."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            module.p = 0.0
            changed += 1
    if changed:
        logger.info("dropout disabled in %d modules (the policy must match its reference at equal weights)", changed)
    return changed


# ---- ownership -----------------------------------------------------------------------------------------------------


@functools.cache
def known_outputs() -> tuple[str, ...]:
    """The globs of ``known_outputs.yaml``."""
    return tuple(yaml.safe_load((Path(__file__).with_name("known_outputs.yaml")).read_text(encoding="utf-8")))


def entries(folder: Path) -> set[str]:
    """Top-level names in ``folder`` (none when absent), the lock file left out."""
    return {p.name for p in folder.iterdir() if p.name != LOCK_FILE} if folder.is_dir() else set()


def is_ours(folder: Path, name: str, record: Mapping[str, Any] | None) -> bool:
    """Whether a tuneforge run wrote ``folder/name`` (see the module docstring)."""
    if name in OWN_FILES:
        return True
    if checkpoint_step(Path(name)) is not None and (record is not None or is_complete(folder / name)):
        return True
    if record is None:
        return False
    return name in (record.get("outputs") or []) or any(fnmatch(name, glob) for glob in known_outputs())


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _inputs_inside(out: Path, protected: Iterable[str | os.PathLike]) -> list[Path]:
    guarded = [Path(p).expanduser().resolve() for p in protected if p and Path(p).expanduser().exists()]
    return [p for p in [*guarded, Path.home().resolve(), Path.cwd()] if _is_inside(p, out)]


def _shown(names: Iterable[str], limit: int = 10) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def prepare_output_dir(output_dir: str | os.PathLike, *, overwrite: bool,
                       protected: Iterable[str | os.PathLike] = ()) -> None:
    """Make sure a fresh run does not write over earlier results (call it on the main process only).

    Args:
        output_dir: the run's output folder (it may not exist yet).
        overwrite: ``overwrite_output_dir``: remove what earlier tuneforge runs wrote there.
        protected: the run's input paths (:func:`input_paths`); none may lie inside ``output_dir``.

    Raises:
        OutputDirError: the folder is not empty and ``overwrite`` is off; or clearing it would delete an input,
            the home folder or the working directory, or entries tuneforge did not write (all named at once).
    """
    out = Path(output_dir).expanduser().resolve()
    names = entries(out)
    if not names:
        return
    if not overwrite:
        ckpts = sorted((n for n in names if checkpoint_step(Path(n)) is not None), key=lambda n: int(n[11:]))
        hint = f" (checkpoints: {', '.join(ckpts)})" if ckpts else ""
        raise OutputDirError(
            f"output_dir {out} is not empty ({_shown(names, 5)}){hint}. Set resume_from_checkpoint: true to "
            "continue from its latest complete checkpoint, overwrite_output_dir: true to clear it, or choose another "
            "output_dir."
        )
    record = read_record(out)
    problems = [f"{p} is an input of this run" for p in _inputs_inside(out, protected)]
    foreign = [n for n in names if not is_ours(out, n, record)]
    if foreign:
        problems.append(f"not written by a tuneforge run: {_shown(foreign)}")
    if problems:
        raise OutputDirError(
            f"overwrite_output_dir: true removes only what tuneforge runs wrote, but output_dir {out} holds what "
            f"it must keep: {'; '.join(problems)}. Move those out of output_dir, or choose another output_dir."
        )
    logger.warning("overwrite_output_dir: removing what an earlier run wrote in %s: %s", out, _shown(names))
    for name in names:
        _remove(out / name)


# ---- the lifecycle -------------------------------------------------------------------------------------------------


class RunLifecycle:
    """One run in its output folder: resume point, folder policy, lock, config and run record (module docstring).

    Args:
        cfg: the resolved config.
        output_dir: the run's output folder.
        manifest: what a resumed run must share with the saved one (:func:`checkpoints.run_manifest`).
        fingerprints: dataset name → fingerprint, for the record.
        world_size: processes of the run, for the record.
        main: whether this process prepares the folder, holds the lock and writes the record (rank 0).
        barrier: waits for every process (after rank 0 prepared the folder).
    """

    def __init__(self, cfg: Config, output_dir: str | os.PathLike, *, manifest: Mapping[str, Any],
                 fingerprints: Mapping[str, str], world_size: int = 1, main: bool = True,
                 barrier: Callable[[], None] | None = None) -> None:
        self.cfg, self.out, self.manifest, self.main = cfg, Path(output_dir), dict(manifest), main
        self.barrier = barrier or (lambda: None)
        self.lock = OutputLock(self.out)
        self.record = RunRecord(self.out, dict(fingerprints), world_size=world_size)
        self.before: set[str] = set()  # entries present when this run started (kept by a resume)
        self.owned: set[str] = set()

    def start(self) -> Path | None:
        """Resolve and verify the resume point, prepare the folder, lock it, write config and record "running".

        Raises:
            ResumeError: nothing complete to resume, or the run drifted from the checkpoint's.
            OutputDirError: the folder is not empty, holds what overwriting must keep, is locked or unwritable.
        """
        checkpoint = resolve_resume(self.cfg.training.resume_from_checkpoint, self.out)
        if checkpoint is not None:
            verify_resume(checkpoint, self.manifest)
            self.record.resumed_from = str(checkpoint)
        if self.main:
            self.lock.acquire()
            try:
                self._prepare(checkpoint)
                write_config(self.out, self.cfg)
                self.write("running")
            except BaseException:
                self.lock.release()
                raise
        self.barrier()
        return checkpoint

    def _prepare(self, checkpoint: Path | None) -> None:
        if checkpoint is None:
            prepare_output_dir(self.out, overwrite=self.cfg.monitoring.overwrite_output_dir,
                               protected=input_paths(self.cfg))
            return
        if self.cfg.monitoring.overwrite_output_dir:
            logger.warning("overwrite_output_dir is ignored when resuming: %s is kept", self.out)
        remove_incomplete_after(self.out, saved_step(checkpoint))
        previous = read_record(self.out)
        self.before = entries(self.out)
        self.owned = {name for name in self.before if is_ours(self.out, name, previous)}

    def outputs(self) -> list[str]:
        """The top-level entries tuneforge runs wrote in the folder: earlier runs' (resume) and this one's."""
        now = entries(self.out)
        self.owned = (self.owned & now) | (now - self.before)
        return sorted(self.owned)

    def write(self, status: str, **extra: Any) -> None:
        """Rewrite the run record with ``status`` and the current outputs (main process only)."""
        if self.main:
            self.record.write(status, outputs=self.outputs(), **extra)

    def checkpoint_saved(self) -> None:
        """Record the outputs after a complete checkpoint (a kill later still leaves them removable)."""
        self.write("running")

    def finish(self, stopped_by: str | None, **extra: Any) -> None:
        """The final record: ``completed`` or ``interrupted by SIGTERM``."""
        self.write(f"interrupted by {stopped_by}" if stopped_by else "completed", **extra)

    @contextmanager
    def guard(self, global_step: Callable[[], int]) -> Iterator[None]:
        """Record "failed: ..." for an error of the block (a full disk as :class:`OutputWriteError`), and release
        the lock however the block ends."""
        try:
            yield
        except BaseException as err:
            failure = storage_error(err, self.out)
            if failure is not None and self.main:
                self._drop_unfinished_save()
            self._record_failure(failure or err, global_step())
            if failure is not None:
                raise failure from err
            raise
        finally:
            self.lock.release()

    def _drop_unfinished_save(self) -> None:
        """On a full disk, remove the checkpoint whose save failed (unmarked, newer than any complete one: it could
        never be resumed, and a resume would remove it anyway), so the record can still say what happened."""
        latest = latest_complete_checkpoint(self.out)
        try:
            remove_incomplete_after(self.out, checkpoint_step(latest) if latest else 0)
        except OSError as err:
            logger.warning("could not remove the unfinished checkpoint: %s", err)

    def _record_failure(self, err: BaseException, step: int) -> None:
        try:
            self.write(f"failed: {type(err).__name__}: {err}", global_step=step)
        except OSError as again:  # e.g. the disk is still full: the error itself says what happened
            logger.warning("could not update %s: %s", self.out / RUN_FILE, again)

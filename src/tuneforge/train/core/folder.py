"""The output folder's lock and storage errors (used by :mod:`tuneforge.train.core.lifecycle`).

* :class:`OutputLock` - ``output_dir/.tuneforge.lock`` holding ``{"pid", "host", "started"}``, created atomically
  (``O_EXCL``); a live owner is an :class:`OutputDirError` naming its pid, a dead one (same host) is taken over.
* :func:`check_output_dir` - the early check of ``tuneforge train``: creatable, writable, not in use.
* :func:`storage_error` - a full disk during the run as one :class:`OutputWriteError` line: path, free space,
  the checkpoint to resume.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ...config.paths import OUTPUT_LOCK
from .checkpoints import OutputDirError, OutputWriteError, latest_complete_checkpoint
from .records import now_iso

logger = logging.getLogger(__name__)

LOCK_FILE = OUTPUT_LOCK
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_SPACE_TEXT = ("No space left on device", "StorageFull", "Disk quota exceeded")
_LOW_SPACE = 64 * 2**20  # below this, a failed write (torch reports ENOSPC as a bare RuntimeError) is a full disk


# ---- storage errors ------------------------------------------------------------------------------------------------


def free_space(path: str | os.PathLike) -> str:
    """``"1.5 GiB free"`` on the file system of ``path`` (its nearest existing parent), or ``"free space
    unknown"``."""
    where = Path(path).expanduser().absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return "free space unknown"
    return f"{_size(free)} free"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def unwritable(folder: Path, err: OSError) -> OutputDirError:
    """The error for an ``output_dir`` that cannot be created or written."""
    reason = "it is a file" if folder.exists() and not folder.is_dir() else (err.strerror or str(err))
    return OutputDirError(f"output_dir {folder} cannot be written ({reason}; {free_space(folder)}): choose a folder "
                          "you can write to")


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def storage_error(err: BaseException, out: Path) -> OutputWriteError | None:
    """An :class:`OutputWriteError` when ``err`` means the disk is full, else None: ENOSPC/EDQUOT anywhere in its
    chain, a message saying so (safetensors: "StorageFull"), or a failed write while almost no space is left
    (torch reports a full disk as a bare RuntimeError)."""
    chain = list(_chain(err))
    failed = next((e for e in chain if isinstance(e, OSError) and e.errno in _NO_SPACE), None)
    said = failed is not None or any(text in str(e) for e in chain for text in _NO_SPACE_TEXT)
    # a bare RuntimeError (torch's writer), not a subclass such as our own TrainingError
    failed_write = type(err) is RuntimeError or isinstance(err, OSError)
    if not said and not (failed_write and _low_space(out)):
        return None
    path = getattr(failed, "filename", None) or out
    latest = latest_complete_checkpoint(out)
    resume = f"; then resume_from_checkpoint: true continues from {latest.name}" if latest else ""
    return OutputWriteError(f"no space left on device writing {path} ({free_space(path)}): free some space or set "
                            f"output_dir on another disk{resume}")


def _low_space(out: Path) -> bool:
    try:
        return shutil.disk_usage(out).free < _LOW_SPACE
    except OSError:
        return False


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Fail fast, before data and model load: ``output_dir`` must be a folder this process can create and write,
    not in use by another live run. (transformers creates it anyway when the trainer is built.)

    Raises:
        OutputDirError: naming the folder, the reason and the free space, e.g. ``output_dir /proc/out cannot be
            written (No such file or directory; 0 B free): choose a folder you can write to``.
    """
    folder = Path(output_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise unwritable(folder, err) from err
    OutputLock(folder).check()


# ---- the lock -------------------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class OutputLock:
    """``output_dir/.tuneforge.lock``: one run at a time in an output folder.

    Example: ``lock = OutputLock(Path("saves/run")); lock.acquire(); ...; lock.release()``.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": platform.node(), "started": now_iso()}
        self.held = False

    def acquire(self) -> None:
        """Create the folder and the lock atomically.

        Raises:
            OutputDirError: another live run holds the lock, or the folder cannot be written.
        """
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(3):
                if self._create():
                    return
                self._take_over_if_stale()
        except OSError as err:
            raise unwritable(folder, err) from err
        raise OutputDirError(f"output_dir {folder}: another run keeps taking {self.path}; retry, or choose another "
                             "output_dir")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.owner, handle)
        self.held = True
        return True

    def _read(self) -> dict[str, Any]:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            owner = None
        return owner if isinstance(owner, dict) else {"pid": None}

    def _take_over_if_stale(self) -> None:
        owner = self._read()
        if not owner:
            return  # released meanwhile: try again
        if self.is_live(owner):
            raise self.busy(owner)
        logger.warning("taking over the stale lock %s: its run (pid %s, started %s) is gone", self.path,
                       owner.get("pid"), owner.get("started"))
        self.path.unlink(missing_ok=True)

    @staticmethod
    def is_live(owner: Mapping[str, Any]) -> bool:
        """Whether the lock's run may still be running (a run on another host is assumed to be)."""
        pid = owner.get("pid")
        return not (isinstance(pid, int) and owner.get("host") == platform.node() and not _alive(pid))

    def busy(self, owner: Mapping[str, Any]) -> OutputDirError:
        host = owner.get("host")
        where = f"pid {owner.get('pid')} on " + ("this host" if host == platform.node() else f"host {host}")
        return OutputDirError(
            f"output_dir {self.path.parent} is in use by another tuneforge run ({where}, started "
            f"{owner.get('started')}). Wait for it to end or choose another output_dir; if no run uses it, delete "
            f"{self.path}."
        )

    def check(self) -> None:
        """Raise the :class:`OutputDirError` of :meth:`acquire` when a live run holds the lock (nothing taken)."""
        owner = self._read()
        if owner and self.is_live(owner):
            raise self.busy(owner)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held and self._read().get("pid") == self.owner["pid"]:
            self.path.unlink(missing_ok=True)
        self.held = False

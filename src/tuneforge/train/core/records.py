"""What a run leaves next to its outputs: the resolved config and the run record.

* ``tuneforge_config.yaml`` - every config key with its resolved value, grouped as in ``tuneforge check``; it loads
  back through :func:`tuneforge.config.loader.load` to the same values (environment variables and secrets are left
  out: the first are not config keys, the second must not land on disk).
* ``tuneforge_run.json`` - dataset fingerprints, package versions, the tuneforge git commit when running from a
  checkout, start/end time, command line, resume point, final status and ``outputs``: the top-level entries of
  ``output_dir`` that tuneforge runs wrote (what ``overwrite_output_dir`` may remove; see ``lifecycle.py``).
  It is rewritten atomically, so a kill never leaves half a record.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ...config.report import plain
from ...config.schema import GROUPS, Config, all_specs
from ...utils.versions import package_versions
from .checkpoints import write_json_atomic

CONFIG_FILE = "tuneforge_config.yaml"
RUN_FILE = "tuneforge_run.json"
_SECRETS = frozenset({"hf_hub_token", "ms_hub_token", "hub_token"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def config_yaml(cfg: Config) -> str:
    """The resolved config as YAML, one mapping per group (env excluded, secrets blanked)."""
    specs = all_specs()
    grouped: dict[str, dict[str, Any]] = {group: {} for group in GROUPS if group != "env"}
    for key, value in cfg.to_flat().items():
        group = specs[key].group
        if group in grouped:
            grouped[group][key] = None if key in _SECRETS else plain(value)
    header = "# Fully resolved tuneforge config of this run (defaults included); `tuneforge check` reads it back.\n"
    return header + yaml.safe_dump(grouped, sort_keys=False, allow_unicode=True, width=119)


def write_config(output_dir: str | os.PathLike, cfg: Config) -> Path:
    path = Path(output_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_yaml(cfg), encoding="utf-8")
    return path


def _git(*args: str) -> str | None:
    source = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the tuneforge source checkout, or None for an installed package."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


@dataclass
class RunRecord:
    """``tuneforge_run.json``: started when the run starts, rewritten with the outcome at the end."""

    output_dir: Path
    dataset_fingerprints: dict[str, str]
    resumed_from: str | None = None
    world_size: int = 1
    started: str = field(default_factory=now_iso)
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def write(self, status: str, **extra: Any) -> Path:
        """Write the record with ``status`` (running / completed / interrupted by SIGTERM / failed: ...)."""
        record = {
            "status": status,
            "started": self.started,
            "ended": None if status == "running" else now_iso(),
            "command": self.command,
            "cwd": os.getcwd(),
            "host": platform.node(),
            "python": platform.python_version(),
            "world_size": self.world_size,
            "resumed_from": self.resumed_from,
            "dataset_fingerprints": self.dataset_fingerprints,
            "git": git_commit(),
            "packages": package_versions(),
            **extra,
        }
        path = Path(self.output_dir) / RUN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)
        return path


def read_record(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run record of ``output_dir``, or None when there is none (or it is not a JSON object).

    Example: ``read_record("saves/run")["outputs"]`` → ``["checkpoint-4", "trainer_log.jsonl", ...]``.
    """
    try:
        record = json.loads((Path(output_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None

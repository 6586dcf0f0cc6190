"""What a model, adapter or tokenizer source must hold, judged from file names only (nothing is loaded).

A source is a local folder, a hub id (``owner/name``), or neither (an error). Examples::

    source_kind("./saves/lora")           # "local" (a path, whether or not it exists)
    source_kind("Qwen/Qwen2.5-0.5B")      # "hub"
    source_kind("my model")               # "invalid"
    model_folder_problem(Path("m"), needs_weights=True)   # "has no config.json" or None
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

# Hub repository ids: owner/name, letters, digits, '-', '_', '.', at most 96 characters each.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
# Any one of these means the folder carries a tokenizer (a byte-level one may have tokenizer_config.json only).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "sentencepiece.bpe.model", "*.tiktoken")
ADAPTER_CONFIG = "adapter_config.json"
VALUE_HEAD = "value_head.safetensors"
_TRUE = ("1", "true", "yes", "on")

SourceKind = Literal["local", "hub", "invalid"]

OUTPUT_LOCK = ".tuneforge.lock"  # a run's lock in its output_dir (train/core/folder.py); never content


def source_kind(name: str) -> SourceKind:
    """``local`` when it exists or can only be a path; ``hub`` for an ``owner/name`` id; else ``invalid``."""
    if Path(name).expanduser().exists():
        return "local"
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return "local"
    return "hub" if _HUB_ID.match(name) and ".." not in name and "--" not in name else "invalid"


def _has_any(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(folder.glob(pattern), None) is not None for pattern in patterns)


def missing_folder(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    return None if path.is_dir() else "is a file, not a folder"


def tokenizer_problem(folder: Path) -> str | None:
    """Why ``folder`` has no tokenizer (the files looked for), or None when it has one."""
    if _has_any(folder, TOKENIZER_FILES):
        return None
    return "has no tokenizer: none of " + ", ".join(TOKENIZER_FILES) + " is in the folder"


def model_folder_problem(folder: Path, needs_weights: bool, needs_tokenizer: bool = True) -> str | None:
    """Why ``folder`` cannot be loaded as a model: missing, no config.json, no weights, no tokenizer; else None.

    A reference or reward model is read with the run's tokenizer, so it needs none of its own.
    """
    problem = missing_folder(folder)
    if problem:
        return problem
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        return f"is a LoRA adapter ({ADAPTER_CONFIG}), not a model: give it as adapter_name_or_path and its base " \
               "model as model_name_or_path"
    if not (folder / "config.json").is_file():
        return "has no config.json, so it is not a model folder"
    if needs_weights and not _has_any(folder, _WEIGHTS):
        return "has config.json but no weights (*.safetensors or *.bin); set train_from_scratch: true to start " \
               "from random weights"
    return tokenizer_problem(folder) if needs_tokenizer else None


def adapter_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a LoRA adapter (missing, or no adapter_config.json), or None."""
    problem = missing_folder(folder)
    if problem:
        return problem
    if not (folder / ADAPTER_CONFIG).is_file():
        return f"has no {ADAPTER_CONFIG}, so it is not a LoRA adapter"
    return None


def offline(hf_hub_offline: bool, environ: Mapping[str, str]) -> bool:
    """Whether the hub may not be contacted: HF_HUB_OFFLINE, or transformers' older TRANSFORMERS_OFFLINE."""
    return hf_hub_offline or environ.get("TRANSFORMERS_OFFLINE", "").strip().lower() in _TRUE


def hub_cache(cache_dir: str | None, environ: Mapping[str, str]) -> Path:
    """The folder huggingface_hub caches repositories in (``cache_dir`` of the config wins, as in transformers)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", str(Path.home())), ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def in_hub_cache(repo_id: str, needed: str, cache: Path) -> bool:
    """Whether a snapshot of ``repo_id`` holding ``needed`` (e.g. config.json) is in the hub cache."""
    snapshots = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    return snapshots.is_dir() and any((snap / needed).exists() for snap in snapshots.iterdir())

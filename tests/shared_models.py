"""Paths to the real tokenizers in ../shared/models, and a skip when they are absent (import as `shared_models`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = Path(os.environ.get("TUNEFORGE_SHARED", REPO.parent / "shared")) / "models"


def shared_model_dirs() -> list[Path]:
    """Top-level model folders of ../shared/models (complete: tokenizer + template + config)."""
    if not SHARED_MODELS.is_dir():
        return []
    return sorted(p for p in SHARED_MODELS.iterdir() if p.is_dir() and (p / "tokenizer_config.json").is_file())


def shared_tokenizer_dirs() -> list[Path]:
    """Every folder with a tokenizer: the top level plus tokenizer-only/."""
    extra = SHARED_MODELS / "tokenizer-only"
    more = sorted(p for p in extra.iterdir() if p.is_dir()) if extra.is_dir() else []
    return shared_model_dirs() + more


def require_shared(name: str) -> Path:
    """Path of one shared model folder, or skip the test with the reason."""
    path = SHARED_MODELS / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared model fixtures live in ../shared/models)")
    return path

"""Paths to the real tokenizers in ../shared/models, and a skip when they are absent (import as `shared_models`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = Path(os.environ.get("TUNEFORGE_SHARED", REPO.parent / "shared")) / "models"
# .ci/run sets it: a test that needs ../shared must run there, so a missing folder fails instead of skipping
REQUIRED = os.environ.get("TUNEFORGE_REQUIRE_SHARED") == "1"
NAMES = ("require_shared", "shared_model_dirs", "shared_tokenizer_dirs", "SHARED_MODELS")


class SharedModelsMissing(RuntimeError):
    """../shared/models is absent although TUNEFORGE_REQUIRE_SHARED=1."""


def _absent(path: Path) -> None:
    message = f"{path} is absent (the shared model fixtures live in ../shared/models)"
    if REQUIRED:
        raise SharedModelsMissing(message + "; TUNEFORGE_REQUIRE_SHARED=1 forbids skipping the tests that need it")
    pytest.skip(message)


def shared_model_dirs() -> list[Path]:
    """Top-level model folders of ../shared/models (complete: tokenizer + template + config)."""
    if not SHARED_MODELS.is_dir():
        if REQUIRED:
            _absent(SHARED_MODELS)
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
        _absent(path)
    return path

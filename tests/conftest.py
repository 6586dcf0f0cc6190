"""Shared test setup: offline, one thread, and helpers for the real tokenizers in ../shared/models."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

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


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


# Tiny offline model fixtures (tuneforge.testing): built once per session, shared by every test that needs them.
@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The shipped 1024-token ChatML tokenizer; treat it as read-only (it is shared by the whole session)."""
    from tuneforge.testing import load_tiny_tokenizer

    return load_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny llama folder (seed 0): config, safetensors, generation config, tokenizer, chat template."""
    from tuneforge.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), arch="llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2_model_dir(tmp_path_factory) -> Path:
    """Same as ``tiny_model_dir`` with the qwen2 architecture (q/k/v biases, tied embeddings)."""
    from tuneforge.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2", seed=0)

"""Shared test setup: offline, one thread, and helpers for the real tokenizers in ../shared/models."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path

import pytest

from shared_models import NAMES, SHARED_MODELS, require_shared, shared_model_dirs, shared_tokenizer_dirs  # noqa: F401


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


def pytest_collection_modifyitems(config, items):
    """Mark ``shared`` every test of a module that reaches for ../shared/models (``-m "not shared"`` runs the rest)."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(name in vars(module) for name in NAMES):
            item.add_marker(pytest.mark.shared)


_SKIPPED_SHARED: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "shared" in report.keywords:
        _SKIPPED_SHARED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under TUNEFORGE_REQUIRE_SHARED=1 (CI) a skipped ``shared`` test fails the run: it must run there."""
    from shared_models import REQUIRED

    if REQUIRED and _SKIPPED_SHARED:
        session.exitstatus = 1
        print(f"\nTUNEFORGE_REQUIRE_SHARED=1 but {len(_SKIPPED_SHARED)} shared test(s) were skipped: "
              + ", ".join(_SKIPPED_SHARED[:5]))

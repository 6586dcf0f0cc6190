"""Fixtures of the trainer tests (helpers live in trainkit.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """The shipped tiny tokenizer (read-only, shared)."""
    from tuneforge.testing import load_tiny_tokenizer

    return load_tiny_tokenizer()

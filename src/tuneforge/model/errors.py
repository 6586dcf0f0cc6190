"""The one error type the model package raises for problems the user can fix (config, packages, machine)."""

from __future__ import annotations

from ..errors import TuneforgeError


class ModelLoadError(TuneforgeError, ValueError):
    """A model, tokenizer or adapter cannot be loaded as configured; the message says what to change.

    The CLI prints the message and exits with status 2, without a traceback.
    """

"""The user-facing error of chat, api, export and predict (the commands print it and exit 2, no traceback)."""

from __future__ import annotations

from ..errors import TuneforgeError


class InferError(TuneforgeError, ValueError):
    """A request the inference commands cannot honour; the message says what was asked, why not, and what to do."""

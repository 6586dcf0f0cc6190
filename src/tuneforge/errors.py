"""The root of every error a user can fix: a bad config, data file, model folder or request.

The CLI catches :class:`TuneforgeError`, prints its message (and ``messages``, one line each) and exits with
status 2, never a traceback. Anything else is a bug or a failure of the run itself (exit 1).

Example::

    class DataError(TuneforgeError, ValueError): ...
    raise DataError("train.jsonl:3: output is empty")   # `tuneforge train` prints it and exits 2
"""

from __future__ import annotations


class TuneforgeError(Exception):
    """Bad input the user can correct; the message says what, where, and what to do instead.

    A subclass may set ``self.messages``: extra detail lines (bad rows, further problems), printed under the
    message.
    """

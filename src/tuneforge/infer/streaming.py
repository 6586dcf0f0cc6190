"""Token-to-text plumbing shared by streamed and batched generation.

* :class:`IncrementalDecoder` turns ids arriving one at a time into text deltas without splitting a multi-byte
  character (a token ending in half a UTF-8 sequence decodes to U+FFFD and is held back until completed);
* :class:`StopTrimmer` cuts streamed text at the first stop string, holding back a tail that could still become
  one (so ``"<|end"`` is never sent when ``"<|end|>"`` is a stop);
* :class:`QueueStreamer` is the ``generate(streamer=...)`` end that hands new ids to another thread;
* :class:`StopCriteria` ends generation rows on stop strings or on a cancel event (client gone, stop found).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

REPLACEMENT = "\ufffd"


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in ``text``, or -1: ``find_stop("ab##c", ["#", "c"]) == 2``."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


class IncrementalDecoder:
    """Feed ids, get the newly completed text.

    Decodes a short window (``prefix_offset:``) instead of the whole answer each step, so the cost per token stays
    constant; the window starts a few tokens back because some tokenizers decode a token differently at the start
    of a string (a leading space).
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def push(self, token_id: int) -> str:
        """Add one id; returns the text it completes ('' while a character is still partial)."""
        self.ids.append(int(token_id))
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        """Whatever is still held back at the end of generation (a dangling partial character included)."""
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return after[len(before):] if len(after) > len(before) else ""


class StopTrimmer:
    """Text deltas in, safe text out; ``stopped`` turns True once a stop string appeared (the rest is dropped).

    >>> t = StopTrimmer(["###"]); t.feed("ab#"), t.feed("#"), t.feed("#cd"), t.stopped
    ('ab', '', '', True)
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        text = self.pending + delta
        cut = find_stop(text, self.stops)
        if cut >= 0:
            self.stopped, self.pending = True, ""
            return text[:cut]
        keep = self._held_back(text)
        self.pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return "" if self.stopped else text

    def _held_back(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best


class QueueStreamer(BaseStreamer):
    """Receives ids from ``generate`` (batch of one) and queues them; ``None`` marks the end.

    ``generate`` first pushes the prompt, which is skipped.
    """

    def __init__(self) -> None:
        self.queue: queue.Queue[int | None] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.queue.put(int(token))

    def end(self) -> None:
        self.queue.put(None)


class StopCriteria(StoppingCriteria):
    """Ends a row once its generated text contains a stop string; ends every row once ``cancel`` is set.

    Only the last ``window`` generated tokens are decoded per step (a stop string is at most that long in tokens,
    since every token decodes to at least one character or is a special token).
    """

    def __init__(self, tokenizer: Any, prompt_len: int, stops: Sequence[str], cancel: threading.Event | None) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = [s for s in stops if s]
        self.window = max((len(s) for s in self.stops), default=0) + 4
        self.cancel = cancel

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.cancel is not None and self.cancel.is_set():
            return done.fill_(True)
        if not self.stops:
            return done
        tails = input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):].tolist()
        for row, ids in enumerate(tails):
            done[row] = find_stop(self.tokenizer.decode(ids, skip_special_tokens=False), self.stops) >= 0
        return done

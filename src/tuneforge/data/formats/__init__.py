"""Dataset formats -> the message schema (:mod:`tuneforge.data.messages`).

``make_converter(attr, policy)`` picks the converter of ``attr.formatting`` (alpaca, sharegpt,
openai); preference (``ranking``), KTO (``columns.kto_tag``) and pretraining text (alpaca with
``columns: {"prompt": "text"}``) are variants handled inside them. :class:`BatchAligner` runs a
converter inside ``datasets.map`` and records each bad row in an ``_error`` column instead of raising.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from ..messages import COLUMNS, KTO_TAG, PROMPT, RESPONSE, SOURCE, SYSTEM, TOOLS
from ..registry import DatasetAttr
from ..validate import BAD_VALUE, BadRow, RowProblem
from .alpaca import AlpacaConverter
from .common import Converter, RowPolicy, aligned_features
from .openai import OpenAIConverter
from .sharegpt import ShareGPTConverter

__all__ = ["ERROR", "BatchAligner", "Converter", "RowPolicy", "align_rows", "aligned_features", "attr_problems",
           "make_converter"]

CONVERTERS: dict[str, type[Converter]] = {"alpaca": AlpacaConverter, "sharegpt": ShareGPTConverter,
                                          "openai": OpenAIConverter}
ERROR = "_error"
_EMPTY = {PROMPT: [], RESPONSE: [], SYSTEM: "", TOOLS: "", KTO_TAG: None}


def make_converter(attr: DatasetAttr, policy: RowPolicy) -> Converter:
    """The converter for ``attr.formatting``: ``make_converter(attr, RowPolicy())(row) -> aligned row``."""
    return CONVERTERS[attr.formatting](attr, policy)


def attr_problems(attr: DatasetAttr, policy: RowPolicy) -> list[str]:
    """Registry settings under which every row would fail, found before any row is read.

    Example: an alpaca entry with ``columns: {"prompt": "text"}`` used for sft gives
    ``["columns.response is not set, but the stage trains on responses; ..."]``.
    """
    columns = attr.columns
    problems = [f"columns.{media} is set, but tuneforge reads text data only (no images, videos or audios)"
                for media in ("images", "videos", "audios") if getattr(columns, media)]
    if attr.ranking:
        problems += [f"columns.{name} is not set, but a ranking dataset needs it (LLaMA-Factory rule: a columns "
                     "object resets every column it does not list)" for name in ("chosen", "rejected")
                     if not getattr(columns, name)]
    checks = _alpaca_problems if attr.formatting == "alpaca" else _conversation_problems
    return problems + checks(attr, policy)


def _alpaca_problems(attr: DatasetAttr, policy: RowPolicy) -> list[str]:
    columns, problems = attr.columns, []
    if not columns.prompt and not columns.query:
        problems.append("columns.prompt and columns.query are both unset: rows would have no instruction")
    if not attr.ranking and not columns.response and policy.response_required:
        problems.append("columns.response is not set, but the stage trains on responses; set it, or use this "
                        "dataset with stage pt or ppo")
    return problems


def _conversation_problems(attr: DatasetAttr, policy: RowPolicy) -> list[str]:
    problems = []
    if not attr.columns.messages:
        problems.append(f"columns.messages is not set, but {attr.formatting} rows are conversations")
    problems += [f"tags.{name} is not set, but {attr.formatting} messages need it (a tags object resets every tag "
                 "it does not list)" for name in ("role_tag", "content_tag", "user_tag", "assistant_tag")
                 if not getattr(attr.tags, name)]
    return problems


def _align_one(converter: Converter, row: dict[str, Any], source: str) -> tuple[dict[str, Any], RowProblem | None]:
    try:
        aligned = converter(row)
    except RowProblem as problem:
        return {**_EMPTY, SOURCE: source}, problem
    except (TypeError, ValueError, KeyError, AttributeError) as err:  # odd shapes the checks did not foresee
        return {**_EMPTY, SOURCE: source}, RowProblem("(row)", BAD_VALUE, f"cannot read the row: {err!r}")
    aligned[SOURCE] = source
    return aligned, None


@functools.cache
def code_version() -> str:
    """Hash of the conversion code, so that a changed converter never reuses a stale ``datasets`` cache."""
    data = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*data.joinpath("formats").glob("*.py"), data / "validate.py", data / "messages.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class BatchAligner:
    """``datasets.map(batched=True, with_indices=True)`` function: raw rows -> aligned rows + ``_error``.

    ``numbers[i]`` is the 1-based row number (line or record) of the i-th row of the mapped dataset;
    None means ``i + 1``. A good row gets ``_error == ""``, a bad one the encoded :class:`RowProblem`.
    """

    def __init__(self, converter: Converter, path: str, numbers: Any = None) -> None:
        self.converter, self.path, self.numbers = converter, path, numbers
        self.code = code_version()  # part of the map-cache fingerprint (dill hashes classes by name only)

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, ERROR)}
        keys = list(batch)
        for position, index in enumerate(indices):
            number = index + 1 if self.numbers is None else int(self.numbers[index])
            aligned, problem = _align_one(self.converter, {k: batch[k][position] for k in keys},
                                          f"{self.path}:{number}")
            for name in COLUMNS:
                out[name].append(aligned[name])
            out[ERROR].append(problem.encode() if problem else "")
        return out


def align_rows(converter: Converter, path: str, rows: list[tuple[int, dict[str, Any]]]
               ) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """Convert ``(number, row)`` pairs in Python (the exact-reading path): good aligned rows and bad rows."""
    from tqdm.auto import tqdm

    good, bad = [], []
    for number, row in tqdm(rows, desc=f"Checking {Path(path).name} row by row", disable=len(rows) < 20_000):
        aligned, problem = _align_one(converter, row, f"{path}:{number}")
        if problem is None:
            good.append(aligned)
        else:
            bad.append(BadRow(aligned[SOURCE], problem.field, problem.reason, problem.detail))
    return good, bad

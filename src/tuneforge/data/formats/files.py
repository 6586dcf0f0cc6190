"""Reading data files: through ``datasets`` builders, or exactly, row by row, when that fails.

``read_file(path, kind, stats)`` gives a :class:`RawFile`: a ``datasets`` table (fast, for scale), or the
rows of the exact reader when the builder fails or would change the data (bad JSON, bytes that are not
UTF-8, columns mixing value types). The exact reader names each problem by line::

    scan_file("f.jsonl", "json").bad[0] -> f.jsonl:2  (row)  JSON syntax error: Expecting value at column 9

Rows are numbered from 1: by line in JSON-lines and text files, by record otherwise. Blank lines
are not rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, load_dataset

from ..registry import DATA_SUFFIXES, DatasetAttr
from ..validate import (
    EMPTY_FILE,
    JSON_SYNTAX,
    NON_UTF8,
    UNREADABLE,
    WRONG_TYPE,
    BadRow,
    DataError,
    DatasetStats,
    RowProblem,
    type_name,
)

TEXT_KINDS = ("json", "csv", "text")  # the kinds the exact reader understands

@dataclass
class RawFile:
    """One file before conversion: a ``datasets`` table, or rows read exactly as ``(N, row)`` pairs."""

    path: str
    table: Dataset | None = None
    numbers: np.ndarray | None = None  # 1-based row number of each table row; None means index + 1
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table) if self.table is not None else len(self.rows)

    def column_names(self) -> list[str]:
        if self.table is not None:
            return list(self.table.column_names)
        return list(self.rows[0][1]) if self.rows else []


def discover_files(attr: DatasetAttr, stats: DatasetStats) -> tuple[list[str], str]:
    """The data files of a local dataset (a folder's in sorted order) and their one kind (json, csv, ...).

    Raises DataError for a missing path, a folder without data files or one mixing kinds; files of
    unknown type in a folder are skipped and identical files are noted in ``stats``.
    """
    base = Path(attr.path)
    if not base.exists():
        raise DataError(f"dataset '{attr.name}': {base} does not exist")
    files = attr.files()
    known = [f for f in files if f.suffix.lower() in DATA_SUFFIXES]
    if not base.is_dir() and not known:
        raise DataError(f"dataset '{attr.name}': {base} has an unknown type (known: {', '.join(DATA_SUFFIXES)})")
    if not known:
        raise DataError(f"dataset '{attr.name}': folder {base} holds no data files ({', '.join(DATA_SUFFIXES)})")
    kinds = sorted({DATA_SUFFIXES[f.suffix.lower()] for f in known})
    if len(kinds) > 1:
        listing = ", ".join(f"{f.name} ({DATA_SUFFIXES[f.suffix.lower()]})" for f in known)
        raise DataError(f"dataset '{attr.name}': folder {base} mixes file types {', '.join(kinds)}; all files of "
                        f"a folder dataset must share one type: {listing}")
    skipped = [f.name for f in files if f not in known]
    if skipped:
        stats.notes.append(f"skipped files of unknown type: {', '.join(skipped)}")
    stats.notes += _duplicate_notes(known)
    stats.files = [str(f) for f in known]
    return [str(f) for f in known], kinds[0]


def _duplicate_notes(files: list[Path]) -> list[str]:
    if len(files) < 2:
        return []
    groups: dict[str, list[str]] = {}
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        groups.setdefault(digest.hexdigest(), []).append(path.name)
    return [f"identical files (their rows count more than once): {', '.join(names)}"
            for names in groups.values() if len(names) > 1]


def read_file(path: str, kind: str, stats: DatasetStats) -> RawFile:
    """Read one file through ``datasets``; fall back to the exact reader, which names each bad row."""
    if Path(path).stat().st_size == 0:
        return _lost(path, stats, BadRow(path, "(file)", EMPTY_FILE, "the file has no data"), lost=False)
    try:
        with _quiet_builder(kind):
            table = load_dataset(kind, data_files=[path], split="train")
    except Exception as err:  # any builder failure: the exact reader below says why
        if kind not in TEXT_KINDS:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return _lost(path, stats, BadRow(path, "(file)", UNREADABLE, detail))
        return _scanned(path, kind, stats)
    if _has_json_feature(table.features) or not _valid_utf8(table):
        return _scanned(path, kind, stats)  # read exactly: mixed value types, or bytes that are not UTF-8
    if kind == "text":
        return _drop_blank_lines(path, table)
    return RawFile(path, table, _line_numbers(path, len(table)) if kind == "json" else None)


def _valid_utf8(table: Dataset) -> bool:
    """pyarrow's JSON reader copies invalid UTF-8 into string columns unchecked; full validation finds it."""
    try:
        table.data.table.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _has_json_feature(feature: Any) -> bool:
    """Whether ``datasets`` stored a column (or a nested field) as ``Json`` because its values mix types.

    Such columns are lossy in ``datasets`` 5: the string ``"4"`` reads back as the number 4.
    """
    from datasets.features import Json

    if isinstance(feature, Json):
        return True
    if isinstance(feature, dict):
        return any(_has_json_feature(f) for f in feature.values())
    inner = getattr(feature, "feature", None)
    return inner is not None and _has_json_feature(inner)


def _lost(path: str, stats: DatasetStats, bad: BadRow, lost: bool = True) -> RawFile:
    stats.read += 1
    stats.add_bad(bad)
    if lost:
        stats.lost_files.append(path)
    return RawFile(path)


def _scanned(path: str, kind: str, stats: DatasetStats) -> RawFile:
    scan = scan_file(path, kind)
    stats.read += len(scan.bad)
    for bad in scan.bad:
        stats.add_bad(bad)
    if scan.lost:
        stats.lost_files.append(path)
    return RawFile(path, rows=scan.rows)


@contextmanager
def _quiet_builder(kind: str):
    """Mute the builder's own "Failed to read file" log line: the exact reader then reports the problem by row."""
    builder_log = logging.getLogger(f"datasets.packaged_modules.{kind}.{kind}")
    level = builder_log.level
    builder_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        builder_log.setLevel(level)


def _drop_blank_lines(path: str, table: Dataset) -> RawFile:
    """Text files: one row per non-blank line, numbered by line (blank lines separate paragraphs)."""
    text = table.with_format("arrow")["text"]
    keep = np.flatnonzero(np.asarray(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)))
    if len(keep) == len(table):
        return RawFile(path, table)
    return RawFile(path, table.select(keep), keep + 1)


def _line_numbers(path: str, rows: int) -> np.ndarray | None:
    """JSON lines with blank lines: the line number of each row (``datasets`` skips blank lines)."""
    with open(path, "rb") as handle:
        if handle.read(4096).lstrip()[:1] == b"[":
            return None  # a JSON array: rows are numbered by record
        handle.seek(0)
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    if lines in (rows, rows - 1):  # no blank line (the last line may lack its newline)
        return None
    with open(path, "rb") as handle:
        numbers = [n for n, line in enumerate(handle, 1) if line.strip()]
    return np.asarray(numbers) if len(numbers) == rows else None


# File checks: the exact (slower) reading used when ``datasets`` cannot read a file, so that each
# problem gets its own line number instead of one exception for the whole file.

BOM = b"\xef\xbb\xbf"


@dataclass
class Scan:
    """A file read row by row: ``rows`` are ``(N, row)`` pairs; ``lost`` when nothing could be parsed."""

    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    lost: bool = False

    def add_bad(self, source: str, field_name: str, reason: str, detail: str = "") -> None:
        self.bad.append(BadRow(source, field_name, reason, detail))


def scan_file(path: str, kind: str) -> Scan:
    """Read a json (array or lines), csv or text file exactly, naming each bad row.

    Example: a JSON-lines file whose line 2 is ``{"a": 1`` gives one row (line 1) and
    ``BadRow("f.jsonl:2", "(row)", "JSON syntax error", "Expecting ',' delimiter at column 8")``.
    """
    with open(path, "rb") as handle:
        data = handle.read().removeprefix(BOM)
    if not data.strip():
        return Scan(bad=[BadRow(path, "(file)", EMPTY_FILE, "the file has no data")], lost=False)
    if kind == "text":
        return _scan_lines(path, data, _text_row)
    if kind == "csv":
        return _scan_csv(path, data)
    if data.lstrip()[:1] == b"[":
        return _scan_json_array(path, data)
    return _scan_lines(path, data, _json_row)


def _text_row(text: str) -> dict[str, Any]:
    return {"text": text}


def _json_row(text: str) -> dict[str, Any]:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise RowProblem("(row)", JSON_SYNTAX, f"{err.msg} at column {err.colno}") from None
    if not isinstance(row, dict):
        raise RowProblem("(row)", WRONG_TYPE, f"a row must be a JSON object, got {type_name(row)}")
    return row


def _scan_lines(path: str, data: bytes, parse) -> Scan:
    scan = Scan()
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue  # blank lines separate paragraphs or end the file; they are not rows
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            detail = f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
            scan.add_bad(f"{path}:{number}", "(row)", NON_UTF8, detail)
            continue
        try:
            scan.rows.append((number, parse(text)))
        except RowProblem as problem:
            scan.add_bad(f"{path}:{number}", problem.field, problem.reason, problem.detail)
    if not scan.rows and _is_one_object(data):
        return Scan(bad=[BadRow(path, "(file)", WRONG_TYPE, "the file holds one JSON object; expected an array "
                                                            "of rows or one row per line")], lost=True)
    return scan


def _is_one_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data.decode("utf-8", "replace")), dict)
    except json.JSONDecodeError:
        return False


# Bytes that are not UTF-8 are decoded to this noncharacter, so the text parses and the rows that held
# them can still be found (pyarrow-backed pandas refuses the surrogates of "surrogateescape").
_MARK = "\U0010fffe"


def _marked_text(data: bytes) -> tuple[str, bool]:
    """The text of ``data`` and whether it was clean UTF-8; bad bytes become ``_MARK``."""
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return re.sub("[\udc80-\udcff]+", _MARK, data.decode("utf-8", "surrogateescape")), False


def _has_bad_bytes(row: Any) -> bool:
    return _MARK in (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))


def _scan_json_array(path: str, data: bytes) -> Scan:
    text, clean = _marked_text(data)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        detail = f"{err.msg} at line {err.lineno} column {err.colno}"
        return Scan(bad=[BadRow(f"{path}:{err.lineno}", "(file)", JSON_SYNTAX, detail)], lost=True)
    if not isinstance(rows, list):
        return Scan(bad=[BadRow(path, "(file)", WRONG_TYPE, f"expected an array of rows, got {type_name(rows)}")],
                    lost=True)
    scan = Scan()
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            scan.add_bad(f"{path}:{number}", "(row)", WRONG_TYPE, f"a row must be a JSON object, got {type_name(row)}")
        elif not clean and _has_bad_bytes(row):
            scan.add_bad(f"{path}:{number}", "(row)", NON_UTF8, "the row holds bytes that are not UTF-8")
        else:
            scan.rows.append((number, row))
    return scan


def _scan_csv(path: str, data: bytes) -> Scan:
    import io

    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(_marked_text(data)[0]))
    except (ValueError, pd.errors.ParserError) as err:
        return Scan(bad=[BadRow(path, "(file)", UNREADABLE, str(err).strip().splitlines()[0])], lost=True)
    scan = Scan()
    for number, row in enumerate(frame.astype(object).where(frame.notna(), None).to_dict("records"), 1):
        bad = [column for column, value in row.items() if isinstance(value, str) and _has_bad_bytes(value)]
        if bad:
            scan.add_bad(f"{path}:{number}", bad[0], NON_UTF8, "the value holds bytes that are not UTF-8")
        else:
            scan.rows.append((number, row))
    return scan

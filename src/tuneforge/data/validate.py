"""Row validation and the data report: every bad row is named by ``file:N``, field and reason.

A converter raises :class:`RowProblem` for a row it cannot use; the loader turns it into a
:class:`BadRow`, drops the row and counts it. At the end of a dataset :func:`check_stats` fails
the run with :class:`DataError` when nothing is left or too many rows were bad::

    data/chat.jsonl:3  conversations[2].from  wrong role order: 'human' where a reply ('gpt' or
                       'function_call') was expected

``N`` is the line number for JSON-lines and text files, and the record number (1-based) otherwise.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import TuneforgeError
from .messages import ASSISTANT_ROLES, USER_ROLES

MISSING = "missing field"
WRONG_TYPE = "wrong type"
ROLE_ORDER = "wrong role order"
EMPTY = "empty content"
BAD_VALUE = "invalid value"
NON_UTF8 = "non-UTF-8 bytes"
JSON_SYNTAX = "JSON syntax error"
EMPTY_FILE = "empty file"
UNREADABLE = "unreadable file"

SHOWN = 20  # bad rows printed in full; the rest are only counted


class RowProblem(ValueError):
    """Why one row cannot be used: the field (as the user names it), a reason category and a detail."""

    def __init__(self, field_name: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{field_name}: {reason}" + (f": {detail}" if detail else ""))
        self.field, self.reason, self.detail = field_name, reason, detail

    def encode(self) -> str:
        """One-string form stored in the ``_error`` column while converting (``""`` means no problem)."""
        return json.dumps([self.field, self.reason, self.detail], ensure_ascii=False)

    @classmethod
    def decode(cls, text: str) -> RowProblem:
        return cls(*json.loads(text))


@dataclass(frozen=True)
class BadRow:
    """A dropped row: ``BadRow("a.jsonl:3", "output", "missing field", "...")``."""

    source: str
    field: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.source}  {self.field}  {self.reason}{tail}"


class DataError(TuneforgeError, ValueError):
    """The data cannot be used; the CLI exits with 2.

    ``messages`` holds one line per bad row (the first ones shown), ``report`` the :class:`DataReport`
    of what was loaded so far (None when the failure came before any row was read).
    """

    def __init__(self, message: str, messages: list[str] | None = None, report: DataReport | None = None) -> None:
        super().__init__(message)
        self.messages = list(messages or [])
        self.report = report


def type_name(value: Any) -> str:
    """JSON-ish name of a Python value's type, for messages: ``type_name([1]) == "list"``."""
    names = {str: "string", bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def clip(text: str, width: int = 60) -> str:
    """``repr`` of a value, shortened for a one-line message."""
    shown = repr(text)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


@dataclass
class Turn:
    """One message on its way into the schema, with where it came from.

    ``Turn("user", "Hi", "conversations[0]", "human", "value", "from")``: canonical role, raw content
    (checked later), the field to name in a message, the role as the user's data spells it, and the
    keys of the content and the role inside that field (if it is an object).
    """

    role: str
    content: Any
    field: str
    tag: str
    content_key: str = ""
    role_key: str = ""

    def where(self, key: str) -> str:
        return f"{self.field}.{key}" if key else self.field

    def message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def check_content(turn: Turn) -> None:
    """The content must be a non-blank string; a function call must also be valid JSON."""
    where = turn.where(turn.content_key)
    if turn.content is None:
        raise RowProblem(where, MISSING, f"the {turn.tag} message has no content")
    if not isinstance(turn.content, str):
        raise RowProblem(where, WRONG_TYPE, f"expected a string, got {type_name(turn.content)}")
    if not turn.content.strip():
        raise RowProblem(where, EMPTY, f"the {turn.tag} message is empty")
    if turn.role == "function":
        check_call(turn.content, where)


def check_call(content: str, where: str) -> None:
    """A function message holds JSON ``{"name", "arguments"}`` or a list of them (what the templates parse)."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError as err:
        raise RowProblem(where, BAD_VALUE, f"a function call must be JSON ({err.msg}): {clip(content)}") from None
    calls = value if isinstance(value, list) else [value]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"] for c in calls):
        raise RowProblem(where, BAD_VALUE, f"a function call needs a 'name' (and 'arguments'): {clip(content)}")


def _side(role: str) -> str:
    return "prompt" if role in USER_ROLES else "reply"


def check_order(turns: list[Turn], tags: dict[str, str | None]) -> None:
    """Turns alternate: user or observation first, then assistant or function, and so on.

    ``tags`` maps canonical roles to the user's names, for the message: ``{"user": "human", ...}``.
    """
    for index, turn in enumerate(turns):
        want = "prompt" if index % 2 == 0 else "reply"
        if _side(turn.role) != want:
            roles = USER_ROLES if want == "prompt" else ASSISTANT_ROLES
            names = " or ".join(repr(tags.get(r) or r) for r in roles)
            where = turn.where(turn.role_key)
            kind = "a user turn" if want == "prompt" else "a reply"
            raise RowProblem(where, ROLE_ORDER, f"{turn.tag!r} where {kind} ({names}) was expected")


def check_reply(turn: Turn) -> None:
    """A response (or chosen/rejected) message comes from the assistant side."""
    if turn.role not in ASSISTANT_ROLES:
        raise RowProblem(turn.where(turn.role_key), ROLE_ORDER,
                         f"a response must be an assistant or function message, got {turn.tag!r}")


@dataclass
class DatasetStats:
    """Counts for one dataset: rows read, kept and dropped (by reason), plus the first bad rows."""

    name: str
    files: list[str] = field(default_factory=list)
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    bad_rows: list[BadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lost_files: list[str] = field(default_factory=list)
    counted: bool = True  # False for a hub stream: rows are checked as they are read, never counted

    @property
    def bad(self) -> int:
        return sum(self.dropped.values())

    def add_bad(self, row: BadRow) -> None:
        self.dropped[row.reason] += 1
        if len(self.bad_rows) < SHOWN:
            self.bad_rows.append(row)

    def headline(self) -> str:
        if not self.counted:
            return f"dataset '{self.name}': streamed; bad rows are dropped as they are read (not counted)"
        files = f"{len(self.files)} file" + ("s" if len(self.files) != 1 else "")
        return f"dataset '{self.name}' ({files}): read {self.read}, kept {self.kept}, dropped {self.bad}"

    def format(self) -> str:
        lines = [self.headline()]
        lines += [f"    {reason}: {count}" for reason, count in sorted(self.dropped.items())]
        lines += [f"    note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class DataReport:
    """The validation summary of a run; ``format()`` gives the text, the properties the counts."""

    datasets: list[DatasetStats] = field(default_factory=list)

    @property
    def read(self) -> int:
        return sum(s.read for s in self.datasets)

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.datasets)

    @property
    def dropped(self) -> Counter:
        return sum((s.dropped for s in self.datasets), Counter())

    def counts(self) -> dict[str, Any]:
        """``{"read": 52, "kept": 50, "dropped": {"missing field": 2}}``."""
        return {"read": self.read, "kept": self.kept, "dropped": dict(self.dropped)}

    def bad_rows(self) -> list[BadRow]:
        return [row for stats in self.datasets for row in stats.bad_rows]

    def format(self, limit: int = SHOWN) -> str:
        lines = ["Data summary:"] + [s.format() for s in self.datasets]
        lines.append(f"total: read {self.read}, kept {self.kept}, dropped {sum(self.dropped.values())}")
        lines += format_bad_rows(self.bad_rows(), sum(self.dropped.values()), limit)
        return "\n".join(lines)


def format_bad_rows(rows: list[BadRow], total: int, limit: int = SHOWN) -> list[str]:
    """The first ``limit`` bad rows, one a line, and how many more were left out."""
    if not rows:
        return []
    shown = rows[:limit]
    lines = [f"bad rows (file:N  field  reason; the first {len(shown)} of {total}):"]
    lines += [f"  {row}" for row in shown]
    if total > len(shown):
        lines.append(f"  ... and {total - len(shown)} more")
    return lines


def check_stats(stats: DatasetStats, max_bad_rows: float) -> None:
    """Fail when a file was lost, nothing is left, or the bad share is above ``max_bad_rows``.

    Example: read 100, dropped 6, ``max_bad_rows=0.05`` -> DataError ("6.0% of the rows are bad").
    """
    if not stats.counted:
        return
    problem = _threshold_problem(stats, max_bad_rows)
    if problem is None:
        return
    rows = [str(row) for row in stats.bad_rows]
    text = "\n".join([f"dataset '{stats.name}': {problem}", stats.format(), *format_bad_rows(stats.bad_rows,
                                                                                             stats.bad)])
    raise DataError(text, rows, DataReport([stats]))


def _threshold_problem(stats: DatasetStats, max_bad_rows: float) -> str | None:
    if stats.lost_files:
        return f"{', '.join(stats.lost_files)} could not be read at all; fix the file(s) listed below"
    if stats.kept == 0:
        return "no usable rows are left" if stats.read else "the dataset has no rows"
    share = stats.bad / stats.read if stats.read else 0.0
    if share > max_bad_rows:
        return (f"{share:.1%} of the rows are bad, more than max_bad_rows={max_bad_rows:g} allows; fix them or "
                "raise max_bad_rows")
    return None

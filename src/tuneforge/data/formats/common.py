"""Pieces every format converter shares: reading typed cells, the row policy, the aligned features.

A converter is a callable ``row -> aligned dict`` that raises :class:`RowProblem` for a row it cannot use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..messages import KTO_TAG, PROMPT, RESPONSE, SOURCE, SYSTEM, TOOLS
from ..registry import DatasetAttr
from ..validate import BAD_VALUE, EMPTY, MISSING, WRONG_TYPE, RowProblem, Turn, check_content, check_reply, clip
from ..validate import type_name as tname


def aligned_features():
    """The ``datasets`` features of the message schema (built lazily: ``datasets`` is a slow import)."""
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    return Features({PROMPT: messages, RESPONSE: messages, SYSTEM: Value("string"), TOOLS: Value("string"),
                     KTO_TAG: Value("bool"), SOURCE: Value("string")})


@dataclass(frozen=True)
class RowPolicy:
    """What a row must hold for the stage.

    ``RowPolicy(response_required=False)`` lets rows without a response through (pt, ppo, predict);
    sft, rm, dpo and kto need one.
    """

    response_required: bool = True


class Converter:
    """Base of the format converters: ``Converter(attr, policy)(row) -> aligned row``."""

    def __init__(self, attr: DatasetAttr, policy: RowPolicy) -> None:
        self.attr, self.policy = attr, policy
        self.columns, self.tags = attr.columns, attr.tags

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def cell(row: dict[str, Any], column: str | None) -> Any:
    """The value of ``column`` (None when the column is not configured or absent from the row)."""
    return row.get(column) if column else None


def optional_text(row: dict[str, Any], column: str | None) -> str:
    """A string cell that may be missing: ``None -> ""``; any other non-string is a wrong type."""
    value = cell(row, column)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowProblem(str(column), WRONG_TYPE, f"expected a string, got {tname(value)}")
    return value


def tools_text(row: dict[str, Any], column: str | None) -> str:
    """Tool schemas as a JSON string ("" when none). A list/object cell is dumped; a string must be JSON."""
    value = cell(row, column)
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        raise RowProblem(str(column), WRONG_TYPE, f"expected a JSON string or list of tools, got {tname(value)}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise RowProblem(str(column), BAD_VALUE, f"tools must be JSON ({err.msg}): {clip(value)}") from None
    if not isinstance(parsed, list | dict):
        raise RowProblem(str(column), WRONG_TYPE, f"tools must be a JSON list or object, got {tname(parsed)}")
    return value


def kto_tag(row: dict[str, Any], column: str | None) -> bool | None:
    """The KTO label: True (desirable), False (undesirable); None when the dataset has no kto_tag column."""
    if not column:
        return None
    value = row.get(column)
    if value is None:
        raise RowProblem(column, MISSING, "a KTO row needs a true/false label")
    if not isinstance(value, bool):
        raise RowProblem(column, WRONG_TYPE, f"the KTO label must be true or false, got {tname(value)} {clip(value)}")
    return value


def no_response(policy: RowPolicy, where: str, detail: str = "the row has no response to train on") -> list[Turn]:
    """The empty response of an unsupervised row, or the problem when the stage needs one."""
    if policy.response_required:
        raise RowProblem(where, MISSING, detail)
    return []


def finish(prompt: list[Turn], response: list[Turn], system: str, tools: str, tag: bool | None) -> dict[str, Any]:
    """Check every message and build the aligned row (without ``_source``)."""
    for turn in prompt + response:
        check_content(turn)
    for turn in response:
        check_reply(turn)
    if not prompt:
        raise RowProblem("(row)", EMPTY, "the row has no prompt")
    return {PROMPT: [t.message() for t in prompt], RESPONSE: [t.message() for t in response], SYSTEM: system,
            TOOLS: tools, KTO_TAG: tag}

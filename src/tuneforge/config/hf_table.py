"""The transformers training keys as data: ``tables/training_args.yaml``, read without importing transformers.

Resolving a config needs the name, type, default and help of every ``Seq2SeqTrainingArguments`` field; importing
transformers to list them costs seconds, so ``scripts/gen_training_args.py`` writes them once into a table and
``tests/config/test_training_args_table.py`` fails when the table no longer matches the installed transformers.

A row of the table::

    - name: eval_strategy
      type: [str]                      # union members: bool, int, float, str, dict, list[str], None
      literal: [no, steps, epoch]      # optional: the only values allowed (an Enum or Literal in transformers)
      default: 'no'
      help: The evaluation strategy to use.
      constraints: {}                  # optional: choices / bounds, as our own fields declare them
"""

from __future__ import annotations

import copy
import enum
import functools
import types
import typing
from typing import Any, Literal

from .fields import FieldSpec

TABLE = "training_args.yaml"
_TOKENS: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "dict": dict,
                           "list[str]": list[str], "None": type(None)}
_KEPT_CONSTRAINTS = ("choices", "ge", "gt", "le", "lt")


def _member_token(member: Any) -> str:
    """Our name of one union member; what we cannot coerce to (Path, GenerationConfig) is read as a string."""
    if member is type(None):
        return "None"
    origin = typing.get_origin(member)
    if origin is list or member is list:
        return "list[str]"  # coerce reads any non-scalar item type as a string
    if origin is dict or member is dict:
        return "dict"
    name = getattr(member, "__name__", "")
    return name if name in _TOKENS else "str"


def _members(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def describe_type(tp: Any) -> dict[str, Any]:
    """``IntervalStrategy | str`` → ``{"type": ["str"], "literal": ["no", "steps", "epoch"]}``."""
    tokens: list[str] = []
    literal: list[Any] = []
    for member in _members(tp):
        if typing.get_origin(member) is Literal:
            literal.extend(typing.get_args(member))
        elif isinstance(member, type) and issubclass(member, enum.Enum):
            literal.extend(e.value for e in member)
        elif (token := _member_token(member)) not in tokens:
            tokens.append(token)
    return {"type": tokens, "literal": literal} if literal else {"type": tokens}


def _plain_default(default: Any) -> Any:
    value = default() if callable(default) else default
    return value.value if isinstance(value, enum.Enum) else value


def row_of(spec: FieldSpec) -> dict[str, Any]:
    """One table row from a FieldSpec read off the transformers dataclass."""
    row: dict[str, Any] = {"name": spec.name, **describe_type(spec.type), "default": _plain_default(spec.default),
                           "help": spec.help}
    constraints = {k: list(v) if k == "choices" else v for k, v in spec.constraints.items() if k in _KEPT_CONSTRAINTS}
    if constraints:
        row["constraints"] = constraints
    return row


def rows_from_transformers() -> list[dict[str, Any]]:
    """The table as the installed transformers declares it (imports transformers: for the script and the test)."""
    from transformers import Seq2SeqTrainingArguments

    from .fields import specs_of

    return [row_of(s) for s in specs_of(Seq2SeqTrainingArguments, "training", origin="transformers")]


def _type_of(row: dict[str, Any]) -> Any:
    members = [_TOKENS[t] for t in row["type"]]
    if row.get("literal"):
        members.insert(0, Literal[tuple(row["literal"])])
    return functools.reduce(lambda a, b: typing.Union[a, b], members)  # noqa: UP007 (members are runtime objects)


def _default_of(value: Any) -> Any:
    """Mutable defaults become factories, so no two configs share one list."""
    return functools.partial(copy.deepcopy, value) if isinstance(value, list | dict) else value


def spec_of(row: dict[str, Any], group: str) -> FieldSpec:
    """The FieldSpec of one table row (group placed by the caller)."""
    return FieldSpec(row["name"], group, _type_of(row), _default_of(row["default"]), row["help"],
                     dict(row.get("constraints", {})), "transformers")

"""Coerce raw YAML/CLI values to a field's declared type and check its constraints.

``coerce(spec, value)`` returns the typed value or raises :class:`CoerceError`
whose message names what is allowed. Example: ``lora_rank: "16"`` becomes
``16``; ``lora_rank: 0`` fails with "must be >= 1"; ``learning_rate: 1e-5``
(a string to PyYAML) becomes ``1e-05``.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from pathlib import PurePath
from typing import Any, Literal

from .fields import FieldSpec

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_NULL = {"null", "~", ""}


class CoerceError(ValueError):
    """A value that cannot become the declared type; the message says what is allowed."""


def _union_members(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _literal_choices(members: tuple[Any, ...]) -> list[Any]:
    choices: list[Any] = []
    for m in members:
        if typing.get_origin(m) is Literal:
            choices.extend(typing.get_args(m))
        elif isinstance(m, type) and issubclass(m, enum.Enum):
            choices.extend(e.value for e in m)
    return choices


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CoerceError(f"expected true or false, got {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise CoerceError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                pass
            else:
                if as_float.is_integer():
                    return int(as_float)
    raise CoerceError(f"expected an integer, got {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CoerceError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise CoerceError(f"expected a number, got {value!r}")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise CoerceError(f"expected a string, got {value!r}")
    if isinstance(value, int | float | PurePath):
        return str(value)
    raise CoerceError(f"expected a string, got {type(value).__name__} {value!r}")


def _split(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _to_list(item_type: Any, value: Any) -> list[Any]:
    convert = _SCALARS.get(item_type, _to_str)
    out = []
    for i, item in enumerate(_split(value)):
        try:
            out.append(convert(item))
        except CoerceError as err:
            raise CoerceError(f"item {i}: {err}") from None
    return out


def _to_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, dict):
            return loaded
    raise CoerceError(f"expected a mapping (or a JSON object string), got {value!r}")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str, dict: _to_dict}


def _try_member(member: Any, value: Any) -> Any:
    if member in _SCALARS:
        return _SCALARS[member](value)
    origin = typing.get_origin(member)
    if origin is list:
        (item_type,) = typing.get_args(member) or (str,)
        return _to_list(item_type, value)
    if origin is dict:
        return _to_dict(value)
    raise CoerceError(f"unsupported type {member!r}")


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NULL)


def _python_none(value: Any, members: tuple[Any, ...]) -> bool:
    """``None`` written Python-style means null, except where a string is a valid value (``report_to: none``)."""
    return isinstance(value, str) and value.strip().lower() == "none" and str not in members and not any(
        typing.get_origin(m) is Literal and "none" in typing.get_args(m) for m in members
    )


def _convert(spec: FieldSpec, value: Any) -> Any:
    if spec.constraints.get("spaced") and isinstance(value, list | tuple):
        value = " ".join(str(item) for item in value)  # `fsdp: [full_shard, auto_wrap]` -> "full_shard auto_wrap"
    members = _union_members(spec.type)
    nullable = type(None) in members
    if _is_null(value) or _python_none(value, members):
        if nullable:
            return None
        raise CoerceError("may not be empty")
    choices = _literal_choices(members) or list(spec.constraints.get("choices") or [])
    if choices:
        return _choose(choices, value, spec)
    concrete = [m for m in members if m is not type(None)]
    if spec.constraints.get("listy"):
        concrete = [list[str]] + [m for m in concrete if m is not str]
    # prefer the member that matches the raw Python type, then the first that converts
    concrete.sort(key=lambda m: 0 if isinstance(m, type) and type(value) is m else 1)
    errors = []
    for member in concrete:
        try:
            return _try_member(member, value)
        except CoerceError as err:
            errors.append(str(err))
    raise CoerceError(errors[0] if len(errors) == 1 else "; or ".join(dict.fromkeys(errors)))


def _choose(choices: list[Any], value: Any, spec: FieldSpec) -> Any:
    if value is False and "no" in choices and False not in choices:
        return "no"  # YAML 1.1 reads a bare `no` (save_strategy: no) as false
    for choice in choices:
        if value == choice or (isinstance(value, str) and isinstance(choice, str) and value.strip() == choice):
            return choice
        if isinstance(choice, bool) and not isinstance(value, str) and value is choice:
            return choice
    for choice in choices:  # YAML may type `fa2` or `8` differently from the declaration
        if str(value).strip().lower() == str(choice).lower():
            return choice
    shown = ", ".join(repr(c) for c in choices if c is not None)
    raise CoerceError(f"{value!r} is not one of {shown}")


def _check_bounds(spec: FieldSpec, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    c = spec.constraints
    if "ge" in c and value < c["ge"]:
        raise CoerceError(f"must be >= {c['ge']}, got {value}")
    if "gt" in c and value <= c["gt"]:
        raise CoerceError(f"must be > {c['gt']}, got {value}")
    if "le" in c and value > c["le"]:
        raise CoerceError(f"must be <= {c['le']}, got {value}")
    if "lt" in c and value >= c["lt"]:
        raise CoerceError(f"must be < {c['lt']}, got {value}")


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Return ``value`` converted to ``spec``'s type, or raise :class:`CoerceError`."""
    result = _convert(spec, value)
    _check_bounds(spec, result)
    if isinstance(result, list):
        for item in result:
            _check_bounds(spec, item)
    return result


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is None and hasattr(tp, "__name__"):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe_type(spec: FieldSpec) -> str:
    """Human-readable type, e.g. ``int``, ``str | None``, ``one of: auto, sdpa``."""
    members = _union_members(spec.type)
    choices = _literal_choices(members) or list(spec.constraints.get("choices") or [])
    nullable = type(None) in members
    if choices:
        text = "one of: " + ", ".join(str(c) for c in choices if c is not None)
        return text + (" | null" if nullable and None not in choices else "")
    names = [_type_name(m) for m in members if m is not type(None)]
    if spec.constraints.get("listy"):
        names = ["list[str] (comma-separated)"]
    if spec.constraints.get("spaced"):
        names = ["str | list[str] (space-separated)"]
    text = " | ".join(names)
    bounds = [f"{op} {spec.constraints[k]}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
              if k in spec.constraints]
    if bounds:
        text += " " + " and ".join(bounds)
    return text + (" | null" if nullable else "")

"""Keys that LLaMA-Factory configs carry but transformers 5 removed: translated or dropped, with a notice.

The rules live in ``tables/legacy.yaml``; each entry is one of

* ``to: key`` (with optional ``values`` old -> new and ``ratio_below_one``): the value moves to ``key``;
* ``into: dict_key`` + ``key: name``: the value becomes one entry of a mapping key (``fsdp_config``);
* ``drop: reason``: the key is ignored; ``refuse`` lists values that cannot be honoured (``non_default``: any value
  but ``default``), ``fix`` says what to write instead.

A value equal to the entry's ``default`` is dropped with a notice whatever the entry does. Example:
``fsdp_min_num_params: 1000`` becomes ``fsdp_config: {min_num_params: 1000}`` and ``adafactor: true`` becomes
``optim: adafactor``; ``adafactor: false`` is just dropped.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any, Protocol

from .schema import load_table

_NO_DEFAULT = object()


class RawValues(Protocol):
    """The loader's raw key -> value store (``loader._Raw``)."""

    values: dict[str, Any]
    sources: dict[str, str]

    def error(self, key: str, message: str) -> None: ...

    def notice(self, key: str, message: str) -> None: ...


def apply_legacy(raw: RawValues) -> None:
    """Translate or drop every legacy key in ``raw`` (in place), leaving a notice or an error for each."""
    table = load_table("legacy.yaml")
    for old in [k for k in raw.values if k in table]:
        rule, value, source = table[old], raw.values.pop(old), raw.sources.pop(old)
        if value == rule.get("default", _NO_DEFAULT) and "drop" not in rule:
            raw.notice(old, f"ignored: {old} is at its default {value!r} ({rule['why']})")
        elif "drop" in rule:
            _drop(raw, old, value, rule)
        elif "into" in rule:
            _into(raw, old, value, rule, source)
        else:
            _move(raw, old, value, rule, source)


def _refused(value: Any, rule: dict) -> bool:
    refuse = rule.get("refuse", [])
    if refuse == "non_default":
        return value != rule.get("default")
    return value in refuse


def _drop(raw: RawValues, old: str, value: Any, rule: dict) -> None:
    if _refused(value, rule):
        raw.error(old, f"{old}: {value!r} cannot be honoured: {rule['drop']}; {rule.get('fix', 'remove the key')}")
    else:
        raw.notice(old, f"ignored: {rule['drop']}")


def _move(raw: RawValues, old: str, value: Any, rule: dict, source: str) -> None:
    target = rule["to"]
    if target in raw.values:
        raw.error(old, f"both {old} (legacy) and {target} are set; keep only {target}")
        return
    if "values" in rule and isinstance(value, Hashable) and value in rule["values"]:
        value = rule["values"][value]
    if rule.get("ratio_below_one") and not (isinstance(value, int | float) and 0 <= value < 1):
        raw.error(old, f"{old} must be a ratio in [0, 1), got {value!r}")
        return
    raw.values[target], raw.sources[target] = value, source
    raw.notice(old, f"translated to {target}: {value!r} ({rule['why']})")


def _mapping_of(raw: RawValues, name: str) -> dict | None:
    """The mapping already given for ``name`` (a dict or a JSON object string), {} when unset, None for a file."""
    current = raw.values.get(name)
    if current is None:
        return {}
    if isinstance(current, dict):
        return dict(current)
    if isinstance(current, str):
        try:
            loaded = json.loads(current)
        except json.JSONDecodeError:
            return None
        return loaded if isinstance(loaded, dict) else None
    return None


def _into(raw: RawValues, old: str, value: Any, rule: dict, source: str) -> None:
    name, key = rule["into"], rule["key"]
    mapping = _mapping_of(raw, name)
    if mapping is None:
        raw.error(old, f"{old} cannot be merged into {name} {raw.values[name]!r} (a file): write "
                       f"\"{key}\": {json.dumps(value)} in that file and remove {old}")
        return
    if key in mapping or f"fsdp_{key}" in mapping:
        raw.error(old, f"both {old} (legacy) and {name}.{key} are set; keep only {name}.{key}")
        return
    mapping[key] = value
    raw.values[name] = mapping
    raw.sources.setdefault(name, source)
    raw.notice(old, f"translated to {name}: {{{key}: {value!r}}} ({rule['why']})")

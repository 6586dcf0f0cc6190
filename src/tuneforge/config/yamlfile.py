"""Read a YAML config strictly: a key written twice in one mapping is an error naming both lines.

PyYAML keeps the last of two equal keys without a word, so ``learning_rate`` set at line 3 and again at line 20
silently trains with the second. Example::

    read_yaml("lr: 1\\nlr: 2\\n", "a.yaml")  # ({"lr": 2}, [error: lr written twice in a.yaml, at line 1 and 2])
"""

from __future__ import annotations

from typing import Any

import yaml

from .diagnostics import ConfigError, Diagnostic

_MERGE = "tag:yaml.org,2002:merge"
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser, where PyYAML was built with libyaml


class _StrictLoader(_BASE):  # type: ignore[misc, valid-type]
    """A safe loader that records repeated keys instead of dropping the earlier value."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated: list[tuple[str, int, int]] = []


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
            continue  # `<<: *base` merges may be overridden by the keys written next to them
        key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
        if key in seen:
            loader.repeated.append((key_node.value, seen[key], line))
        else:
            seen[key] = line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(text: str, source: str) -> tuple[Any, list[Diagnostic]]:
    """Parse ``text`` into (data, one error per repeated key naming both lines); a parse error raises ConfigError."""
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError([Diagnostic("error", source, f"cannot parse: {err}")]) from None
    finally:
        loader.dispose()
    repeated = [
        Diagnostic("error", key, f"written twice in {source}, at line {first} and line {again}; keep one (YAML "
                                 "would silently use the last)")
        for key, first, again in sorted(loader.repeated, key=lambda r: r[2])
    ]
    return data, repeated

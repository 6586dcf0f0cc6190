"""Field declaration helpers shared by every parameter group.

A group is a plain dataclass; each field carries its help text and its allowed
values in ``metadata`` so that the loader, ``tuneforge check`` and the generated
``docs/parameters.md`` all read the same single declaration.

Example::

    @dataclass
    class LoraArgs:
        lora_rank: int = opt(8, "LoRA rank r.", ge=1)
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

MISSING = dataclasses.MISSING


def opt(default: Any, help: str, *, factory: Any = None, **constraints: Any) -> Any:
    """Declare a field with its default, one-line help and constraints.

    Constraints: ``ge``/``gt``/``le``/``lt`` (numeric bounds), ``choices``
    (allowed values for a free ``str``), ``listy`` (a ``str`` given as a
    comma-separated list is split), ``spaced`` (a list given for a ``str`` is
    joined with spaces).
    """
    metadata = {"help": help, **constraints}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldSpec:
    """Everything the loader needs to know about one key."""

    name: str
    group: str
    type: Any
    default: Any
    help: str
    constraints: dict[str, Any]
    origin: str  # "tuneforge" or "transformers"

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


def specs_of(cls: type, group: str, origin: str = "tuneforge") -> list[FieldSpec]:
    """Return the :class:`FieldSpec` of every init field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not MISSING else f.default_factory
        if default is MISSING:
            default = None
        meta = dict(f.metadata)
        help_text = str(meta.pop("help", "")).strip()
        out.append(FieldSpec(f.name, group, hints[f.name], default, help_text, meta, origin))
    return out

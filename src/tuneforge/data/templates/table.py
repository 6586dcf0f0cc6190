"""Templates defined as data: ``formats.yaml`` (slot templates) and ``multimodal.yaml`` (LLaMA-Factory's
multimodal names: text-only aliases, or a refusal naming the text template to use).

>>> register_table()          # done once by the registry after the family modules
>>> multimodal_hint("qwen2_vl")
"template 'qwen2_vl' is a multimodal template (images/videos/audio), not supported yet; ..."
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .base import CONTENT

HERE = Path(__file__).resolve().parent
_TUPLES = ("stops", "thought_words")


@cache
def load_yaml(name: str) -> dict[str, Any]:
    """A YAML table next to this module, e.g. ``load_yaml("formats.yaml")["cpm4"]["prefix"] == "{{bos}}"``."""
    return yaml.safe_load((HERE / name).read_text(encoding="utf-8"))


def _fields(entry: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any]:
    """The Template fields of a table entry: its ``base`` template's fields overridden by its own."""
    entry = dict(entry)
    fields: dict[str, Any] = {}
    base = entry.pop("base", None)
    if base is not None:
        fields = {f.name: getattr(registered[base], f.name) for f in dataclasses.fields(registered[base])
                  if f.name not in ("name", "doc", "example")}
    if entry.get("efficient_eos") and "assistant" not in entry and base is None:
        fields["assistant"] = CONTENT  # LLaMA-Factory: efficient_eos replies carry no EOS
    for key in _TUPLES:
        if key in entry:
            entry[key] = tuple(entry[key])
    return {**fields, **entry}


def register_table() -> None:
    """Register every entry of formats.yaml, then the accepted multimodal aliases."""
    from .registry import _TEMPLATES, register_alias, register_template

    for name, entry in load_yaml("formats.yaml").items():
        register_template(name, **_fields(entry, _TEMPLATES))
    for name, spec in load_yaml("multimodal.yaml").items():
        if spec.get("alias"):
            template = register_alias(name, spec["alias"])
            _TEMPLATES[name] = dataclasses.replace(
                template, doc=f"Multimodal name accepted for text-only data: the text format of {spec['alias']!r}.")


def multimodal_hint(name: str) -> str | None:
    """Why a refused multimodal name cannot be used and which text template to use; None for other names."""
    spec = load_yaml("multimodal.yaml").get(name)
    if spec is None or spec.get("alias"):
        return None
    hint = (f"for text-only data use template: {spec['use']} (the same turns; see docs/templates.md for what "
            "differs)" if spec.get("use") else "no text template shares its format; set template: null to use the "
            "model's own chat_template")
    return f"template {name!r} is a multimodal template (images/videos/audio), not supported yet; {hint}"


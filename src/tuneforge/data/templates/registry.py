"""The template registry: LLaMA-Factory's template names -> :class:`Template`.

>>> get_template("qwen", tokenizer).stop_words()
['<|im_end|>']
>>> resolve_template(None, tokenizer)   # the tokenizer's own chat_template (JinjaTemplate), or "empty"
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from ...utils.suggest import did_you_mean
from .base import Template, TemplateError

logger = logging.getLogger(__name__)

_TEMPLATES: dict[str, Template] = {}
# one module per family; imported on first lookup so that `registry` itself has no import cycle
FAMILIES = ("generic", "qwen", "llama", "mistral", "gemma", "phi", "yi", "deepseek", "glm", "smollm", "zephyr")
_loaded = False


class _Templates(Mapping[str, Template]):
    """Read-only view of the registry that loads the family modules on first use."""

    def __getitem__(self, name: str) -> Template:
        _load_families()
        return _TEMPLATES[name]

    def __iter__(self) -> Iterator[str]:
        _load_families()
        return iter(_TEMPLATES)

    def __len__(self) -> int:
        _load_families()
        return len(_TEMPLATES)


TEMPLATES: Mapping[str, Template] = _Templates()  # e.g. ``TEMPLATES.get("glm4").efficient_eos``


def register_template(name: str, template_class: type[Template] = Template, **fields: Any) -> Template:
    """Register ``template_class(name, **fields)``; a name can be registered once (TemplateError otherwise)."""
    if name in _TEMPLATES:
        raise TemplateError(f"template {name!r} is already registered")
    template = template_class(name=name, **fields)
    _TEMPLATES[name] = template
    return template


def register_alias(alias: str, target: str) -> Template:
    """Register ``alias`` as a copy of the registered ``target`` (e.g. ``codellama`` -> ``llama2``)."""
    if alias in _TEMPLATES:
        raise TemplateError(f"template {alias!r} is already registered")
    template = dataclasses.replace(_TEMPLATES[target], name=alias, doc=f"Alias of {target!r}.")
    _TEMPLATES[alias] = template
    return template


def _load_families() -> None:
    """Import the family modules (each template gets its module's name as ``family`` unless it set one), then the
    data tables of table.py, which may build on them."""
    global _loaded
    if not _loaded:
        _loaded = True
        for family in FAMILIES:
            before = set(_TEMPLATES)
            importlib.import_module(f"{__package__}.{family}")
            for name in set(_TEMPLATES) - before:
                if not _TEMPLATES[name].family:
                    _TEMPLATES[name] = dataclasses.replace(_TEMPLATES[name], family=family)
        from .table import register_table

        register_table()


def template_names() -> list[str]:
    """Every registered name, sorted."""
    _load_families()
    return sorted(_TEMPLATES)


def get_template(name: str, tokenizer: Any, *, default_system: str | None = None,
                 enable_thinking: bool | None = True, tool_format: str | None = None) -> Template:
    """The named template with the given overrides; TemplateError with a did-you-mean for an unknown name.

    ``tokenizer`` is only inspected: a warning is logged for stop words that are not single tokens of it
    (generation could not stop on them).
    """
    _load_families()
    if name not in _TEMPLATES:
        from .table import multimodal_hint

        hint = multimodal_hint(name)
        if hint:
            raise TemplateError(hint)
        raise TemplateError(f"unknown template {name!r}.{did_you_mean(name, _TEMPLATES)} "
                            f"Known: {', '.join(sorted(_TEMPLATES))}.")
    changes: dict[str, Any] = {"enable_thinking": enable_thinking}
    if default_system is not None:
        changes["default_system"] = default_system
    if tool_format is not None:
        from .tools import get_tool_format

        get_tool_format(tool_format)  # fail early on an unknown format
        changes["tool_format"] = tool_format
    template = dataclasses.replace(_TEMPLATES[name], **changes)
    _warn_missing_stops(template, tokenizer)
    return template


def _warn_missing_stops(template: Template, tokenizer: Any) -> None:
    if tokenizer is None:
        return
    missing = [w for w in template.stops if tokenizer.convert_tokens_to_ids(w) in (None, tokenizer.unk_token_id)]
    if missing:
        logger.warning("template %r: stop word(s) %s are not tokens of this tokenizer; is it the right template?",
                       template.name, ", ".join(missing))


def resolve_template(name: str | None, tokenizer: Any, **options: Any) -> Template:
    """``name`` -> :func:`get_template`; ``None`` -> the tokenizer's own ``chat_template`` (JinjaTemplate) when it
    has one, else ``empty``. ``options`` are get_template's keywords (default_system, enable_thinking, tool_format)."""
    if name is not None:
        return get_template(name, tokenizer, **options)
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        from .jinja import JinjaTemplate

        return JinjaTemplate.from_tokenizer(tokenizer, **options)
    return get_template("empty", tokenizer, **options)

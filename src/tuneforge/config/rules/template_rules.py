"""Errors about the chat template name and what the template allows."""

from __future__ import annotations

from collections.abc import Iterator

from . import Ctx, Finding, rule


@rule("error")
def template_known(ctx: Ctx) -> Iterator[Finding]:
    from ...data.templates.registry import template_names
    from ...data.templates.table import multimodal_hint
    from ...utils.suggest import did_you_mean

    name = ctx.data.template
    if name and name not in template_names() and multimodal_hint(name):
        yield "template", multimodal_hint(name)
    elif name and name not in template_names():
        yield "template", f"unknown template '{name}'.{did_you_mean(name, template_names())} Leave template " \
                          "empty to use the tokenizer's own chat_template"


@rule("error")
def efficient_eos_train_on_prompt(ctx: Ctx) -> Iterator[Finding]:
    """efficient_eos labels the first prompt token as EOS, which train_on_prompt would overwrite."""
    from ...data.templates.registry import TEMPLATES

    spec = TEMPLATES.get(ctx.data.template or "")
    if ctx.data.train_on_prompt and spec is not None and spec.efficient_eos:
        yield "train_on_prompt", f"template {ctx.data.template} uses efficient_eos, which cannot be combined " \
                                 "with train_on_prompt"

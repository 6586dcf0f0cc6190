"""Warning: the named chat template does not fit the model folder's tokenizer (a different model family)."""

from __future__ import annotations

from collections.abc import Iterator

from . import Ctx, Finding, rule


@rule("warning")
def template_fits_tokenizer(ctx: Ctx) -> Iterator[Finding]:
    """E.g. ``template: qwen`` with a Llama 3 folder: <|im_start|> is not a token there, the model never saw it."""
    from ...data.templates.fit import template_misfit

    name, folder = ctx.data.template, ctx.model.model_name_or_path
    misfit = template_misfit(name, folder) if name and folder else None
    if misfit is None:
        return
    guess = f" The tokenizer fits template {' / '.join(misfit.looks_like)}." if misfit.looks_like else ""
    why = ("which the model's own chat_template never writes: it is another family's format" if misfit.in_template
           else f"which the tokenizer in {folder} does not have as tokens: the text would be split into plain "
                "pieces the model never saw as a chat format")
    yield "template", (f"template '{name}' uses {', '.join(misfit.missing)}, {why}.{guess} Check the template "
                       "name, or leave template empty to use the tokenizer's own chat_template")

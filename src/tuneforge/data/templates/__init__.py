"""Chat templates under LLaMA-Factory's names, plus a Jinja template that uses the tokenizer's own chat_template.

>>> template = get_template("qwen", tokenizer)
>>> pairs = template.encode_multiturn(tokenizer, [{"role": "user", "content": "Hi"},
...                                               {"role": "assistant", "content": "Hello"}])
>>> [(prompt_ids, response_ids)] = pairs   # concatenated: tokenizer.apply_chat_template(...) ids
"""

from .base import Specials, Template, TemplateError
from .registry import get_template, register_alias, register_template, resolve_template, template_names

__all__ = ["Specials", "Template", "TemplateError", "get_template", "register_alias", "register_template",
           "resolve_template", "template_names"]

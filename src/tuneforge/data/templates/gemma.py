"""Gemma family: gemma (Gemma / Gemma 2 / Gemma 3 text, ``gemma3`` is an alias for the text part)."""

from .registry import register_alias, register_template

register_template(
    "gemma",
    prefix="{{bos}}",
    user="<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    assistant="{{content}}<end_of_turn>\n",
    system="{{content}}\n\n",
    observation="<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    system_in_user=True,
    strip_content=True,
    stops=("<end_of_turn>",),
    replace_eos=True,
    doc="Gemma -it: 'user'/'model' turns; Gemma has no system role, so the system prompt opens the first user turn.",
    example='<s><start_of_turn>user\nSYS\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n',
)
register_alias("gemma3", "gemma")

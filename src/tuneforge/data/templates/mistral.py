"""Mistral family: mistral (Mistral-7B-Instruct v0.1 with the mistral-common aligned template)."""

from .registry import register_template

register_template(
    "mistral",
    prefix="{{bos}}",
    user=" [INST] {{content}} [/INST]",
    assistant=" {{content}}{{eos}}",
    system="{{content}}\n\n",
    system_in_user=True,
    doc="Mistral-7B-Instruct-v0.1 (template of 2024-07): '<s> [INST] ... [/INST] reply</s>', the system prompt "
        "folded into the first [INST].",
    example='<s> [INST] SYS\n\nHi [/INST] Hello</s>',
)

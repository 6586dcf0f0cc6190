"""Mistral family: mistral (Mistral-7B-Instruct v0.1 with the mistral-common aligned template)."""

from .registry import register_template

register_template(
    "mistral",
    prefix="{{bos}}",
    user=" [INST] {{content}} [/INST]",
    assistant=" {{content}}{{eos}}",
    system="{{content}}\n\n",
    system_in_user=True,
    # the v0.1 chat_template has no tool syntax: LLaMA-Factory's (Mistral v0.3) tool turns
    function="[TOOL_CALLS] {{content}}{{eos}}",
    observation='[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]',
    tool_format="mistral",
    doc="Mistral-7B-Instruct-v0.1 (template of 2024-07): '<s> [INST] ... [/INST] reply</s>', the system prompt "
        "folded into the first [INST].",
    example='<s> [INST] SYS\n\nHi [/INST] Hello</s>',
)

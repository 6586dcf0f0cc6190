"""Llama family: llama2 (Llama-2-chat; ``codellama`` is an alias) and llama3 (Llama 3.1 / 3.2 / 3.3 Instruct)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..messages import Message
from .base import Specials, Template
from .registry import register_alias, register_template
from .tools import dumps, parse_tools


@dataclass(frozen=True)
class Llama3Template(Template):
    """Llama 3.1+ tool use as its chat_template renders it (``tool_format: llama3``): "Environment: ipython" opens
    the system header, the tool schemas open the first user message, and tool results are JSON-quoted strings
    (the template ``tojson``s them). Example first user turn: ``"Given the following functions, ...\n\n{schema}
    \n\nHow warm is Paris?"``. Without tools it is the plain slot template."""

    def _first_prompt(self, message: Message, system: str | None, tools: str | None, specials: Specials) -> str:
        schemas = parse_tools(tools)
        if self.tool_format != "llama3" or not schemas:
            return super()._first_prompt(message, system, tools, specials)
        plain = replace(self, system=self.system.replace("<|end_header_id|>\n\n", "<|end_header_id|>\n\n"
                                                                                    "Environment: ipython\n", 1))
        content = self.tool_formatter().tools(schemas) + self._user_content(message).strip()
        return Template._first_prompt(plain, {**message, "content": content}, system, None, specials)

    def _user_content(self, message: Message) -> str:
        if message["role"] == "observation" and self.tool_format == "llama3":
            return dumps(message["content"])
        return message["content"]


register_template(
    "llama2",
    user="{{bos}}[INST] {{content}} [/INST]",
    assistant=" {{content}} {{eos}}",
    system="<<SYS>>\n{{content}}\n<</SYS>>\n\n",
    system_in_user=True,
    strip_content=True,
    doc="Llama-2-chat, as meta-llama/Llama-2-7b-chat-hf's chat_template: BOS before every [INST], the system "
        "prompt in a <<SYS>> block inside the first one, stripped contents.",
    example='<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi [/INST] Hello </s>',
)
register_alias("codellama", "llama2")  # CodeLlama-Instruct uses the Llama 2 chat format

register_template(
    "llama3",
    template_class=Llama3Template,
    prefix="{{bos}}",
    # Llama 3.1+ always opens with this system header, even without a system prompt
    system="<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
           "Today Date: {{date}}\n\n{{content}}<|eot_id|>",
    user="<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n",
    assistant="{{content}}<|eot_id|>",
    observation="<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
    always_system=True,
    strip_content=True,
    stops=("<|eot_id|>", "<|eom_id|>"),
    replace_eos=True,
    tool_format="llama3",
    doc="Llama 3.1 / 3.2 / 3.3 Instruct, as their chat_template renders it (the knowledge-cutoff system header "
        "with today's date is always there; LLaMA-Factory's llama3 omits it). Llama-3.0 models: template: null.",
    example=('<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n'
        'Today Date: 26 Jul 2024\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n'
        'Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>'),
)

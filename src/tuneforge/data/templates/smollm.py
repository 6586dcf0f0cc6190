"""SmolLM family: smollm (SmolLM / SmolLM2 -Instruct; ``smollm2`` is an alias)."""

from .generic import CHATML
from .registry import register_alias, register_template

register_template(
    "smollm",
    **CHATML,
    default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    stops=("<|im_end|>",),
    replace_eos=True,
    doc="SmolLM2-Instruct: ChatML with the SmolLM default system prompt its chat_template injects.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)
register_alias("smollm2", "smollm")

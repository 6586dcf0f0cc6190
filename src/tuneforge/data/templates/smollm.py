"""SmolLM family: smollm (SmolLM v1 -Instruct, plain ChatML) and smollm2 (SmolLM2 -Instruct, default system)."""

from .generic import CHATML
from .registry import register_template

register_template(
    "smollm",
    **CHATML,
    stops=("<|im_end|>",),
    replace_eos=True,
    doc="SmolLM v1 -Instruct: ChatML turns, no default system prompt.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)

register_template(
    "smollm2",
    **CHATML,
    # SmolLM2's chat_template injects this (without a final period; LLaMA-Factory's copy has one)
    default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    stops=("<|im_end|>",),
    replace_eos=True,
    doc="SmolLM2-Instruct: ChatML with the SmolLM2 default system prompt its chat_template injects.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)

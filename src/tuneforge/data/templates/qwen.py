"""Qwen family: qwen (Qwen2/2.5, default system prompt), qwen3 (thinking), qwen3_nothink (Qwen3 Instruct-2507)."""

from .generic import CHATML
from .registry import register_template

_QWEN = {
    **CHATML,
    # Qwen renders a tool result as a user turn wrapped in <tool_response> tags
    "observation": "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
                   "<|im_start|>assistant\n",
    "stops": ("<|im_end|>",),
    "replace_eos": True,
    "tool_format": "qwen",
}

register_template(
    "qwen",
    **_QWEN,
    default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    doc="Qwen2 / Qwen2.5 (-Instruct, -Coder, -Math): ChatML with Qwen's default system prompt, which the model's "
        "own template also injects when no system is given.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)

register_template(
    "qwen3",
    **_QWEN,
    thought_words=("<think>\n", "\n</think>\n\n"),
    doc="Qwen3 hybrid thinking models: ChatML without a default system; the final reply gets a <think> block "
        "(empty when the data has none), replies before the last user query lose theirs.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        '<think>\n\n</think>\n\nHello<|im_end|>\n'),
)

register_template(
    "qwen3_nothink",
    **_QWEN,
    doc="Qwen3 non-thinking models (Instruct-2507): plain ChatML, no <think> handling.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)

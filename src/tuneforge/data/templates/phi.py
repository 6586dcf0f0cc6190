"""Phi family: phi (Phi-3 / Phi-3.5 mini) and phi4."""

from .registry import register_template

register_template(
    "phi",
    system="<|system|>\n{{content}}<|end|>\n",
    user="<|user|>\n{{content}}<|end|>\n<|assistant|>\n",
    assistant="{{content}}<|end|>\n",
    suffix="{{eos}}",  # the Phi-3 chat_template closes a finished conversation with EOS
    stops=("<|end|>",),
    replace_eos=True,
    doc="Phi-3 style: <|user|> / <|assistant|> turns closed by <|end|>, EOS after the final reply.",
    example='<|system|>\nSYS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n</s>',
)

register_template(
    "phi4",
    system="<|im_start|>system<|im_sep|>{{content}}<|im_end|>",
    user="<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>",
    assistant="{{content}}<|im_end|>",
    stops=("<|im_end|>",),
    replace_eos=True,
    doc="Phi-4: ChatML-like turns with <|im_sep|> after the role and no newlines.",
    example=('<|im_start|>system<|im_sep|>SYS<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>'
             '<|im_start|>assistant<|im_sep|>Hello<|im_end|>'),
)

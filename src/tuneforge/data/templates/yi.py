"""Yi family: yi (Yi-6B/9B/34B-Chat, Yi-1.5-Chat): ChatML without a default system prompt."""

from .generic import CHATML
from .registry import register_template

register_template(
    "yi",
    **CHATML,
    stops=("<|im_end|>",),
    replace_eos=True,
    doc="Yi chat models: ChatML turns; the tokenizer's EOS is <|endoftext|>, so <|im_end|> is the stop word.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)

"""Model-agnostic templates: default, empty, alpaca, vicuna, chatml (and the ChatML slots other families reuse)."""

from .registry import register_template

CHATML = {
    "system": "<|im_start|>system\n{{content}}<|im_end|>\n",
    "user": "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    "assistant": "{{content}}<|im_end|>\n",
    "observation": "<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
}

register_template(
    "default",
    system="System: {{content}}{{eos}}\n",
    user="Human: {{content}}{{eos}}\nAssistant:",
    assistant="{{content}}{{eos}}\n",
    doc="LLaMA-Factory's fallback: 'Human:' / 'Assistant:' lines, each turn closed by EOS (no model defines it, so "
        "LLaMA-Factory's text is the reference: no space after 'Assistant:').",
    example='System: SYS</s>\nHuman: Hi</s>\nAssistant:Hello</s>\n',
)

register_template(
    "empty",
    assistant="{{content}}",
    doc="Raw text: messages concatenated with nothing added (no EOS either); for base models and pretraining-style "
        "data.",
    example='SYSHiHello',
)

register_template(
    "alpaca",
    system="{{content}}\n\n",
    user="### Instruction:\n{{content}}\n\n### Response:\n",
    assistant="{{content}}{{eos}}\n\n",
    default_system="Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.",
    doc="Stanford Alpaca's instruction format.",
    example='SYS\n\n### Instruction:\nHi\n\n### Response:\nHello</s>\n\n',
)

register_template(
    "vicuna",
    system="{{content}} ",
    user="USER: {{content}} ASSISTANT:",
    assistant=" {{content}}{{eos}}",
    default_system="A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                   "helpful, detailed, and polite answers to the user's questions.",
    doc="Vicuna v1.1 format.",
    example='SYS USER: Hi ASSISTANT: Hello</s>',
)

register_template(
    "chatml",
    **CHATML,
    stops=("<|im_end|>", "<|im_start|>"),
    replace_eos=True,
    doc="ChatML (OpenAI) turns; the model's tokenizer must know <|im_start|>/<|im_end|>.",
    example=('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
        'Hello<|im_end|>\n'),
)

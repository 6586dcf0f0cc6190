"""Llama family: llama2 (Llama-2-chat; ``codellama`` is an alias) and llama3 (Llama 3.1 / 3.2 / 3.3 Instruct)."""

from .registry import register_alias, register_template

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

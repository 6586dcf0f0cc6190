"""Zephyr family: zephyr (HuggingFaceH4 Zephyr, TinyLlama-1.1B-Chat)."""

from .registry import register_template

register_template(
    "zephyr",
    system="<|system|>\n{{content}}{{eos}}\n",
    user="<|user|>\n{{content}}{{eos}}\n<|assistant|>\n",
    assistant="{{content}}{{eos}}\n",
    doc="Zephyr / TinyLlama-Chat: <|user|> / <|assistant|> lines, each message closed by EOS and a newline.",
    example='<|system|>\nSYS</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n',
)

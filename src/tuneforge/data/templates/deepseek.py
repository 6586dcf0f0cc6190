"""DeepSeek family: deepseek (DeepSeek-LLM chat), deepseek3 (V3) and deepseekr1 (R1, thinking)."""

from .registry import register_template

register_template(
    "deepseek",
    prefix="{{bos}}",
    system="{{content}}\n\n",
    user="User: {{content}}\n\nAssistant:",
    assistant=" {{content}}{{eos}}",
    doc="DeepSeek-LLM-Chat: 'User:' / 'Assistant:' paragraphs.",
    example='<s>SYS\n\nUser: Hi\n\nAssistant: Hello</s>',
)

_V3 = {
    "prefix": "{{bos}}",
    "user": "<｜User｜>{{content}}<｜Assistant｜>",
    "assistant": "{{content}}{{eos}}",
}

register_template(
    "deepseek3",
    **_V3,
    doc="DeepSeek-V3: full-width-bar role tokens, the system prompt right after BOS.",
    example='<s>SYS<｜User｜>Hi<｜Assistant｜>Hello</s>',
)

register_template(
    "deepseekr1",
    **_V3,
    thought_words=("<think>\n", "\n</think>\n\n"),
    doc="DeepSeek-R1 and its distills: the V3 format with <think> blocks handled like qwen3.",
    example='<s>SYS<｜User｜>Hi<｜Assistant｜><think>\n\n</think>\n\nHello</s>',
)

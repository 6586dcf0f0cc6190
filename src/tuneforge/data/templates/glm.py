"""GLM family: glm4 (GLM-4-9B-chat and GLM-4-0414 models)."""

from .registry import register_template

register_template(
    "glm4",
    prefix="[gMASK]<sop>",
    system="<|system|>\n{{content}}",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    function="{{content}}",  # a tool call replaces the newline: '<|assistant|>name\n{"arg": ...}'
    observation="<|observation|>\n{{content}}<|assistant|>",
    stops=("<|user|>", "<|observation|>"),
    efficient_eos=True,
    tool_format="glm4",
    doc="GLM-4: a reply ends where the next <|user|> / <|observation|> starts, so replies carry no EOS "
        "(efficient_eos: one EOS after the last reply).",
    example='[gMASK]<sop><|system|>\nSYS<|user|>\nHi<|assistant|>\nHello',
)

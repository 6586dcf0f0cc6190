"""Does a named template fit a model folder's tokenizer? Read from the tokenizer files only (no loading).

A template's control tokens (``<|im_start|>``, ``<start_of_turn>``, ``<｜User｜>``, ``[|user|]``, ...) must be
tokens of the tokenizer; otherwise they are split into plain-text pieces the model never saw as a format. A
template written in plain-text markers (``[INST]``, ``User:``, ``### Instruction:``) must find them in the
tokenizer's own chat_template, when it has one. Model-agnostic templates (alpaca, default, empty, ...) fit any.

>>> template_misfit("qwen", "/models/Llama-3.2-3B-Instruct")
Misfit(missing=['<|im_end|>', '<|im_start|>'], looks_like=['llama3', 'openchat-3.6'])
>>> template_misfit("llama3", "/models/Llama-3.2-3B-Instruct") is None
True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .base import Template
from .registry import TEMPLATES

# control-token shapes; plain-text markers ([INST], <<SYS>>, "### Instruction:") are not tokens in any tokenizer
_CONTROL = re.compile(r"<\|[^<>|\s]+\|>|<｜[^<>]+?｜>|<(?:start|end)_of_turn>|\[\|[a-z]+\|\]")
_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
# families whose <|role|> markers are plain text in their own tokenizers (Zephyr / TinyLlama-Chat, OLMo 1)
PLAIN_MARKER_FAMILIES = ("zephyr", "olmo")


@dataclass(frozen=True)
class Misfit:
    """What the tokenizer lacks (control tokens, or plain markers its chat_template never writes: ``in_template``)
    and the templates whose tokens it has (best first)."""

    missing: list[str]
    looks_like: list[str]
    in_template: bool = False


def plain_markers(template: Template) -> set[str]:
    """The literal words around a user message: llama2 -> {"[INST]", "[/INST]"}, deepseek -> {"User:", ...}."""
    text = re.sub(r"\{\{\w+\}\}", " ", template.user)
    return {word for word in text.split() if (len(word) >= 3 and not word.isalnum()) or word.endswith(":")}


def control_tokens(template: Template) -> set[str]:
    """Control tokens of the chat turns (not of tool or observation slots): chatml -> {<|im_start|>, <|im_end|>}."""
    if template.family in PLAIN_MARKER_FAMILIES:
        return set()
    text = template.prefix + template.system + template.user + template.assistant
    return set(_CONTROL.findall(text))


class TokenizerText:
    """The raw text of a folder's tokenizer files; ``has(token)`` looks the token up as a JSON string in it."""

    def __init__(self, folder: Path):
        self.text = "\n".join((folder / name).read_text(encoding="utf-8", errors="replace")
                              for name in _FILES if (folder / name).is_file())

    def __bool__(self) -> bool:
        return bool(self.text)

    def has(self, token: str) -> bool:
        return json.dumps(token) in self.text or json.dumps(token, ensure_ascii=False) in self.text

    def chat_template(self, folder: Path) -> str | None:
        """The folder's own chat_template (chat_template.jinja, or the tokenizer_config.json string), if any."""
        if (folder / "chat_template.jinja").is_file():
            return (folder / "chat_template.jinja").read_text(encoding="utf-8", errors="replace")
        config = folder / "tokenizer_config.json"
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return None
        return value if isinstance(value, str) else None


def _looks_like(files: TokenizerText, folder: Path, exclude: str) -> list[str]:
    """Up to three templates whose control tokens are all in the tokenizer: those named in the folder name first
    (``Qwen3-4B`` -> qwen3), then those using the most tokens."""
    plain = re.sub(r"[^a-z0-9]", "", folder.name.lower())
    fits = [name for name in TEMPLATES if name != exclude and control_tokens(TEMPLATES[name])
            and all(files.has(token) for token in control_tokens(TEMPLATES[name]))]
    named = sorted((n for n in fits if n.replace("_", "") in plain), key=len, reverse=True)
    rest = sorted((n for n in fits if n not in named), key=lambda n: (-len(control_tokens(TEMPLATES[n])), n))
    return (named + rest)[:3]


def template_misfit(name: str, folder: str | Path) -> Misfit | None:
    """A Misfit when template ``name`` uses control tokens the tokenizer in ``folder`` lacks, or plain markers its
    chat_template never writes; None when it fits, or when there is nothing to judge (unknown name, no tokenizer
    files, a model-agnostic template without control tokens)."""
    template, path = TEMPLATES.get(name), Path(folder)
    if template is None or not path.is_dir():
        return None
    files = TokenizerText(path)
    if not files:
        return None
    missing = sorted(token for token in control_tokens(template) if not files.has(token))
    if missing:
        return Misfit(missing, _looks_like(files, path, name))
    # plain markers: only for model families (alpaca, default, vicuna, ... are meant for any model)
    own = files.chat_template(path) if not control_tokens(template) and template.family != "generic" else None
    absent = sorted(word for word in plain_markers(template) if own is not None and word not in own)
    return Misfit(absent, _looks_like(files, path, name), in_template=True) if absent else None

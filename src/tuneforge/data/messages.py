"""The one message schema every dataset format is converted to (LLaMA-Factory's "aligned" format).

A converted row is a dict with these columns (stored that way in ``datasets`` tables)::

    {"_prompt":   [{"role": "user", "content": "Hi"}],          # alternates user|observation / assistant|function,
                                                                 # always ends with a user or observation turn
     "_response": [{"role": "assistant", "content": "Hello!"}],  # sft: 1 message; rm/dpo: [chosen, rejected];
                                                                 # kto: 1 message; ppo/predict: the reference or []
     "_system":   "You are helpful.",                            # "" when none
     "_tools":    "",                                            # JSON string of tool schemas, "" when none
     "_kto_tag":  None,                                          # kto: True (desirable) / False (undesirable)
     "_source":   "data/alpaca.json:3"}                          # file:row, for error messages

Roles: ``user``, ``assistant``, ``system`` (only in ``_system``), ``function`` (an assistant tool call,
content = JSON of ``{"name", "arguments"}`` or a list of them), ``observation`` (a tool result).
"""

from __future__ import annotations

from typing import Literal, TypedDict

Role = Literal["user", "assistant", "system", "function", "observation"]
USER_ROLES = ("user", "observation")
ASSISTANT_ROLES = ("assistant", "function")

PROMPT, RESPONSE, SYSTEM, TOOLS, KTO_TAG, SOURCE = "_prompt", "_response", "_system", "_tools", "_kto_tag", "_source"
COLUMNS = (PROMPT, RESPONSE, SYSTEM, TOOLS, KTO_TAG, SOURCE)
IGNORE_INDEX = -100


class Message(TypedDict):
    role: Role
    content: str

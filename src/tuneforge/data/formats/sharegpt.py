"""ShareGPT format: a list of role-tagged messages per row, plus optional system and tools columns.

Example (default columns and tags)::

    {"conversations": [{"from": "system", "value": "Be brief"},
                       {"from": "human", "value": "Weather in Paris?"},
                       {"from": "function_call", "value": "{\\"name\\": \\"weather\\", \\"arguments\\": {}}"},
                       {"from": "observation", "value": "{\\"temp\\": 21}"},
                       {"from": "gpt", "value": "21 degrees."}],
     "tools": "[{\\"name\\": \\"weather\\", ...}]"}
    -> _prompt   [user, function, observation]   _response [assistant "21 degrees."]
       _system   "Be brief"                      _tools    the tools JSON

Roles alternate: user or observation at even positions, assistant or function at odd ones (after an
optional leading system message). A supervised row ends with a reply; a preference row (``ranking``)
ends with a user turn and holds ``chosen``/``rejected`` message objects.
"""

from __future__ import annotations

from typing import Any

from ..messages import ASSISTANT_ROLES, USER_ROLES
from ..validate import BAD_VALUE, EMPTY, MISSING, ROLE_ORDER, WRONG_TYPE, RowProblem, Turn, check_order, type_name
from .common import Converter, cell, finish, kto_tag, no_response, optional_text, tools_text


class ShareGPTConverter(Converter):
    """``ShareGPTConverter(attr, policy)(row) -> aligned row``; raises RowProblem for a bad row."""

    def __init__(self, attr, policy) -> None:
        super().__init__(attr, policy)
        tags = self.tags
        pairs = [(tags.user_tag, "user"), (tags.assistant_tag, "assistant"), (tags.observation_tag, "observation"),
                 (tags.function_tag, "function")]
        self.roles: dict[str, str] = {tag: role for tag, role in pairs if tag}
        self.names: dict[str, str | None] = {role: tag for tag, role in pairs}

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        system, turns = self._conversation(row)
        prompt, response = self._split(row, turns)
        return finish(prompt, response, system, self._tools(row), kto_tag(row, self.columns.kto_tag))

    def _tools(self, row: dict[str, Any]) -> str:
        return tools_text(row, self.columns.tools)

    def _messages(self, row: dict[str, Any]) -> list[Any]:
        column = str(self.columns.messages)
        value = cell(row, self.columns.messages)
        if value is None:
            raise RowProblem(column, MISSING, "the row has no conversation")
        if not isinstance(value, list):
            raise RowProblem(column, WRONG_TYPE, f"expected a list of messages, got {type_name(value)}")
        if not value:
            raise RowProblem(column, EMPTY, "the conversation has no messages")
        return value

    def _conversation(self, row: dict[str, Any]) -> tuple[str, list[Turn]]:
        messages = self._messages(row)
        system, start = optional_text(row, self.columns.system), 0
        if self._is_system(messages[0]):
            system, start = self._system_text(messages[0]), 1
        column = self.columns.messages
        turns = self._turns([(f"{column}[{i}]", messages[i]) for i in range(start, len(messages))])
        if not turns:
            raise RowProblem(str(column), EMPTY, "the conversation has only a system message")
        check_order(turns, self.names)
        return system, turns

    def _turns(self, located: list[tuple[str, Any]]) -> list[Turn]:
        return [self._turn(message, where) for where, message in located]

    def _is_system(self, message: Any) -> bool:
        tag = self.tags.system_tag
        return bool(tag) and isinstance(message, dict) and message.get(self.tags.role_tag) == tag

    def _system_text(self, message: dict[str, Any]) -> str:
        value = message.get(self.tags.content_tag)
        if value is not None and not isinstance(value, str):
            where = f"{self.columns.messages}[0].{self.tags.content_tag}"
            raise RowProblem(where, WRONG_TYPE, f"expected a string, got {type_name(value)}")
        return value or ""

    def _turn(self, message: Any, where: str) -> Turn:
        role_tag, content_tag = str(self.tags.role_tag), str(self.tags.content_tag)
        if not isinstance(message, dict):
            raise RowProblem(where, WRONG_TYPE, f"expected a message object with {role_tag!r} and {content_tag!r}, "
                                                f"got {type_name(message)}")
        tag = message.get(role_tag)
        if tag is None:
            raise RowProblem(f"{where}.{role_tag}", MISSING, "the message has no role")
        return Turn(self._role(tag, f"{where}.{role_tag}"), message.get(content_tag), where, str(tag), content_tag,
                    role_tag)

    def _role(self, tag: Any, where: str) -> str:
        role = self.roles.get(tag) if isinstance(tag, str) else None
        if role is not None:
            return role
        if tag == self.tags.system_tag:
            raise RowProblem(where, ROLE_ORDER, f"{tag!r} is allowed only as the first message")
        known = ", ".join(repr(t) for t in self.roles)
        raise RowProblem(where, BAD_VALUE, f"unknown role {tag!r} (expected one of {known})")

    def _split(self, row: dict[str, Any], turns: list[Turn]) -> tuple[list[Turn], list[Turn]]:
        last = turns[-1]
        if self.attr.ranking:
            if last.role not in USER_ROLES:
                raise RowProblem(last.where(last.role_key), ROLE_ORDER, f"a preference conversation ends with a "
                                 f"user turn (the replies go in chosen/rejected), not {last.tag!r}")
            return turns, [self._choice(row, self.columns.chosen, "chosen"),
                           self._choice(row, self.columns.rejected, "rejected")]
        if last.role in ASSISTANT_ROLES:
            return turns[:-1], [last]
        detail = f"the conversation ends with {last.tag!r} and has no reply to train on"
        return turns, no_response(self.policy, str(self.columns.messages), detail)

    def _choice(self, row: dict[str, Any], column: str | None, name: str) -> Turn:
        value = cell(row, column)
        if value is None:
            raise RowProblem(str(column or name), MISSING, f"a preference row needs a {name} message")
        return self._turn(value, str(column))

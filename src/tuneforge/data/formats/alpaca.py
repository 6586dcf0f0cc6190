"""Alpaca format: one instruction (plus optional input, system, history) and one output per row.

Example (default columns)::

    {"instruction": "Add", "input": "2+2", "output": "4", "system": "Be brief",
     "history": [["Hi", "Hello!"]]}
    -> _prompt   [user "Hi", assistant "Hello!", user "Add\\n2+2"]
       _response [assistant "4"]
       _system   "Be brief"

The user content is ``instruction + "\\n" + input`` with empty parts skipped. Preference rows
(``ranking``) hold ``chosen``/``rejected`` strings; KTO rows a boolean ``kto_tag``. Pretraining text
is alpaca with ``columns: {"prompt": "text"}``: the text becomes the only (user) message.
"""

from __future__ import annotations

from typing import Any

from ..validate import MISSING, WRONG_TYPE, RowProblem, Turn, clip, type_name
from .common import Converter, cell, finish, kto_tag, no_response, optional_text, tools_text


class AlpacaConverter(Converter):
    """``AlpacaConverter(attr, policy)(row) -> aligned row``; raises RowProblem for a bad row."""

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        prompt = [*self._history(row), self._query(row)]
        response = self._response(row)
        tag = kto_tag(row, self.columns.kto_tag)
        return finish(prompt, response, optional_text(row, self.columns.system), tools_text(row, self.columns.tools),
                      tag)

    def _query(self, row: dict[str, Any]) -> Turn:
        prompt, query = self.columns.prompt, self.columns.query
        parts = [optional_text(row, prompt), optional_text(row, query)]
        where = str(prompt or query)
        if cell(row, prompt) is None and cell(row, query) is None:
            raise RowProblem(where, MISSING, "the row has no instruction")
        return Turn("user", "\n".join(p for p in parts if p), where, "instruction")

    def _history(self, row: dict[str, Any]) -> list[Turn]:
        column = self.columns.history
        value = cell(row, column)
        if value is None:
            return []
        if not isinstance(value, list):
            raise RowProblem(str(column), WRONG_TYPE, f"expected a list of [question, answer] pairs, got "
                                                      f"{type_name(value)}")
        turns = []
        for index, pair in enumerate(value):
            if not isinstance(pair, list) or len(pair) != 2:
                raise RowProblem(f"{column}[{index}]", WRONG_TYPE, f"expected a [question, answer] pair, got "
                                                                   f"{clip(pair)}")
            turns.append(Turn("user", pair[0], f"{column}[{index}][0]", "history question"))
            turns.append(Turn("assistant", pair[1], f"{column}[{index}][1]", "history answer"))
        return turns

    def _response(self, row: dict[str, Any]) -> list[Turn]:
        columns = self.columns
        if self.attr.ranking:
            return [Turn("assistant", cell(row, columns.chosen), str(columns.chosen or "chosen"), "chosen"),
                    Turn("assistant", cell(row, columns.rejected), str(columns.rejected or "rejected"), "rejected")]
        value = cell(row, columns.response)
        if value is None or (value == "" and not self.policy.response_required):
            return no_response(self.policy, str(columns.response or "output"))
        return [Turn("assistant", value, str(columns.response), "output")]

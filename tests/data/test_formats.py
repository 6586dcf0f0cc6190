"""Each format converts to the exact message-schema dict; preference, KTO and pretraining variants included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.data.formats import RowPolicy, attr_problems, make_converter
from tuneforge.data.registry import Columns, DatasetAttr, Tags, parse_entry
from tuneforge.data.validate import RowProblem

SFT, UNSUPERVISED = RowPolicy(), RowPolicy(response_required=False)
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "system_tag": "system", "observation_tag": "tool"}


def convert(entry: dict, row: dict, policy: RowPolicy = SFT) -> dict:
    attr = parse_entry("t", {"file_name": "t.json", **entry}, dataset_dir=Path("."))
    return make_converter(attr, policy)(row)


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def aligned(prompt, response, system="", tools="", kto=None) -> dict:
    return {"_prompt": prompt, "_response": response, "_system": system, "_tools": tools, "_kto_tag": kto}


def test_alpaca_instruction_input_history_system():
    entry = {"columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                         "system": "system"}}
    row = {"instruction": "Add", "input": "2+2", "output": "4", "system": "Be brief", "history": [["Hi", "Hello!"]]}
    assert convert(entry, row) == aligned(
        [msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Add\n2+2")], [msg("assistant", "4")], "Be brief")


def test_alpaca_skips_empty_parts_and_ignores_unregistered_columns():
    # default columns: history and system are None (LLaMA-Factory), so those cells are not read
    row = {"instruction": "", "input": "just the input", "output": "ok", "system": "ignored", "history": [["a", "b"]]}
    assert convert({}, row) == aligned([msg("user", "just the input")], [msg("assistant", "ok")])
    assert convert({}, {"instruction": "only", "input": None, "output": "x"})["_prompt"] == [msg("user", "only")]


def test_alpaca_preference_and_kto():
    entry = {"ranking": True, "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}
    row = {"instruction": "2+2?", "chosen": "4", "rejected": "5"}
    assert convert(entry, row) == aligned([msg("user", "2+2?")], [msg("assistant", "4"), msg("assistant", "5")])
    kto = {"columns": {"prompt": "instruction", "response": "output", "kto_tag": "label"}}
    assert convert(kto, {"instruction": "q", "output": "a", "label": False}) == aligned(
        [msg("user", "q")], [msg("assistant", "a")], kto=False)


def test_pretraining_text_is_the_only_message():
    entry = {"columns": {"prompt": "text"}}
    expected = aligned([msg("user", "Once upon a time.")], [])
    assert convert(entry, {"text": "Once upon a time."}, UNSUPERVISED) == expected


def test_unsupervised_rows_only_when_the_stage_allows():
    row = {"instruction": "q"}
    assert convert({}, row, UNSUPERVISED) == aligned([msg("user", "q")], [])
    with pytest.raises(RowProblem) as err:
        convert({}, row, SFT)
    assert (err.value.field, err.value.reason) == ("output", "missing field")


SHAREGPT = {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system", "tools": "tools"}}


def test_sharegpt_system_tag_tools_function_call_and_observation():
    call = '{"name": "weather", "arguments": {"city": "Paris"}}'
    row = {"conversations": [{"from": "system", "value": "Sys"}, {"from": "human", "value": "Weather?"},
                             {"from": "function_call", "value": call}, {"from": "observation", "value": "21"},
                             {"from": "gpt", "value": "21 degrees."}],
           "tools": [{"name": "weather"}], "system": "column system loses to the system message"}
    assert convert(SHAREGPT, row) == aligned(
        [msg("user", "Weather?"), msg("function", call), msg("observation", "21")],
        [msg("assistant", "21 degrees.")], "Sys", '[{"name": "weather"}]')


def test_sharegpt_multi_turn_with_system_column():
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                             {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}], "system": "S"}
    assert convert(SHAREGPT, row) == aligned(
        [msg("user", "a"), msg("assistant", "b"), msg("user", "c")], [msg("assistant", "d")], "S")


def test_sharegpt_preference_with_message_dicts():
    entry = {"formatting": "sharegpt", "ranking": True,
             "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
    row = {"conversations": [{"from": "human", "value": "2+2?"}], "chosen": {"from": "gpt", "value": "4"},
           "rejected": {"from": "gpt", "value": "5"}}
    assert convert(entry, row) == aligned([msg("user", "2+2?")], [msg("assistant", "4"), msg("assistant", "5")])


def test_sharegpt_kto_with_custom_tags():
    entry = {"formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": True}
    assert convert(entry, row) == aligned([msg("user", "q")], [msg("assistant", "a")], kto=True)


OPENAI = {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"}, "tags": OPENAI_TAGS}


def test_openai_tool_calls_merged_tool_results_and_no_thinking_quirk():
    def call(city: str) -> dict:
        return {"id": city, "type": "function", "function": {"name": "weather", "arguments": json.dumps({"c": city})}}

    row = {"messages": [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Oslo and Lima?"},
                        {"role": "assistant", "content": None, "tool_calls": [call("Oslo"), call("Lima")]},
                        {"role": "tool", "content": "4"}, {"role": "tool", "content": "19"},
                        {"role": "assistant", "content": "4 and 19."}],
           "tools": [{"type": "function", "function": {"name": "weather"}}]}
    calls = '[{"name": "weather", "arguments": {"c": "Oslo"}}, {"name": "weather", "arguments": {"c": "Lima"}}]'
    assert convert(OPENAI, row) == aligned(
        [msg("user", "Oslo and Lima?"), msg("function", calls), msg("observation", '["4", "19"]')],
        [msg("assistant", "4 and 19.")], "Sys", '[{"name": "weather"}]')
    plain = convert(OPENAI, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    assert plain["_system"] == ""  # LLaMA-Factory would write "detailed thinking off" here


def test_openai_text_parts_are_joined_and_other_parts_refused():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                        {"role": "assistant", "content": "c"}]}
    assert convert(OPENAI, row)["_prompt"] == [msg("user", "ab")]
    row["messages"][0]["content"] = [{"type": "image_url", "image_url": {"url": "x"}}]
    with pytest.raises(RowProblem) as err:
        convert(OPENAI, row)
    assert (err.value.field, err.value.reason) == ("messages[0].content[0]", "invalid value")


def test_openai_bad_arguments_are_named():
    row = {"messages": [{"role": "user", "content": "q"},
                        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
                        {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(RowProblem) as err:
        convert(OPENAI, row)
    assert err.value.field == "messages[1].tool_calls[0].function.arguments"
    assert err.value.reason == "invalid value"


@pytest.mark.parametrize(("row", "field", "reason"), [
    ({"conversations": [{"from": "gpt", "value": "a"}]}, "conversations[0].from", "wrong role order"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
     "conversations[1].from", "wrong role order"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]},
     "conversations[1].from", "invalid value"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "  "}]},
     "conversations[1].value", "empty content"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": 3}]},
     "conversations[1].value", "wrong type"),
    ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "b"}]}, "conversations[0].value", "missing field"),
    ({"conversations": [{"from": "human", "value": "a"}]}, "conversations", "missing field"),
    ({"conversations": "hi"}, "conversations", "wrong type"),
    ({"conversations": []}, "conversations", "empty content"),
    ({}, "conversations", "missing field"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "not json"}]},
     "conversations[1].value", "invalid value"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "tools": "{bad"},
     "tools", "invalid value"),
])
def test_sharegpt_row_problems(row, field, reason):
    with pytest.raises(RowProblem) as err:
        convert(SHAREGPT, row)
    assert (err.value.field, err.value.reason) == (field, reason)


def test_role_order_message_names_the_users_tags():
    with pytest.raises(RowProblem) as err:
        convert(SHAREGPT, {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]})
    assert err.value.detail == "'human' where a reply ('gpt' or 'function_call') was expected"


@pytest.mark.parametrize(("entry", "row", "field", "reason"), [
    ({}, {"instruction": "q", "output": ["a"]}, "output", "wrong type"),
    ({}, {"instruction": "", "input": "", "output": "a"}, "instruction", "empty content"),
    ({}, {"output": "a"}, "instruction", "missing field"),
    ({"columns": {"prompt": "instruction", "response": "output", "history": "history"}},
     {"instruction": "q", "output": "a", "history": [["only one"]]}, "history[0]", "wrong type"),
    ({"columns": {"prompt": "instruction", "response": "output", "kto_tag": "label"}},
     {"instruction": "q", "output": "a", "label": "yes"}, "label", "wrong type"),
    ({"ranking": True, "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}},
     {"instruction": "q", "chosen": "a"}, "rejected", "missing field"),
])
def test_alpaca_row_problems(entry, row, field, reason):
    with pytest.raises(RowProblem) as err:
        convert(entry, row)
    assert (err.value.field, err.value.reason) == (field, reason)


def test_columns_object_resets_unlisted_columns_and_tags():
    attr = parse_entry("t", {"file_name": "t.json", "columns": {"prompt": "text"}}, Path("."))
    assert attr.columns == Columns(prompt="text", query=None, response=None, messages=None)
    assert attr_problems(attr, SFT) == ["columns.response is not set, but the stage trains on responses; set it, "
                                        "or use this dataset with stage pt or ppo"]
    assert attr_problems(attr, UNSUPERVISED) == []
    tagged = parse_entry("t", {"file_name": "t.json", "formatting": "sharegpt", "tags": {"role_tag": "role"}},
                         Path("."))
    assert tagged.tags == Tags(role_tag="role", content_tag=None, user_tag=None, assistant_tag=None,
                               observation_tag=None, function_tag=None, system_tag=None)
    assert [p.split(",")[0] for p in attr_problems(tagged, SFT)] == [
        "tags.content_tag is not set", "tags.user_tag is not set", "tags.assistant_tag is not set"]


def test_ranking_entry_without_chosen_column_is_refused_up_front():
    attr = DatasetAttr(name="d", source="file", path="d.json", formatting="sharegpt", ranking=True,
                       columns=Columns(messages="conversations", prompt=None, query=None, response=None))
    problems = attr_problems(attr, SFT)
    assert len(problems) == 2 and problems[0].startswith("columns.chosen is not set")

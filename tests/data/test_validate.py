"""Malformed data: each bad row is named by file:N, field and reason; the run fails past max_bad_rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tuneforge.config.loader import resolve
from tuneforge.data.loader import load_aligned, load_aligned_dataset
from tuneforge.data.validate import BadRow, DataError, DataReport, DatasetStats, check_stats

SHAREGPT = {"formatting": "sharegpt", "columns": {"messages": "conversations"}}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def make_cfg(folder: Path, **keys):
    return resolve({"stage": "sft", "dataset_dir": str(folder), **keys}).config


def setup(folder: Path, name: str, content: bytes | str, entry: dict | None = None) -> str:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    (folder / "dataset_info.json").write_text(json.dumps({"d": {"file_name": name, **(entry or {})}}))
    return str(path)


def lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def bad_rows(tmp_path: Path, **keys) -> list[str]:
    report = DataReport()
    load_aligned_dataset("d", make_cfg(tmp_path, max_bad_rows=1.0, **keys), report)
    return [str(row) for row in report.bad_rows()]


def chat(*pairs) -> dict:
    return {"conversations": [{"from": role, "value": text} for role, text in pairs]}


def test_missing_field_wrong_order_and_empty_content(tmp_path):
    path = setup(tmp_path, "c.jsonl", lines(chat(("human", "a"), ("gpt", "b")), {"other": 1},
                                            chat(("gpt", "a"), ("human", "b")), chat(("human", "a"), ("gpt", ""))),
                 SHAREGPT)
    assert bad_rows(tmp_path) == [
        f"{path}:2  conversations  missing field: the row has no conversation",
        f"{path}:3  conversations[0].from  wrong role order: 'gpt' where a user turn ('human' or 'observation') "
        "was expected",
        f"{path}:4  conversations[1].value  empty content: the gpt message is empty",
    ]


def test_non_utf8_bytes_are_named_by_line_or_record(tmp_path):
    good, broken = json.dumps({"instruction": "q", "output": "a"}).encode(), b'{"instruction": "\xff", "output": "a"}'
    path = setup(tmp_path, "u.jsonl", good + b"\n" + broken + b"\n" + good + b"\n")
    assert bad_rows(tmp_path) == [f"{path}:2  (row)  non-UTF-8 bytes: byte 0xff at column 18"]
    path = setup(tmp_path, "u.json", b"[" + good + b",\n" + broken + b"]")
    assert bad_rows(tmp_path) == [f"{path}:2  (row)  non-UTF-8 bytes: the row holds bytes that are not UTF-8"]
    path = setup(tmp_path, "u.csv", b"instruction,output\nq,a\n\xfe,a\n")
    assert bad_rows(tmp_path) == [f"{path}:2  instruction  non-UTF-8 bytes: the value holds bytes that are not UTF-8"]
    path = setup(tmp_path, "u.txt", b"fine\n\xfe\xfe\n", {"columns": {"prompt": "text"}})
    assert bad_rows(tmp_path, stage="pt") == [f"{path}:2  (row)  non-UTF-8 bytes: byte 0xfe at column 1"]


def test_json_syntax_errors_name_the_line(tmp_path):
    good = json.dumps({"instruction": "q", "output": "a"})
    path = setup(tmp_path, "j.jsonl", lines(good, '{"instruction": "q", "output": }', "[1, 2]", good))
    assert bad_rows(tmp_path) == [f"{path}:2  (row)  JSON syntax error: Expecting value at column 32",
                                  f"{path}:3  (row)  wrong type: a row must be a JSON object, got list"]
    path = setup(tmp_path, "j.json", f"[{good},\n{{\"instruction\": }}]")
    with pytest.raises(DataError) as err:
        load_aligned_dataset("d", make_cfg(tmp_path))
    assert err.value.messages == [f"{path}:2  (file)  JSON syntax error: Expecting value at line 2 column 17"]
    assert str(err.value).startswith(f"dataset 'd': {path} could not be read at all")


def test_wrong_types_in_mixed_columns(tmp_path):
    # "4" must stay a string: datasets' Json column would read it back as the number 4
    path = setup(tmp_path, "w.jsonl", lines({"instruction": "q", "output": "4"}, {"instruction": "q", "output": 5}))
    report = DataReport()
    dataset = load_aligned_dataset("d", make_cfg(tmp_path, max_bad_rows=0.5), report)
    assert dataset["_response"] == [[{"role": "assistant", "content": "4"}]]
    assert [str(r) for r in report.bad_rows()] == [f"{path}:2  output  wrong type: expected a string, got number"]


def test_an_empty_file_fails_alone_and_is_reported_in_a_folder(tmp_path):
    setup(tmp_path, "e.jsonl", "")
    with pytest.raises(DataError, match="no usable rows are left") as err:
        load_aligned_dataset("d", make_cfg(tmp_path))
    assert err.value.messages == [f"{tmp_path}/e.jsonl  (file)  empty file: the file has no data"]
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.jsonl").write_text(lines(*[{"instruction": f"q{i}", "output": "a"} for i in range(30)]))
    (folder / "b.jsonl").write_text("  \n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "f"}}))
    assert bad_rows(tmp_path) == [f"{folder}/b.jsonl  (file)  empty file: the file has no data"]


def test_max_bad_rows_threshold(tmp_path):
    rows = [{"instruction": f"q{i}", "output": "a"} for i in range(9)] + [{"instruction": "q"}]
    setup(tmp_path, "t.jsonl", lines(*rows))
    with pytest.raises(DataError, match=r"10.0% of the rows are bad, more than max_bad_rows=0.05 allows") as err:
        load_aligned_dataset("d", make_cfg(tmp_path))
    assert err.value.report.counts() == {"read": 10, "kept": 9, "dropped": {"missing field": 1}}
    with pytest.raises(DataError):
        load_aligned_dataset("d", make_cfg(tmp_path, max_bad_rows=0.0))
    report = DataReport()
    assert len(load_aligned_dataset("d", make_cfg(tmp_path, max_bad_rows=0.1), report)) == 9
    assert report.counts() == {"read": 10, "kept": 9, "dropped": {"missing field": 1}}


def test_every_dataset_is_checked_before_failing(tmp_path):
    (tmp_path / "a.jsonl").write_text(lines({"instruction": "q"}))
    (tmp_path / "b.jsonl").write_text(lines({"output": "a"}))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.jsonl"},
                                                            "b": {"file_name": "b.jsonl"}}))
    with pytest.raises(DataError) as err:
        load_aligned(make_cfg(tmp_path, dataset="a", eval_dataset="b"))
    assert [m.split("  ")[1] for m in err.value.messages] == ["output", "instruction"]
    assert "dataset 'a'" in str(err.value) and "dataset 'b'" in str(err.value)


def test_report_shows_twenty_rows_and_counts_the_rest():
    stats = DatasetStats("big", files=["x.jsonl"], read=100, kept=75)
    for i in range(25):
        stats.add_bad(BadRow(f"x.jsonl:{i + 1}", "output", "missing field" if i % 5 else "wrong type"))
    text = DataReport([stats]).format()
    assert "dataset 'big' (1 file): read 100, kept 75, dropped 25\n    missing field: 20\n    wrong type: 5" in text
    assert "bad rows (file:N  field  reason; the first 20 of 25):" in text
    assert text.count("  x.jsonl:") == 20 and text.endswith("  ... and 5 more")
    with pytest.raises(DataError) as err:
        check_stats(stats, 0.2)
    assert len(err.value.messages) == 20 and "25.0% of the rows are bad" in str(err.value)


def test_fuzzed_dataset_counts_equal_the_injected_problems(tmp_path):
    """Reliability test 7: every injected fault is reported once, with its reason; the rest survive intact."""
    rng = random.Random(0)
    faults = {"missing field": lambda: {"conversations": None},
              "wrong role order": lambda: chat(("human", "a"), ("human", "b")),
              "empty content": lambda: chat(("human", " "), ("gpt", "b")),
              "wrong type": lambda: chat(("human", "a"), ("gpt", ["b"])),
              "JSON syntax error": lambda: '{"conversations": [}',
              "non-UTF-8 bytes": lambda: b'{"conversations": "\xc3\x28"}'}
    rows, injected = [], {}
    for i in range(200):
        kind = rng.choice(list(faults)) if rng.random() < 0.1 else None
        rows.append(faults[kind]() if kind else chat(("human", f"q{i}"), ("gpt", f"a{i}")))
        injected[kind] = injected.get(kind, 0) + 1
    body = b"".join((r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()) + b"\n"
                    for r in rows)
    setup(tmp_path, "fuzz.jsonl", body, SHAREGPT)
    report = DataReport()
    first = load_aligned_dataset("d", make_cfg(tmp_path, max_bad_rows=0.2), report)
    good = injected.pop(None)
    assert report.counts() == {"read": 200, "kept": good, "dropped": injected}
    assert first["_source"] == load_aligned_dataset("d", make_cfg(tmp_path, max_bad_rows=0.2))["_source"]

"""Reading local files into the message schema: file types, folders, direct paths, sampling, hub errors."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneforge.config.loader import resolve
from tuneforge.data.loader import load_aligned, load_aligned_dataset, plan_selection
from tuneforge.data.validate import DataError, DataReport


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def make_cfg(folder: Path, **keys):
    return resolve({"stage": "sft", "dataset_dir": str(folder), **keys}).config


def register(folder: Path, **entries) -> None:
    (folder / "dataset_info.json").write_text(json.dumps(entries), encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def qa(i: int) -> dict:
    return {"instruction": f"q{i}", "output": f"a{i}"}


def prompts(dataset) -> list[str]:
    return [row["_prompt"][-1]["content"] for row in dataset]


def test_json_array_and_jsonl_keep_their_row_numbers(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps([qa(0), qa(1)]), encoding="utf-8")
    (tmp_path / "lines.jsonl").write_text(f"{json.dumps(qa(0))}\n\n{json.dumps(qa(1))}\n", encoding="utf-8")
    register(tmp_path, arr={"file_name": "arr.json"}, lines={"file_name": "lines.jsonl"})
    cfg = make_cfg(tmp_path)
    arr = load_aligned_dataset("arr", cfg)
    assert arr["_source"] == [f"{tmp_path}/arr.json:1", f"{tmp_path}/arr.json:2"]
    assert arr[0] == {"_prompt": [{"role": "user", "content": "q0"}], "_response": [{"role": "assistant", "content":
                      "a0"}], "_system": "", "_tools": "", "_kto_tag": None, "_source": f"{tmp_path}/arr.json:1"}
    lines = load_aligned_dataset("lines", cfg)
    assert list(lines["_source"]) == [f"{tmp_path}/lines.jsonl:1", f"{tmp_path}/lines.jsonl:3"]  # line numbers


def test_folder_dataset_reads_files_in_sorted_order(tmp_path):
    write_jsonl(tmp_path / "parts" / "b.jsonl", [qa(2), qa(3)])
    write_jsonl(tmp_path / "parts" / "a.jsonl", [qa(0), qa(1)])
    (tmp_path / "parts" / "c.json").write_text(json.dumps([qa(4)]), encoding="utf-8")
    (tmp_path / "parts" / "README.md").write_text("notes", encoding="utf-8")
    register(tmp_path, parts={"file_name": "parts"})
    report = DataReport()
    dataset = load_aligned_dataset("parts", make_cfg(tmp_path), report)
    assert prompts(dataset) == ["q0", "q1", "q2", "q3", "q4"]
    assert report.datasets[0].files == [str(tmp_path / "parts" / n) for n in ("a.jsonl", "b.jsonl", "c.json")]
    assert report.datasets[0].notes == ["skipped files of unknown type: README.md"]


def test_folder_with_mixed_file_types_is_refused(tmp_path):
    write_jsonl(tmp_path / "mixed" / "a.jsonl", [qa(0)])
    (tmp_path / "mixed" / "b.csv").write_text("instruction,output\nq,a\n", encoding="utf-8")
    register(tmp_path, mixed={"file_name": "mixed"})
    with pytest.raises(DataError, match=r"mixes file types csv, json; .*a\.jsonl \(json\), b\.csv \(csv\)"):
        load_aligned_dataset("mixed", make_cfg(tmp_path))


def test_identical_files_in_a_folder_are_reported(tmp_path):
    write_jsonl(tmp_path / "dup" / "a.jsonl", [qa(0)])
    write_jsonl(tmp_path / "dup" / "b.jsonl", [qa(0)])
    register(tmp_path, dup={"file_name": "dup"})
    report = DataReport()
    assert len(load_aligned_dataset("dup", make_cfg(tmp_path), report)) == 2
    assert report.datasets[0].notes == ["identical files (their rows count more than once): a.jsonl, b.jsonl"]


def test_direct_paths_are_read_with_a_guessed_format(tmp_path):
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "yo"}]}])
    alpaca = write_jsonl(tmp_path / "sub" / "alpaca.jsonl", [qa(7)])
    cfg = make_cfg(tmp_path / "nowhere")
    assert load_aligned_dataset(str(chat), cfg)["_response"] == [[{"role": "assistant", "content": "yo"}]]
    assert prompts(load_aligned_dataset(str(alpaca), cfg)) == ["q7"]
    text = tmp_path / "book.txt"
    text.write_text("First paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    pretrain = load_aligned_dataset(str(text), make_cfg(tmp_path, stage="pt"))
    assert prompts(pretrain) == ["First paragraph.", "Second paragraph."]
    assert list(pretrain["_source"]) == [f"{text}:1", f"{text}:3"]


def test_csv_parquet_arrow_and_txt_files(tmp_path):
    (tmp_path / "t.csv").write_text('instruction,output\nq0,a0\n"q,1",a1\n', encoding="utf-8")
    table = pa.table({"instruction": ["q0", "q1"], "output": ["a0", "a1"]})
    pq.write_table(table, tmp_path / "t.parquet")
    with pa.OSFile(str(tmp_path / "t.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (tmp_path / "t.txt").write_text("line one\nline two\n", encoding="utf-8")
    register(tmp_path, csv={"file_name": "t.csv"}, parquet={"file_name": "t.parquet"},
             arrow={"file_name": "t.arrow"}, txt={"file_name": "t.txt", "columns": {"prompt": "text"}})
    cfg = make_cfg(tmp_path)
    assert prompts(load_aligned_dataset("csv", cfg)) == ["q0", "q,1"]
    assert prompts(load_aligned_dataset("parquet", cfg)) == ["q0", "q1"]
    assert prompts(load_aligned_dataset("arrow", cfg)) == ["q0", "q1"]
    assert prompts(load_aligned_dataset("txt", make_cfg(tmp_path, stage="pt"))) == ["line one", "line two"]


def test_plan_selection_subsamples_oversamples_and_cuts():
    assert plan_selection([3, 2], None, None, 0) == [None, None]
    first = plan_selection([3, 2], None, 4, 0)
    assert [list(s) for s in first] == [[0, 1, 2], [0]]
    sampled = plan_selection([3, 2], 3, None, 42)
    assert sum(len(s) for s in sampled) == 3 and all(len(set(s)) == len(s) for s in sampled)
    assert [list(s) for s in sampled] == [list(s) for s in plan_selection([3, 2], 3, None, 42)]  # seeded
    over = plan_selection([3], 7, None, 42)[0]
    assert len(over) == 7 and set(over) == {0, 1, 2}  # every row once, then 4 drawn with replacement


def test_num_samples_and_max_samples(tmp_path):
    write_jsonl(tmp_path / "ten.jsonl", [qa(i) for i in range(10)])
    register(tmp_path, ten={"file_name": "ten.jsonl"}, four={"file_name": "ten.jsonl", "num_samples": 4},
             many={"file_name": "ten.jsonl", "num_samples": 25})
    assert prompts(load_aligned_dataset("ten", make_cfg(tmp_path, max_samples=3))) == ["q0", "q1", "q2"]
    four = prompts(load_aligned_dataset("four", make_cfg(tmp_path)))
    assert len(four) == 4 and len(set(four)) == 4
    assert four == prompts(load_aligned_dataset("four", make_cfg(tmp_path)))
    assert four != prompts(load_aligned_dataset("four", make_cfg(tmp_path, seed=7)))
    many = prompts(load_aligned_dataset("many", make_cfg(tmp_path)))
    assert len(many) == 25 and set(many) == {f"q{i}" for i in range(10)}


def test_max_samples_stops_reading_later_files(tmp_path):
    write_jsonl(tmp_path / "p" / "a.jsonl", [qa(0), qa(1)])
    (tmp_path / "p" / "b.jsonl").write_bytes(b"\xff not even utf-8\n")
    register(tmp_path, p={"file_name": "p"})
    assert prompts(load_aligned_dataset("p", make_cfg(tmp_path, max_samples=2))) == ["q0", "q1"]


def test_hub_dataset_offline_is_a_clear_error(tmp_path):
    register(tmp_path, remote={"hf_hub_url": "nobody/no-such-dataset"})
    with pytest.raises(DataError) as err:
        load_aligned_dataset("remote", make_cfg(tmp_path))
    text = str(err.value)
    assert text.startswith("dataset 'remote': cannot load 'nobody/no-such-dataset' from the Hugging Face hub")
    assert "HF_HUB_OFFLINE" in text and "Traceback" not in text


def test_modelscope_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "modelscope", None)
    register(tmp_path, ms={"ms_hub_url": "someone/data"})
    with pytest.raises(DataError, match="needs the modelscope package"):
        load_aligned_dataset("ms", make_cfg(tmp_path))


def test_unknown_dataset_and_missing_file_are_data_errors(tmp_path):
    register(tmp_path, gone={"file_name": "gone.json"})
    with pytest.raises(DataError, match="is not in"):
        load_aligned_dataset("nope", make_cfg(tmp_path))
    with pytest.raises(DataError, match=r"gone\.json does not exist"):
        load_aligned_dataset("gone", make_cfg(tmp_path))


def test_media_columns_are_refused(tmp_path):
    write_jsonl(tmp_path / "m.jsonl", [{**qa(0), "images": ["x.png"]}])
    register(tmp_path, m={"file_name": "m.jsonl", "columns": {"prompt": "instruction", "response": "output",
                                                              "images": "images"}})
    with pytest.raises(DataError, match=r"columns.images is set, but tuneforge reads text data only"):
        load_aligned_dataset("m", make_cfg(tmp_path))


def test_kto_tags_outside_kto_are_noted(tmp_path):
    write_jsonl(tmp_path / "k.jsonl", [{**qa(0), "label": False}])
    register(tmp_path, k={"file_name": "k.jsonl", "columns": {"prompt": "instruction", "response": "output",
                                                              "kto_tag": "label"}})
    splits = load_aligned(make_cfg(tmp_path, dataset="k"))
    assert splits.train["_kto_tag"] == [False]
    assert splits.report.datasets[0].notes[0].startswith("stage sft ignores columns.kto_tag")


@pytest.fixture
def fake_hub(monkeypatch):
    """``load_dataset`` of the loader answers hub ids from memory (streaming gives an IterableDataset)."""
    from datasets import Dataset

    import tuneforge.data.loader as loader

    calls = []
    rows = [qa(0), {"instruction": "q1"}, qa(2)]

    def fake(path, name=None, data_dir=None, split=None, streaming=False):
        calls.append((path, name, data_dir, split, streaming))
        table = Dataset.from_list(rows)
        return table.to_iterable_dataset() if streaming else table

    monkeypatch.setattr(loader, "load_dataset", fake)
    return calls


def test_hub_dataset_is_converted_and_checked(tmp_path, fake_hub):
    register(tmp_path, hub={"hf_hub_url": "org/set", "subset": "en", "folder": "data", "split": "test"})
    report = DataReport()
    dataset = load_aligned_dataset("hub", make_cfg(tmp_path, max_bad_rows=0.5), report)
    assert fake_hub == [("org/set", "en", "data", "test", False)]
    assert prompts(dataset) == ["q0", "q2"]
    assert [str(r) for r in report.bad_rows()] == ["org/set:2  output  missing field: the row has no response to "
                                                   "train on"]


def test_hub_stream_drops_bad_rows_as_it_reads(tmp_path, fake_hub):
    register(tmp_path, hub={"hf_hub_url": "org/set"})
    cfg = make_cfg(tmp_path, dataset="hub", streaming=True, max_steps=3, val_size=1)
    splits = load_aligned(cfg)
    assert sorted(prompts(splits.train)) == ["q2"] and prompts(splits.eval) == ["q0"]
    assert splits.report.datasets[0].headline().endswith("bad rows are dropped as they are read (not counted)")

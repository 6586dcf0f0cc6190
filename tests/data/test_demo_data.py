"""The shipped demo data: every registered dataset loads and converts with zero bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.loader import resolve
from tuneforge.data.loader import load_aligned, load_aligned_dataset
from tuneforge.data.registry import get_dataset_attr, read_info
from tuneforge.data.validate import DataReport

DATA = Path(__file__).resolve().parents[2] / "data"
NAMES = sorted(name for name, entry in read_info(DATA).items() if "file_name" in entry)  # local demos only


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def stage_for(name: str) -> str:
    attr = get_dataset_attr(name, DATA)
    if attr.ranking:
        return "dpo"
    if attr.columns.kto_tag:
        return "kto"
    return "sft" if attr.columns.response or attr.formatting != "alpaca" else "pt"


def test_hub_entries_use_llamafactory_names():
    hub = sorted(name for name, entry in read_info(DATA).items() if "file_name" not in entry)
    assert hub == ["alpaca_en", "alpaca_zh", "code_alpaca"]
    assert get_dataset_attr("alpaca_zh", DATA).source == "hf_hub"


def test_the_registry_lists_every_demo():
    assert NAMES == ["alpaca_demo", "dpo_demo", "identity", "kto_demo", "openai_demo", "pt_demo", "quickstart_eval",
                     "quickstart_task", "sharegpt_demo", "wiki_demo"]
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 5 * 2**20


@pytest.mark.parametrize("name", NAMES)
def test_every_demo_loads_without_bad_rows(name):
    cfg = resolve({"stage": stage_for(name), "dataset_dir": str(DATA), "max_bad_rows": 0.0}).config
    report = DataReport()
    dataset = load_aligned_dataset(name, cfg, report)
    assert report.counts()["dropped"] == {} and len(dataset) == report.read > 0


def test_demo_sizes_and_shapes():
    cfg = resolve({"stage": "sft", "dataset_dir": str(DATA)}).config
    sizes = {n: len(load_aligned_dataset(n, cfg)) for n in ("identity", "alpaca_demo", "quickstart_task",
                                                             "quickstart_eval", "sharegpt_demo", "openai_demo")}
    assert sizes == {"identity": 20, "alpaca_demo": 50, "quickstart_task": 3000, "quickstart_eval": 200,
                     "sharegpt_demo": 8, "openai_demo": 6}
    roles = {m["role"] for row in load_aligned_dataset("sharegpt_demo", cfg)["_prompt"] for m in row}
    assert roles == {"user", "assistant", "function", "observation"}
    tools = load_aligned_dataset("openai_demo", cfg)
    assert any(m["role"] == "function" and m["content"].startswith("[{") for row in tools["_prompt"] for m in row)


def test_preference_demos_hold_right_and_wrong_arithmetic():
    pairs = load_aligned_dataset("dpo_demo", resolve({"stage": "dpo", "dataset_dir": str(DATA)}).config)
    assert len(pairs) == 40
    for response in pairs["_response"]:
        chosen, rejected = (r["content"] for r in response)
        expression, value = chosen.rstrip(".").split(" = ")
        left, op, right = expression.split(" ")
        assert {"+": int.__add__, "-": int.__sub__, "×": int.__mul__}[op](int(left), int(right)) == int(value)
        assert rejected != chosen and rejected.split(" = ")[0] == expression
    kto = load_aligned_dataset("kto_demo", resolve({"stage": "kto", "dataset_dir": str(DATA)}).config)
    assert len(kto) == 40 and sorted(set(kto["_kto_tag"])) == [False, True]


def test_quickstart_eval_prompts_are_held_out():
    cfg = resolve({"stage": "sft", "dataset_dir": str(DATA), "dataset": "quickstart_task",
                   "eval_dataset": "quickstart_eval"}).config
    splits = load_aligned(cfg)
    train = {row[0]["content"] for row in splits.train["_prompt"]}
    held = {row[0]["content"] for row in splits.eval["_prompt"]}
    assert len(train) == 3000 and len(held) == 200 and not train & held
    row = splits.eval[0]
    letters = row["_prompt"][0]["content"].split("\n")[1].split(" ")
    assert row["_response"][0]["content"] == " ".join(reversed(letters))


def test_generator_is_deterministic(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_data", DATA / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (DATA / path.name).read_bytes(), path.name
    assert json.loads((tmp_path / "dataset_info.json").read_text()) == read_info(DATA)

"""`tuneforge lengths` and `tuneforge preview` as a user runs them, and bad data ending in exit 2 without traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tiny_model_dir, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model_name_or_path: {tiny_model_dir}\nstage: sft\ndataset: sharegpt_demo\n"
                    f"dataset_dir: {REPO / 'data'}\ntemplate: chatml\ncutoff_len: 40\n")
    return path


def test_lengths_json_report(config, tmp_path, capsys):
    png = tmp_path / "lengths.png"
    assert main(["lengths", str(config), "--json", "--png", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 8 and report["cutoff_len"] == 40
    assert report["p50"] <= report["p90"] <= report["p99"] <= report["max"]
    assert 0 < report["truncated_share"] <= 1  # the demo chats are longer than 40 tokens
    assert report["cutoff_len_for_99pct_exact"] == report["max"]  # 8 examples: P99 is the longest
    assert sum(h["count"] for h in report["histogram"]) == 8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_json_marks_trained_tokens(config, capsys):
    assert main(["preview", str(config), "--n", "2", "--json", "cutoff_len=512"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2
    row = rows[0]
    assert len(row["input_ids"]) == len(row["labels"]) and row["text"].startswith("<|im_start|>system")
    trained = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
    assert trained and all(label in (-100, t) for t, label in zip(row["input_ids"], row["labels"], strict=True))


def test_preview_text_highlights(config, capsys):
    assert main(["preview", str(config), "--n", "1", "cutoff_len=512"]) == 0
    out = capsys.readouterr().out
    assert "⟦" in out and "<|im_end|>" in out and "trained]" in out


def test_preview_pairwise_fields(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "dpo.yaml"
    path.write_text(f"model_name_or_path: {tiny_model_dir}\nstage: dpo\ndataset: dpo_demo\n"
                    f"dataset_dir: {REPO / 'data'}\ntemplate: chatml\n")
    assert main(["preview", str(path), "--n", "1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert {"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"} <= set(row)


@pytest.mark.slow  # a whole CLI process
def test_malformed_data_exit_two_with_rows_named(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": "ok", "output": "fine"}, {"instruction": "", "output": ""}, {"output": "no prompt"}]
    (data / "bad.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"bad": {"file_name": "bad.json"}}))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model_name_or_path: {tiny_model_dir}\ndataset: bad\ndataset_dir: {data}\ntemplate: chatml\n")
    proc = subprocess.run([sys.executable, "-m", "tuneforge", "preview", str(cfg)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "bad.json:" in proc.stderr  # the bad rows are named by file:row

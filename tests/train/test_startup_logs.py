"""Start-up logs each fact once: the data summary and the trainable-parameter line are not repeated."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from trainkit import make_cfg

from tuneforge.train.core.workflow import prepare

DATA = Path(__file__).resolve().parents[2] / "data"


def test_no_start_up_line_is_logged_twice(tiny_model_dir, tmp_path, caplog):
    cfg = make_cfg(tmp_path / "out", model_name_or_path=str(tiny_model_dir), template="chatml", finetuning_type="lora",
                   dataset="alpaca_demo", dataset_dir=str(DATA), max_samples=8, cutoff_len=64)
    with caplog.at_level(logging.INFO):
        prepare(cfg)
    lines = Counter(r.getMessage() for r in caplog.records if r.name.startswith("tuneforge"))
    assert any(line.startswith("Data summary") for line in lines)
    assert any(line.startswith("trainable params") for line in lines)
    assert [line for line, n in lines.items() if n > 1] == []

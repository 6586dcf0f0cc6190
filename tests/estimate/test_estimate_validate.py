"""bench/estimate_validate.py on the CPU: every GPU validation run builds its config and gets a prediction, and
the runs span what the issue asks for (shapes, methods, checkpointing, cutoffs, batches, Liger, DPO, ZeRO-3)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from shared_models import require_shared

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("estimate_validate", REPO / "bench" / "estimate_validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_predicts_every_run(tmp_path, monkeypatch):
    qwen = require_shared("Qwen2.5-0.5B-Instruct")
    ev = _module()
    monkeypatch.setattr(ev, "CACHE", tmp_path)
    args = argparse.Namespace(qwen_dir=qwen, runs="", gpu_memory=140.4, budget=0, dry_run=True, cpu_smoke=False)
    rows = ev.run_all(args)
    assert len(rows) >= 12
    for row in rows:
        assert row["predicted"]["peak_allocated_gib"] > 0, row
    configs = [r["config"] for r in rows]
    shapes = {ev.RUNS[r["run"]][0] for r in rows}
    assert shapes == {"0.5b", "1.5b", "7b"}
    assert {c["finetuning_type"] for c in configs} == {"lora", "freeze", "full"}
    assert any(c.get("quantization_bit") == 4 for c in configs)
    assert {c.get("disable_gradient_checkpointing", False) for c in configs} == {False, True}
    assert {c.get("enable_liger_kernel", False) for c in configs} == {False, True}
    cutoffs = {c["cutoff_len"] for c in configs}
    batches = {c["per_device_train_batch_size"] for c in configs}
    assert min(cutoffs) == 512 and max(cutoffs) == 4096 and min(batches) == 1 and max(batches) == 8
    assert any(c["stage"] == "dpo" for c in configs) and any("deepspeed" in c for c in configs)
    table = ev.table(rows, "dry run")
    assert table.count("\n") == len(rows) + 1

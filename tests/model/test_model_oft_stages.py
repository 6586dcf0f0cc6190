"""finetuning_type: oft through every other stage (pt, rm, dpo, kto, ppo): the shared adapter path saves an OFT
adapter, and the preference stages take the adapter-disabled policy as their reference (no second model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tuneforge.config.loader import resolve
from tuneforge.train import stage_runner

DATA = Path(__file__).resolve().parents[2] / "data"
STAGE_KEYS = {
    "pt": {"dataset": "pt_demo", "template": None, "cutoff_len": 128},
    "rm": {"dataset": "dpo_demo"},
    "dpo": {"dataset": "dpo_demo"},
    "kto": {"dataset": "kto_demo"},
    "ppo": {"dataset": "quickstart_task", "reward_model": "http://127.0.0.1:9/unused", "reward_model_type": "api",
            "max_new_tokens": 4, "ppo_epochs": 1, "per_device_train_batch_size": 2, "use_cpu": True},
}


def shorter(completion_ids, **_):
    return [-float(len(ids)) for ids in completion_ids]


@pytest.mark.parametrize("stage", list(STAGE_KEYS))
def test_oft_trains_in_every_stage(stage, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    config = {"model_name_or_path": str(tiny_model_dir), "do_train": True, "stage": stage, "finetuning_type": "oft",
              "oft_block_size": 16, "dataset_dir": str(DATA), "template": "chatml", "cutoff_len": 64, "max_samples": 8,
              "output_dir": str(out), "per_device_train_batch_size": 4, "max_steps": 2, "logging_steps": 1,
              "save_strategy": "no", "learning_rate": 1e-3, "report_to": "none", "seed": 0, **STAGE_KEYS[stage]}
    res = resolve(config, environ={})
    assert res.errors == [], [(d.key, d.message) for d in res.errors]
    assert not any(d.key == "finetuning_type" for d in res.diagnostics)  # no "second copy" notice
    extra = {"reward": shorter} if stage == "ppo" else {}
    stage_runner(stage)(res.config, **extra)
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "OFT" and saved["oft_block_size"] == 16
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and all("oft_R" in key or "v_head" in key for key in weights)
    assert any(value.abs().sum() > 0 for key, value in weights.items() if "oft_R" in key)
    if stage == "rm":
        assert (out / "value_head.safetensors").is_file()
    if stage == "dpo":  # a fresh OFT adapter is the identity: policy == reference, the loss starts at ln 2
        rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
        assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)

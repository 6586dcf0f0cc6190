"""Stage kto end to end on the tiny model, its loss at initialisation, and the exact ratio metrics.

At initialisation the policy equals its reference, so every log-ratio r and the reference point z_0 are 0 and each
example's loss is λ_y·(1 − σ(0)) = λ_y / 2: 0.5 with the default weights.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from trainkit import make_cfg

from tuneforge.data.collator import KTOCollator
from tuneforge.losses import sft_term
from tuneforge.testing import PAD_ID
from tuneforge.train import stage_runner
from tuneforge.train.core.callbacks import RunMeter, ratio
from tuneforge.train.stages import preference as pref
from tuneforge.train.stages.kto import KTOLoss, margins

pytestmark = pytest.mark.slow  # end-to-end runs: make test-fast skips them

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
METRICS = {"rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "kl"}


def kto_cfg(out: Path, model_dir: Path, **keys):
    base = dict(stage="kto", do_train=True, finetuning_type="lora", model_name_or_path=str(model_dir),
                dataset="kto_demo", dataset_dir=str(DATA_DIR), template="chatml", cutoff_len=64, max_samples=8,
                max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, plot_loss=True)
    return make_cfg(out, **{**base, **keys})


# lora: the adapter-disabled reference; freeze: a second copy, with gradient accumulation; full: ref_model given.
@pytest.mark.parametrize(("method", "keys"), [("lora", {}), ("freeze", {"gradient_accumulation_steps": 2}),
                                              ("full", {"ref_model": "tiny"})])
def test_kto_runs_and_logs_its_metrics(method, keys, tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    keys = {k: str(tiny_model_dir) if v == "tiny" else v for k, v in keys.items()}
    metrics = stage_runner("kto")(kto_cfg(out, tiny_model_dir, finetuning_type=method, **keys))
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    assert {weights, "trainer_log.jsonl", "all_results.json", "training_rewards_chosen.png"} <= {
        p.name for p in out.iterdir()}
    logs = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert [e["step"] for e in logs] == [1, 2]
    assert logs[0]["loss"] == pytest.approx(0.5, abs=1e-6)
    assert logs[0]["kl"] == 0.0 and logs[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    for entry in logs:
        assert entry.keys() >= METRICS
        assert all(math.isfinite(entry[key]) for key in METRICS | {"loss"})
        assert entry["rewards/margins"] == pytest.approx(entry["rewards/chosen"] - entry["rewards/rejected"])
    assert math.isfinite(metrics["train_loss"])


def test_kto_evaluation(tmp_path, tiny_model_dir):
    metrics = stage_runner("kto")(kto_cfg(tmp_path / "out", tiny_model_dir, eval_dataset="kto_demo", do_eval=True,
                                          per_device_eval_batch_size=1))
    assert {f"eval_{key}" for key in METRICS} <= metrics.keys()
    assert all(math.isfinite(metrics[f"eval_{key}"]) for key in METRICS)


# ---- the loss on one batch ----------------------------------------------------------------------------------------


def kto_batch(tags: list[bool], seed: int = 0) -> dict[str, torch.Tensor]:
    rng = random.Random(seed)
    rows = []
    for tag in tags:
        prompt = [rng.randint(5, 1000) for _ in range(4)]
        reply, other = ([rng.randint(5, 1000) for _ in range(rng.randint(2, 6))] for _ in range(2))
        rows.append({"input_ids": prompt + reply, "labels": [-100] * 4 + reply, "kl_input_ids": prompt + other,
                     "kl_labels": [-100] * 4 + other, "kto_tags": tag})
    return KTOCollator(PAD_ID)(rows)


@pytest.fixture(scope="module")
def lora_policy(tiny_model_dir, tmp_path_factory):
    from tuneforge.model import load_model, load_tokenizer

    cfg = make_cfg(tmp_path_factory.mktemp("o"), finetuning_type="lora", model_name_or_path=str(tiny_model_dir),
                   stage="kto", do_train=True, dataset="kto_demo")
    return cfg, load_model(cfg, load_tokenizer(cfg), is_trainable=True)


def test_kto_loss_at_initialisation_with_weights_and_ftx(lora_policy):
    cfg, model = lora_policy
    tags = [True, False, False, True, False]
    batch = kto_batch(tags)
    ft = replace(cfg.finetuning, kto_chosen_weight=2.0, kto_rejected_weight=1.0, pref_ftx=0.3)
    loss, metrics = KTOLoss(replace(cfg, finetuning=ft), pref.Reference("adapter"))(model, batch, None)
    logps, lengths = pref.sequence_stats(model, batch)
    desirable = torch.tensor(tags)
    nll = (sft_term(logps, lengths) * desirable).sum() / len(tags)  # desirable NLL averaged over all 5 examples
    assert loss.item() == pytest.approx((2 * 2 * 0.5 + 3 * 0.5) / 5 + 0.3 * nll.item(), rel=1e-6)
    assert metrics["kl"].item() == 0.0
    assert metrics["logps/chosen"]["::count"].item() == 2 and metrics["logps/rejected"]["::count"].item() == 3


def test_ratio_meter_averages_over_examples_not_micro_batches():
    meter = RunMeter(derive=margins)
    # Three micro-batches of one example each: desirable (reward 3), undesirable (-1), desirable (1).
    for reward, desirable in ((3.0, True), (-1.0, False), (1.0, True)):
        meter.add_metrics({"rewards/chosen": ratio(torch.tensor(reward * desirable), int(desirable)),
                           "rewards/rejected": ratio(torch.tensor(reward * (not desirable)), int(not desirable)),
                           "kl": torch.tensor(0.3)}, training=True)
    logged = meter.pop_metrics(training=True)
    assert logged == pytest.approx({"rewards/chosen": 2.0, "rewards/rejected": -1.0, "rewards/margins": 3.0,
                                    "kl": 0.3})
    meter.add_metrics({"rewards/chosen": ratio(torch.tensor(0.0), 0)}, training=True)
    assert meter.pop_metrics(training=True) == {}  # no desirable example in the window: left out, never NaN

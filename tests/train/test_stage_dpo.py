"""Stage dpo end to end on the tiny model, its losses at initialisation, and the reference model.

At initialisation the policy equals its reference (LoRA: B = 0 and the reference is the same model with the adapter
disabled; full/freeze: a second copy of the same weights), so every implicit reward is 0 and the first logged
sigmoid loss is exactly ln 2 = 0.693147...
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from trainkit import make_cfg

from tuneforge.data.collator import PairwiseCollator
from tuneforge.losses import orpo_loss, simpo_loss
from tuneforge.testing import PAD_ID
from tuneforge.train import stage_runner
from tuneforge.train.stages import preference as pref
from tuneforge.train.stages.dpo import DPOLoss

pytestmark = pytest.mark.slow  # end-to-end runs: make test-fast skips them

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
REWARD_KEYS = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"}
LOGPS_KEYS = {"logps/chosen", "logps/rejected"}


def run_stage(tmp_path: Path, model_dir: Path, **keys):
    """Run a tiny dpo job (keys are flat LLaMA-Factory keys); returns (output_dir, metrics, step logs)."""
    out = tmp_path / "out"
    base = dict(stage="dpo", do_train=True, finetuning_type="lora", model_name_or_path=str(model_dir),
                dataset="dpo_demo", dataset_dir=str(DATA_DIR), template="chatml", cutoff_len=64, max_samples=8,
                max_steps=2, learning_rate=1e-4, plot_loss=True)
    metrics = stage_runner(keys.get("stage", "dpo"))(make_cfg(out, **{**base, **keys}))
    state = out / "trainer_state.json"  # written by training runs only
    history = json.loads(state.read_text())["log_history"] if state.is_file() else []
    return out, metrics, [e for e in history if "loss" in e]


def easy_pairs_dir(tmp_path: Path, n: int = 24) -> Path:
    """A dataset_dir with ``easy``: varied questions, always chosen "yes", always rejected "no no no"."""
    rng = random.Random(0)
    rows = [{"instruction": f"question {rng.randint(0, 999)}?", "chosen": "yes", "rejected": "no no no"}
            for _ in range(n)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "easy.json").write_text(json.dumps(rows))
    info = {"easy": {"file_name": "easy.json", "ranking": True,
                     "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return tmp_path


# Gradient accumulation (freeze) must not change the logged loss: the loss is a mean over pairs per micro-batch,
# divided by the accumulation steps (a token-normalised sum would log 2·ln 2 here).
@pytest.mark.parametrize(("method", "accumulation"), [("lora", 1), ("freeze", 2), ("full", 1)])
def test_dpo_runs_and_starts_at_ln2(method, accumulation, tmp_path, tiny_model_dir):
    out, metrics, logs = run_stage(tmp_path, tiny_model_dir, finetuning_type=method, save_strategy="steps",
                                   save_steps=2, gradient_accumulation_steps=accumulation)
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    names = {p.name for p in out.iterdir()}
    assert {weights, "trainer_log.jsonl", "all_results.json", "training_rewards_accuracies.png",
            "checkpoint-2"} <= names
    first = logs[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    for key in REWARD_KEYS - {"rewards/accuracies"}:
        assert first[key] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/accuracies"] == 0.0  # a tie counts as wrong
    assert first["logps/chosen"] < 0 and first["logps/rejected"] < 0
    assert [e["step"] for e in logs] == [1, 2]
    assert math.isfinite(metrics["train_loss"])
    lines = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [x["current_steps"] for x in lines if "loss" in x] == [1, 2]


def test_easy_preferences_are_learned(tmp_path, tiny_model_dir):
    data = easy_pairs_dir(tmp_path / "data")
    out, metrics, logs = run_stage(tmp_path, tiny_model_dir, dataset="easy", dataset_dir=str(data),
                                   eval_dataset="easy", max_samples=24, per_device_train_batch_size=4,
                                   per_device_eval_batch_size=8, max_steps=6, learning_rate=5e-3, do_eval=True,
                                   pref_beta=0.5)
    assert logs[0]["rewards/accuracies"] == 0.0
    assert metrics["eval_rewards/accuracies"] > 0.5
    assert metrics["eval_rewards/margins"] > 0
    assert metrics["eval_loss"] < math.log(2)
    evals = json.loads((out / "eval_results.json").read_text())
    assert {f"eval_{k}" for k in REWARD_KEYS | LOGPS_KEYS} <= evals.keys()


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_reference_free_losses_load_no_reference(loss, tmp_path, tiny_model_dir, monkeypatch):
    def no_reference(*args, **kwargs):
        raise AssertionError("a reference-free loss loaded a reference model")

    monkeypatch.setattr(pref, "load_reference_model", no_reference)
    _, metrics, logs = run_stage(tmp_path, tiny_model_dir, finetuning_type="full", pref_loss=loss, max_steps=1)
    assert math.isfinite(logs[0]["loss"]) and math.isfinite(metrics["train_loss"])
    # Reference-free rewards are β·(length-averaged log π), as LLaMA-Factory logs them.
    assert logs[0]["rewards/chosen"] == pytest.approx(0.1 * logs[0]["logps/chosen"], rel=1e-5)
    if loss == "orpo":
        assert {"sft_loss", "odds_ratio_loss"} <= logs[0].keys()


# ---- the loss on one batch ----------------------------------------------------------------------------------------


def pair_batch(n: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """n pairs sharing a prompt of 4 tokens; replies of different lengths (so LD-DPO weighting matters)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = [rng.randint(5, 1000) for _ in range(4)]
        chosen = [rng.randint(5, 1000) for _ in range(rng.randint(2, 5))]
        rejected = [rng.randint(5, 1000) for _ in range(rng.randint(6, 9))]
        rows.append({"chosen_input_ids": prompt + chosen, "chosen_labels": [-100] * 4 + chosen,
                     "rejected_input_ids": prompt + rejected, "rejected_labels": [-100] * 4 + rejected})
    return PairwiseCollator(PAD_ID)(rows)


@pytest.fixture(scope="module")
def lora_policy(tiny_model_dir, tmp_path_factory):
    from tuneforge.model import load_model, load_tokenizer

    cfg = make_cfg(tmp_path_factory.mktemp("o"), finetuning_type="lora", model_name_or_path=str(tiny_model_dir),
                   stage="dpo", do_train=True, dataset="dpo_demo")
    return cfg, load_model(cfg, load_tokenizer(cfg), is_trainable=True)


def loss_of(cfg, model, **keys):
    from dataclasses import replace

    ft = replace(cfg.finetuning, **keys)
    reference = pref.Reference("none" if ft.pref_loss in ("orpo", "simpo") else "adapter")
    return DPOLoss(replace(cfg, finetuning=ft), reference)(model, pair_batch(), None)


def test_lora_reference_is_the_adapter_disabled_policy(lora_policy):
    cfg, model = lora_policy
    batch = pair_batch()
    reference = pref.build_reference(cfg, model, None)
    assert reference.kind == "adapter" and reference.model is None
    policy = pref.pair_logps(model, batch, average=False)
    ref = reference.run(model, lambda m: pref.pair_logps(m, batch, average=False))
    assert torch.equal(policy.chosen, ref.chosen) and torch.equal(policy.rejected, ref.rejected)
    assert not ref.chosen.requires_grad  # computed under no_grad
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    saved = [p.detach().clone() for p in lora_b]
    try:
        with torch.no_grad():
            for p in lora_b:
                p.normal_(0, 0.5)
        moved = pref.pair_logps(model, batch, average=False)
        again = reference.run(model, lambda m: pref.pair_logps(m, batch, average=False))
        assert not torch.allclose(moved.chosen, ref.chosen)  # the adapter acts on the policy...
        assert torch.allclose(again.chosen, ref.chosen, atol=1e-6)  # ...and is off in the reference
    finally:
        with torch.no_grad():
            for p, value in zip(lora_b, saved, strict=True):
                p.copy_(value)


@pytest.mark.parametrize(("loss", "expected"), [("sigmoid", math.log(2)), ("hinge", 1.0), ("ipo", (1 / 0.2) ** 2)])
def test_losses_with_reference_at_initialisation(lora_policy, loss, expected):
    cfg, model = lora_policy
    value, metrics = loss_of(cfg, model, pref_loss=loss, pref_beta=0.1)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert torch.all(metrics["rewards/margins"] == 0)


def test_reference_free_losses_match_their_formulas(lora_policy):
    cfg, model = lora_policy
    avg = pref.pair_logps(model, pair_batch(), average=True)
    with torch.no_grad():
        simpo, _ = loss_of(cfg, model, pref_loss="simpo", pref_beta=2.0, simpo_gamma=0.5)
        orpo, metrics = loss_of(cfg, model, pref_loss="orpo", pref_beta=0.1)
    assert simpo.item() == pytest.approx(simpo_loss(avg.chosen, avg.rejected, beta=2.0, gamma=0.5).mean().item())
    expected = orpo_loss(avg.chosen, avg.rejected, beta=0.1) - avg.chosen  # β·L_OR + L_SFT (= −avg log π(y_w))
    assert orpo.item() == pytest.approx(expected.mean().item(), rel=1e-6)
    assert metrics["sft_loss"].mean().item() == pytest.approx(-avg.chosen.mean().item(), rel=1e-6)


def test_ftx_bco_and_ld_alpha_compose(lora_policy):
    cfg, model = lora_policy
    base, _ = loss_of(cfg, model)
    ftx, _ = loss_of(cfg, model, pref_ftx=0.5)
    sft = pref.pair_logps(model, pair_batch(), average=False).sft
    assert ftx.item() == pytest.approx(base.item() + 0.5 * sft.mean().item(), rel=1e-5)
    bco, _ = loss_of(cfg, model, pref_bco_weight=1.0)  # at init δ = 0 and rewards = 0: L_bco = 2·ln 2
    assert bco.item() == pytest.approx((math.log(2) + 2 * math.log(2)) / 2, rel=1e-6)
    ld, metrics = loss_of(cfg, model, ld_alpha=0.5)  # the policy is length-desensitised, the reference is not
    assert math.isfinite(ld.item()) and torch.all(metrics["rewards/rejected"] > 0)


def test_ld_weighted_logps_by_hand():
    """Pair 0: chosen trains 2 tokens (-1, -2), rejected 3 (-1, -1, -4); the shared length is 2, so the rejected
    reply's third token is verbose: chosen = -3, rejected = -1 - 1 + 0.5·(-4) = -4."""
    token = torch.tensor([[0.0, -1.0, -2.0, 0.0], [0.0, -1.0, -1.0, -4.0]])
    labels = torch.tensor([[-100, 7, 8, -100], [-100, 7, 9, 9]])
    assert pref.ld_weighted_logps(token, labels, 0.5).tolist() == [-3.0, -4.0]
    assert pref.ld_weighted_logps(token, labels, 1.0).tolist() == [-3.0, -6.0]


def test_evaluation_only_uses_the_model_as_reference(tmp_path, tiny_model_dir):
    _, metrics, _ = run_stage(tmp_path, tiny_model_dir, do_train=False, do_eval=True, eval_dataset="dpo_demo")
    assert metrics["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert not any(key.startswith("eval_rewards") for key in metrics)
    assert "eval_logps/chosen" in metrics

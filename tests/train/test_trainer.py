"""The trainer's loss reduction, learning, evaluation metrics and the arguments it builds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from trainkit import IdCollator, ParamSnapshots, counting_rows, make_cfg, random_rows, same_params, step_logs

from tuneforge.testing import build_tiny_model
from tuneforge.train.core.loss import FunctionLoss
from tuneforge.train.core.trainer import build_trainer, build_training_args


def _train(tmp_path, tokenizer, rows, **keys):
    cfg = make_cfg(tmp_path, **keys)
    snaps = ParamSnapshots()
    trainer = build_trainer(cfg, build_tiny_model(seed=0), tokenizer, rows, None, IdCollator(), callbacks=[snaps])
    trainer.train()
    return trainer, snaps


def test_batch_8x1_equals_batch_1x8(tmp_path, tokenizer):
    """Token-level normalisation over the whole step: the micro-batch split changes neither loss nor update.

    SGD, because its update is linear in the gradient: Adam's first steps are about lr·sign(g), which turns the
    last-bit differences of two summation orders in near-zero gradients into 1e-5 parameter differences.
    """
    rows = random_rows(16, seed=3, min_len=3, max_len=30)  # lengths differ a lot: a per-batch mean would drift
    common = {"max_steps": 2, "disable_shuffling": True, "optim": "sgd", "learning_rate": 0.5}
    big, big_snaps = _train(tmp_path / "b8", tokenizer, rows, per_device_train_batch_size=8,
                            gradient_accumulation_steps=1, **common)
    small, small_snaps = _train(tmp_path / "b1", tokenizer, rows, per_device_train_batch_size=1,
                                gradient_accumulation_steps=8, **common)
    big_logs, small_logs = step_logs(big.state.log_history), step_logs(small.state.log_history)
    assert sorted(big_logs) == sorted(small_logs) == [1, 2]
    for step in (1, 2):
        assert big_logs[step]["loss"] == pytest.approx(small_logs[step]["loss"], abs=1e-5)
        assert big_logs[step]["grad_norm"] == pytest.approx(small_logs[step]["grad_norm"], abs=1e-5)
        assert same_params(big_snaps.by_step[step], small_snaps.by_step[step], atol=1e-6)
    assert not same_params(big_snaps.by_step[0], big_snaps.by_step[1])  # the step did change the weights
    # Step 1's loss is plain cross-entropy of a random model: close to ln(vocab).
    assert big_logs[1]["loss"] == pytest.approx(math.log(1024), rel=0.1)


def test_loss_goes_down_on_a_learnable_task(tmp_path, tokenizer):
    trainer, _ = _train(tmp_path, tokenizer, counting_rows(64), max_steps=20, per_device_train_batch_size=8,
                        learning_rate=5e-3, warmup_steps=2)
    losses = [e["loss"] for _, e in sorted(step_logs(trainer.state.log_history).items())]
    assert len(losses) == 20
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    assert all(math.isfinite(x) for x in losses)


def _full_logit_reference(model, rows):
    """Token cross-entropy and argmax accuracy over every trained token, from ordinary full logits."""
    batch = IdCollator()(rows)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, labels = logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1)
    keep = labels != -100
    loss = F.cross_entropy(logits[keep], labels[keep]).item()
    accuracy = (logits[keep].argmax(-1) == labels[keep]).float().mean().item()
    return loss, accuracy


def test_eval_metrics_match_full_logits(tmp_path, tokenizer):
    """eval_loss, eval_perplexity and eval_accuracy equal a full-logits computation; accuracy leaves loss alone."""
    rows = counting_rows(8, period=5)  # with 8 rows in one eval batch, HF's batch mean is the token mean
    model = build_tiny_model(seed=0)
    ref_loss, ref_acc = _full_logit_reference(model, rows)
    results = {}
    for accuracy in (False, True):
        cfg = make_cfg(tmp_path / str(accuracy), compute_accuracy=accuracy, per_device_eval_batch_size=8)
        trainer = build_trainer(cfg, model, tokenizer, rows, rows, IdCollator())
        results[accuracy] = trainer.evaluate()
    assert results[False]["eval_loss"] == pytest.approx(ref_loss, abs=1e-5)
    assert results[True]["eval_loss"] == pytest.approx(results[False]["eval_loss"], abs=1e-6)
    assert results[True]["eval_perplexity"] == pytest.approx(math.exp(ref_loss), rel=1e-5)
    assert results[True]["eval_accuracy"] == pytest.approx(ref_acc, abs=1e-6)
    assert "eval_accuracy" not in results[False]


def test_training_arguments_carry_our_settings(tmp_path):
    cfg = make_cfg(tmp_path, disable_shuffling=True, early_stopping_steps=3, eval_strategy="steps",
                   eval_steps=5, enable_jit_checkpoint=True, gradient_checkpointing=True)
    args = build_training_args(cfg)
    assert args.remove_unused_columns is False
    assert args.label_names == ["labels"]
    assert args.train_sampling_strategy == "sequential"
    assert args.metric_for_best_model == "eval_loss"
    assert args.prediction_loss_only is True
    assert args.enable_jit_checkpoint is False
    assert args.report_to == []
    assert not args.gradient_checkpointing  # the model loader owns it
    assert build_training_args(make_cfg(tmp_path)).train_sampling_strategy == "random"


def test_early_stopping_callback_added(tmp_path, tokenizer):
    from transformers import EarlyStoppingCallback

    cfg = make_cfg(tmp_path, early_stopping_steps=2, eval_strategy="steps", eval_steps=2)
    trainer = build_trainer(cfg, build_tiny_model(), tokenizer, random_rows(8), random_rows(4), IdCollator())
    stopper = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EarlyStoppingCallback)]
    assert len(stopper) == 1 and stopper[0].early_stopping_patience == 2


def test_loraplus_gives_lora_b_a_higher_learning_rate(tmp_path, tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_tiny_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    cfg = make_cfg(tmp_path, finetuning_type="lora", loraplus_lr_ratio=16.0, learning_rate=1e-4, max_steps=1)
    trainer = build_trainer(cfg, model, tokenizer, random_rows(8), None, IdCollator())
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates["lora_a"] == pytest.approx(1e-4) and rates["lora_b"] == pytest.approx(16e-4)
    trainer.train()  # the scheduler keeps the ratio: both groups follow the same schedule
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates["lora_b"] == pytest.approx(16 * rates["lora_a"])


def test_loss_runs_under_mixed_precision(tmp_path, tokenizer):
    """With bf16 the output head's matmul is bf16 even for fp32 (full fine-tuning) weights, as in model.forward."""
    seen = []

    def loss_fn(model, batch, num_items_in_batch):
        from tuneforge.losses.ce import causal_lm_loss

        seen.append((torch.is_autocast_enabled("cpu"), model.get_output_embeddings()(torch.ones(1, 64)).dtype))
        return causal_lm_loss(model, batch, num_items_in_batch=num_items_in_batch)

    cfg = make_cfg(tmp_path / "out", bf16=True, max_steps=1)
    trainer = build_trainer(cfg, build_tiny_model(seed=0), tokenizer, random_rows(4), None, IdCollator(),
                            compute_loss=FunctionLoss(loss_fn))
    trainer.train()
    assert seen == [(True, torch.bfloat16)] * len(seen) and seen


def _lora_tiny():
    from peft import LoraConfig, get_peft_model

    return get_peft_model(build_tiny_model(seed=0), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))


def test_adapters_skip_the_fp32_input_cast_under_autocast(tmp_path, tokenizer):
    """Under bf16 autocast PEFT's input cast is off during the loss (and back on after); the loss is unchanged."""
    from peft.helpers import disable_input_dtype_casting

    from tuneforge.losses.ce import causal_lm_loss

    flags = []

    def loss_fn(model, batch, num_items_in_batch):
        flags.append({m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")})
        return causal_lm_loss(model, batch, num_items_in_batch=num_items_in_batch)

    model = _lora_tiny()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    calls = []  # the flag at every adapter call: the forward, and its recomputation inside backward

    def record(module, args, output):
        calls.append((torch.is_grad_enabled(), module.cast_input_dtype_enabled))

    handles = [m.register_forward_hook(record) for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    trainer = build_trainer(make_cfg(tmp_path / "out", bf16=True, max_steps=1), model, tokenizer, random_rows(4),
                            None, IdCollator(), compute_loss=FunctionLoss(loss_fn))
    trainer.train()
    for handle in handles:
        handle.remove()
    assert flags and all(f == {False} for f in flags)
    assert len(calls) == 2 * len(handles) * len(flags) and {flag for _, flag in calls} == {False}, calls
    assert {m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")} == {True}
    batch = IdCollator()(random_rows(4))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        cast, _ = causal_lm_loss(model, batch, num_items_in_batch=None)
        with disable_input_dtype_casting(model):
            uncast, _ = causal_lm_loss(model, batch, num_items_in_batch=None)
    assert torch.equal(cast, uncast)


def test_meter_counts_every_token_of_an_unpadded_stream():
    """A pt document's EOS may be the pad id (Qwen); in a padding-free stream it is still a real token."""
    from tuneforge.data.collator import PaddingCollator, PaddingFreeCollator
    from tuneforge.train.core.callbacks import RunMeter

    rows = [{"input_ids": [5, 6, 0], "labels": [5, 6, 0]}, {"input_ids": [7, 0], "labels": [7, 0]}]
    meter = RunMeter(pad_token_id=0)
    assert meter.real_tokens(PaddingFreeCollator(pad_token_id=0)(rows)).item() == 5
    assert meter.real_tokens(PaddingCollator(pad_token_id=0)(rows)).item() == 5  # the 0/1 attention mask


def test_keys_the_installed_transformers_lacks_are_dropped_at_default_and_refused_when_set(monkeypatch):
    """The key table may come from a newer transformers than the installed one (the GPU image runs an older 5.x)."""
    import dataclasses

    from tuneforge.config.diagnostics import ConfigError
    from tuneforge.train.core import trainer as trainer_module

    @dataclasses.dataclass
    class OlderArgs:  # an installed transformers that has no `warmup_steps`
        learning_rate: float = 5e-5

    monkeypatch.setattr(trainer_module, "Seq2SeqTrainingArguments", OlderArgs)
    assert trainer_module.installed_only({"learning_rate": 1e-4, "warmup_steps": 0}) == {"learning_rate": 1e-4}
    with pytest.raises(ConfigError, match="warmup_steps: not a training argument of the installed transformers"):
        trainer_module.installed_only({"learning_rate": 1e-4, "warmup_steps": 100})

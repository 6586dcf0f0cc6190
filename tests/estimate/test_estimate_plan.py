"""What ``Plan.from_config`` reads from a resolved config, and the overlay ``--fit`` turns back into keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tuneforge.config.loader import resolve
from tuneforge.estimate import plan_of
from tuneforge.estimate.plan import Plan, overlay

REPO = Path(__file__).resolve().parents[2]


def _plan(world: int = 1, **keys) -> Plan:
    res = resolve({"model_name_or_path": "Qwen/Qwen2.5-7B", **keys}, environ={})
    return plan_of(res.config, world)


def test_defaults_follow_llamafactory_and_the_gpu_path():
    plan = _plan(bf16=True)
    assert (plan.stage, plan.method, plan.lora_rank, plan.gc, plan.compute_bytes) == ("sft", "lora", 8, "on", 2)
    assert plan.padding_free and plan.trainable_bytes == 4 and plan.stream_bytes == 2


def test_keys_reach_the_plan():
    ds = str(REPO / "examples" / "deepspeed" / "ds_z3_config.json")
    plan = _plan(4, finetuning_type="full", deepspeed=ds, disable_gradient_checkpointing=True, pure_bf16=True,
                 per_device_train_batch_size=2, gradient_accumulation_steps=8, cutoff_len=4096, optim="adamw_8bit")
    assert (plan.zero_stage, plan.world, plan.gc, plan.micro_batch, plan.grad_accum, plan.cutoff) == \
        (3, 4, "off", 2, 8, 4096)
    assert plan.trainable_bytes == 2 and plan.optim == "adamw_8bit"


def test_preference_stages_pad_and_pair():
    dpo = _plan(stage="dpo", bf16=True, cutoff_len=1024, per_device_train_batch_size=2)
    assert not dpo.padding_free and dpo.tokens_per_micro_batch() == 2 * 2 * 1024
    assert _plan(stage="dpo", finetuning_type="full").separate_ref
    assert not dpo.separate_ref  # LoRA: the reference is the base with the adapter off


def test_overlay_names_config_keys():
    before = Plan(micro_batch=8, grad_accum=1)
    after = replace(before, micro_batch=2, grad_accum=4, gc="off", liger=True, quant_bit=4)
    assert overlay(before, after) == {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                                      "disable_gradient_checkpointing": True, "enable_liger_kernel": True,
                                      "quantization_bit": 4}

"""Warnings: the config works but is probably not what you want (memory, stability, speed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ...catalog import stage
from ..machine import bf16_support
from ..schema import load_table
from . import Ctx, Finding, rule


def _cuda_bf16() -> bool | None:
    """True/False when an accelerator is visible, None when there is none (or torch is absent)."""
    return bf16_support()


@rule("warning")
def fp16_prefer_bf16(ctx: Ctx) -> Iterator[Finding]:
    if not ctx.tr.fp16:
        return
    if _cuda_bf16() is not False:
        yield "fp16", "fp16 overflows easily (loss spikes, NaN); use bf16 where the GPU supports it " \
                      "(Ampere or newer)"


@rule("warning")
def no_mixed_precision(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.do_train and not (ctx.tr.bf16 or ctx.tr.fp16 or ctx.ft.pure_bf16) and _cuda_bf16() is not None:
        yield "bf16", "training in fp32 on a GPU takes about twice the memory; set bf16: true"


@rule("warning")
def learning_rate_range(ctx: Ctx) -> Iterator[Finding]:
    if ctx.model.train_from_scratch:  # random init trains at far higher rates than fine-tuning
        return
    table = load_table("lr_ranges.yaml")
    low, high = table["ranges"][ctx.ft.finetuning_type]
    if stage(ctx.stage).reference != "never":  # preference objectives move far from the start quickly
        low /= table["preference_divisor"]
    lr, factor = ctx.tr.learning_rate, table["factor"]
    if lr > high * factor or lr < low / factor:
        yield "learning_rate", f"learning_rate {lr:g} is far outside the usual {low:g} to {high:g} for " \
                               f"{ctx.ft.finetuning_type} fine-tuning"


@rule("warning")
def lora_alpha_ratio(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.finetuning_type != "lora" or ctx.ft.lora_alpha is None:
        return
    ratio = ctx.ft.lora_alpha / ctx.ft.lora_rank
    if ratio > 4:
        yield "lora_alpha", f"lora_alpha / lora_rank = {ratio:g} is above 4: updates this strong can destabilise " \
                            "training (2 is the usual ratio)"


@rule("warning")
def no_grad_clipping(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.do_train and (ctx.tr.max_grad_norm is None or ctx.tr.max_grad_norm <= 0):
        yield "max_grad_norm", "gradient clipping is off (max_grad_norm <= 0): one bad batch can blow up the " \
                               "weights; 1.0 is the usual value"


@rule("warning")
def no_warmup_long_run(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.do_train and ctx.tr.warmup_steps == 0 and ctx.tr.max_steps >= 1000:
        yield "warmup_steps", f"no warmup on a {ctx.tr.max_steps}-step run: early updates at the full learning " \
                              "rate can diverge; try warmup_steps: 0.03 (a ratio) or a step count"


@rule("warning")
def packing_cross_attention(ctx: Ctx) -> Iterator[Finding]:
    spec = stage(ctx.stage)  # conversations packed together (raw text is one stream anyway)
    if spec.packable and spec.needs_response and ctx.data.packing and not ctx.data.neat_packing:
        yield "packing", "packing lets packed examples attend to each other (cross-contamination); " \
                         "neat_packing: true keeps them apart at the same speed"


@rule("warning")
def activation_memory(ctx: Ctx) -> Iterator[Finding]:
    tokens = ctx.data.cutoff_len * ctx.tr.per_device_train_batch_size
    if ctx.model.disable_gradient_checkpointing and tokens > 8192:
        yield "disable_gradient_checkpointing", f"{tokens} tokens per micro-batch without gradient checkpointing " \
                                                "needs a lot of activation memory"
    elif tokens > 65536:
        yield "per_device_train_batch_size", f"cutoff_len x per_device_train_batch_size = {tokens} tokens per " \
                                             "micro-batch; lower the batch and raise gradient_accumulation_steps"


def _model_max_positions(path: str | None) -> int | None:
    config = Path(path or "") / "config.json"
    if not path or not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    data = data.get("text_config", data)
    value = data.get("max_position_embeddings")
    return value if isinstance(value, int) else None


@rule("warning")
def cutoff_beyond_context(ctx: Ctx) -> Iterator[Finding]:
    limit = _model_max_positions(ctx.model.model_name_or_path)
    if limit and ctx.data.cutoff_len > limit and not ctx.model.rope_scaling:
        yield "cutoff_len", f"cutoff_len {ctx.data.cutoff_len} exceeds the model's context of {limit} tokens; " \
                            "lower it or set rope_scaling"

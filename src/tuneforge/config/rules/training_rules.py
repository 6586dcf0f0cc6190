"""Values the run would refuse at start-up (transformers' argument checks, the PPO loop, this machine), found
before anything loads."""

from __future__ import annotations

from collections.abc import Iterator

from ...catalog import stage
from ..machine import bf16_support, visible_gpus
from . import Ctx, Finding, rule


@rule("error")
def batch_sizes_positive(ctx: Ctx) -> Iterator[Finding]:
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = ctx.cfg.value(key)
        if value < 1:
            yield key, f"{key} must be at least 1 (got {value})"


@rule("error")
def learning_rate_positive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.learning_rate < 0 or (ctx.tr.do_train and ctx.tr.learning_rate == 0):
        yield "learning_rate", f"learning_rate must be > 0 to train (got {ctx.tr.learning_rate:g}); 1e-4 is usual " \
                               "for LoRA, 1e-5 for full fine-tuning"


@rule("error")
def ppo_runtime(ctx: Ctx) -> Iterator[Finding]:
    """Stages with their own loop (ppo) run in one process, in fp32 or bf16 (the loop does no fp16 loss scaling)."""
    spec = stage(ctx.stage)
    if ctx.tr.fp16 and not spec.fp16:
        yield "fp16", f"stage {ctx.stage} runs in bf16 or fp32 (fp16 needs loss scaling, which its loop does not " \
                      "do); set bf16: true, or neither"
    if not spec.single_process:
        return
    env = ctx.cfg.env
    processes = env.NNODES * (env.NPROC_PER_NODE or max(1, visible_gpus()))  # train's launcher: one per GPU
    if processes > 1:
        yield "NPROC_PER_NODE", f"stage {ctx.stage} runs in one process, but train would start {processes} " \
                                "(NNODES x NPROC_PER_NODE, or one per visible GPU); launch it with NNODES=1 " \
                                "NPROC_PER_NODE=1"


@rule("error")
def precision_on_this_machine(ctx: Ctx) -> Iterator[Finding]:
    """bf16/fp16 training needs an accelerator that runs it; train would stop in transformers' set-up."""
    if not ctx.tr.do_train or not (ctx.tr.bf16 or ctx.tr.fp16):
        return
    support = bf16_support()
    if ctx.tr.fp16 and (support is None or ctx.tr.use_cpu):
        yield "fp16", "fp16 mixed precision needs a GPU and this machine trains on the CPU; set fp16: false " \
                      "(fp32) to train here"
    elif ctx.tr.bf16 and support is None and not ctx.tr.use_cpu:
        yield "bf16", "bf16: true needs a GPU that runs bf16 and this machine has none; set bf16: false (fp32) to " \
                      "train here, or use_cpu: true for bf16 on the CPU (slow)"
    elif ctx.tr.bf16 and support is False and not ctx.tr.use_cpu:
        yield "bf16", "this GPU does not run bf16 (Ampere or newer does); set fp16: true instead of bf16"


def _step_problems(ctx: Ctx) -> Iterator[Finding]:
    if ctx.cfg.value("logging_strategy") == "steps" and ctx.mon.logging_steps == 0:
        yield "logging_steps", "logging_strategy steps needs logging_steps > 0"
    for key, strategy in (("logging_steps", "logging_strategy"), ("eval_steps", "eval_strategy"),
                          ("save_steps", "save_strategy")):
        value = ctx.cfg.value(key)
        if ctx.cfg.value(strategy) == "steps" and value is not None and value > 1 and not float(value).is_integer():
            yield key, f"{key} above 1 is a step count and must be whole (got {value}); below 1 it is a ratio"


@rule("error")
def trainer_argument_limits(ctx: Ctx) -> Iterator[Finding]:
    """transformers' TrainingArguments checks, asked here so train does not stop on them after start-up."""
    yield from _step_problems(ctx)
    if ctx.tr.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy") and ctx.ev.eval_strategy == "no":
        yield "lr_scheduler_type", f"lr_scheduler_type {ctx.tr.lr_scheduler_type} follows the eval loss: set " \
                                   "eval_strategy (steps or epoch) and eval data"
    if ctx.tr.warmup_steps < 0:
        yield "warmup_steps", f"warmup_steps must be >= 0 (got {ctx.tr.warmup_steps:g})"
    if ctx.cfg.value("dataloader_prefetch_factor") is not None and ctx.cfg.value("dataloader_num_workers") == 0:
        yield "dataloader_prefetch_factor", "dataloader_prefetch_factor needs dataloader_num_workers > 0"
    cache_steps = ctx.cfg.value("torch_empty_cache_steps")
    if cache_steps is not None and cache_steps < 1:
        yield "torch_empty_cache_steps", f"torch_empty_cache_steps must be at least 1 (got {cache_steps})"
    if ctx.cfg.value("bf16_full_eval") and ctx.cfg.value("fp16_full_eval"):
        yield "fp16_full_eval", "bf16_full_eval and fp16_full_eval are both set; choose one"

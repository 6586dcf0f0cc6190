"""``--fit``: the fastest config predicted to fit a memory budget, changing only the knobs the seed names.

Searched: the micro-batch (gradient accumulation keeps the global batch), gradient checkpointing, Liger's fused
kernels, cutoff_len (only down to the data's p99, when the lengths are known), DeepSpeed ZeRO stage and optimizer
offload (several GPUs), and 4-bit QLoRA only when nothing else fits. Speed is the predicted tokens/s (see
:mod:`.time`) times a small-batch penalty ``t / (t + 1024)`` for ``t`` tokens per micro-batch (per-step overhead
dominates small micro-batches). Example::

    result = fit(arch, Plan(micro_batch=8, grad_accum=1, cutoff=4096), budget_gib=23.6)
    result.overlay  # {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, ...}
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from .arch import Arch
from .memory import MemoryEstimate, estimate_memory
from .plan import Plan, overlay
from .time import efficiency, flops_per_token

SAFETY_MARGIN = 0.10  # share of the card kept free: fragmentation spikes, eval batches, other processes
_WHY = {
    "per_device_train_batch_size": "activations grow with the micro-batch; gradient_accumulation_steps keeps "
                                   "the global batch",
    "gradient_accumulation_steps": "keeps per_device x accumulation x devices equal to the original global batch",
    "disable_gradient_checkpointing": "checkpointing stores one hidden state per layer instead of all "
                                      "activations (about 30% slower); off when memory allows, as it is faster",
    "enable_liger_kernel": "Liger's fused SwiGLU/RMSNorm and fused linear cross-entropy store less and run faster "
                           "(needs pip install 'tuneforge[liger]')",
    "cutoff_len": "99% of the rows are shorter, so fewer tokens per row are reserved",
    "quantization_bit": "QLoRA: 4-bit base weights, the last resort (slower, slightly less accurate)",
    "deepspeed": "ZeRO shards optimizer states (stage 1), gradients (2) and weights (3) over the GPUs; offload "
                 "moves optimizer states to CPU memory (slow)",
}


@dataclass(frozen=True)
class FitResult:
    plan: Plan
    memory: MemoryEstimate
    overlay: dict[str, object]
    reasons: dict[str, str]
    speed: float


def speed(arch: Arch, plan: Plan) -> float:
    """Relative tokens/s of ``plan`` (same units across plans of one model)."""
    mfu, _ = efficiency(arch, plan)
    t = plan.tokens_per_micro_batch()
    return mfu / flops_per_token(arch, plan) * t / (t + 1024)


def fits(mem: MemoryEstimate, budget_gib: float, margin: float = SAFETY_MARGIN) -> bool:
    """Whether reserved memory plus the CUDA context stays below ``budget_gib`` minus the margin."""
    return mem.device_total_gib <= budget_gib * (1 - margin)


def _micro_batches(plan: Plan) -> list[tuple[int, int]]:
    """(micro-batch, accumulation) pairs with the same product as the plan's."""
    total = plan.micro_batch * plan.grad_accum
    return [(mb, total // mb) for mb in range(1, total + 1) if total % mb == 0]


def _cutoffs(plan: Plan) -> list[int]:
    if plan.lengths is None or plan.packing:
        return [plan.cutoff]
    p99 = int(math.ceil(plan.lengths.p99 / 128) * 128)
    return sorted({plan.cutoff, min(plan.cutoff, max(128, p99))})


def _zero(plan: Plan) -> list[tuple[int, bool]]:
    if plan.world == 1 or plan.fsdp:
        return [(plan.zero_stage, plan.offload_optimizer)]
    return [(0, False), (1, False), (2, False), (3, False), (2, True), (3, True)]


def candidates(plan: Plan, quantize: bool) -> list[Plan]:
    """Every combination the search considers (QLoRA only when ``quantize``)."""
    out = []
    for (mb, ga), gc, liger, cutoff, (zs, off) in itertools.product(
            _micro_batches(plan), ("off", "on"), sorted({plan.liger, True}), _cutoffs(plan), _zero(plan)):
        cand = replace(plan, micro_batch=mb, grad_accum=ga, gc=gc, liger=liger, cutoff=cutoff, zero_stage=zs,
                       offload_optimizer=off)
        if quantize:
            cand = replace(cand, quant_bit=4)
        out.append(cand)
    return out


def fit(arch: Arch, plan: Plan, budget_gib: float, margin: float = SAFETY_MARGIN) -> FitResult | None:
    """The fastest candidate predicted to fit, or None when even QLoRA at micro-batch 1 does not."""
    rounds = [False, True] if plan.method == "lora" and not plan.quant_bit else [False]
    for quantize in rounds:
        best = None
        for cand in candidates(plan, quantize):
            mem = estimate_memory(arch, cand)
            if not fits(mem, budget_gib, margin):
                continue
            score = speed(arch, cand)
            if best is None or score > best.speed:
                changes = overlay(plan, cand)
                if cand.zero_stage != plan.zero_stage or cand.offload_optimizer != plan.offload_optimizer:
                    changes["deepspeed"] = deepspeed_file_name(cand) or None
                best = FitResult(cand, mem, changes, {k: _WHY[k] for k in changes if k in _WHY}, score)
        if best is not None:
            return best
    return None


def deepspeed_file_name(plan: Plan) -> str:
    return f"ds_z{plan.zero_stage}{'_offload' if plan.offload_optimizer else ''}_config.json" if plan.zero_stage \
        else ""


def deepspeed_config(plan: Plan) -> dict:
    """A DeepSpeed config of the plan's ZeRO stage and offload, with transformers' ``auto`` values."""
    zero: dict[str, object] = {"stage": plan.zero_stage, "overlap_comm": False, "contiguous_gradients": True,
                               "reduce_bucket_size": "auto"}
    if plan.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if plan.zero_stage == 3:
        zero |= {"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                 "stage3_gather_16bit_weights_on_model_save": True}
    return {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "zero_allow_untested_optimizer": True,
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "zero_optimization": zero}

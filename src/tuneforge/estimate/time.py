"""Tokens per step, steps, FLOPs per token and a tokens/s and wall-time range.

FLOPs follow ``bench/bench_models.py`` (model FLOPs; checkpointing's recomputation not counted):
``F_lora = 4·N_mm + 12·L·H·s̄ + 6·N_lora``, ``F_full = 6·N_mm + 12·L·H·s̄``, dpo adds the reference forward
``2·N_mm + 4·L·H·s̄``. Throughput = MFU × the card's dense bf16 peak / F, with the MFU of the nearest measured
run in ``hardware.yaml`` (card and date on each row), given as a range because it is not a measurement of this
config. Example: Qwen2.5-7B LoRA r16 at 2,048 tokens is ~31 GFLOP/token; at H100's measured 23.8% MFU that is
~7.6K tokens/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..catalog import stage as stage_spec
from .arch import Arch
from .hardware import Hardware, table
from .params import trainable_params
from .plan import Plan

DEFAULT_TFLOPS = 989.0  # when the card is unknown: an H100's peak, with a wider range
# Speed factors of setups no benchmark row measured (assumptions, stated in docs/estimate.md).
_SLOWDOWN = {"qlora": 0.7, "zero3": 0.85, "offload_optimizer": 0.5, "offload_param": 0.3}


@dataclass(frozen=True)
class TimeEstimate:
    flops_per_token: float
    tokens_per_step: float
    steps: int | None
    tokens_per_s: tuple[float, float]
    wall_s: tuple[float, float] | None
    basis: str


def s_bar(plan: Plan) -> float:
    """Attention's effective sequence length E[s²]/E[s]: cutoff_len for full rows, smaller with known lengths."""
    if plan.lengths is None or (plan.packing and not plan.padding_free):
        return float(plan.cutoff)
    return min(float(plan.cutoff), (plan.lengths.mean + plan.lengths.p99) / 2)


def flops_per_token(arch: Arch, plan: Plan) -> float:
    """Model FLOPs per trained token of one training step (see the module docstring)."""
    attn = 12 * arch.layers * arch.hidden * s_bar(plan)
    n_mm = arch.n_matmul
    if plan.method == "lora":
        flops = 4 * n_mm + attn + 6 * trainable_params(arch, plan)
    elif plan.method == "freeze":
        flops = 4 * n_mm + attn + 2 * trainable_params(arch, plan)
    else:
        flops = 6 * n_mm + attn
    if stage_spec(plan.stage).reference != "never":
        flops += 2 * n_mm + attn / 3
    return flops


def _kernels(plan: Plan) -> str:
    return "compile" if plan.compile else "liger" if plan.liger else "default"


def efficiency(arch: Arch, plan: Plan) -> tuple[float, str]:
    """The measured MFU nearest to this plan (method, then model size, same kernels) and where it came from."""
    method = "lora" if plan.method == "lora" else "full"
    rows = [r for r in table()["efficiency"] if r["method"] == method and r["kernels"] == _kernels(plan)]
    size = arch.n_params / 1e9
    row = min(rows, key=lambda r: abs(math.log(r["params_b"] / size)))
    mfu = row["mfu"] * _factor(plan)
    return mfu, f"MFU {mfu:.1%} from {row['run']} ({row['params_b']}B {method}, {row['card']}, {row['date']})"


def _factor(plan: Plan) -> float:
    f = _SLOWDOWN["qlora"] if plan.quant_bit else 1.0
    if plan.zero_stage == 3 or plan.fsdp.startswith("full_shard"):
        f *= _SLOWDOWN["zero3"]
    if plan.offload_optimizer:
        f *= _SLOWDOWN["offload_optimizer"]
    if plan.offload_param:
        f *= _SLOWDOWN["offload_param"]
    if plan.gc == "off":
        f *= 1.25  # no recomputed forward: about a quarter less work per step
    return f


def num_steps(plan: Plan, max_steps: int, epochs: float, rows: int | None) -> int | None:
    """Optimizer steps: max_steps when set, else epochs over ``rows`` (None when the row count is unknown)."""
    if max_steps > 0:
        return max_steps
    if rows is None:
        return None
    per_step = plan.micro_batch * plan.grad_accum * plan.world
    return max(1, math.ceil(epochs * math.ceil(rows / per_step)))


def estimate_time(arch: Arch, plan: Plan, hw: Hardware | None, steps: int | None) -> TimeEstimate:
    """Tokens/s and wall time as a (low, high) range for ``plan`` on ``hw`` (H100 peak if unknown)."""
    flops = flops_per_token(arch, plan)
    mfu, basis = efficiency(arch, plan)
    known = hw is not None and hw.bf16_tflops
    peak = (hw.bf16_tflops if known else DEFAULT_TFLOPS) * 1e12
    world = plan.world
    mid = mfu * peak * world / flops
    low, high = (0.75, 1.15) if known else (0.5, 1.2)
    tok_s = (mid * low, mid * high)
    tokens_step = plan.real_tokens_per_micro_batch() * plan.grad_accum * world
    wall = (steps * tokens_step / tok_s[1], steps * tokens_step / tok_s[0]) if steps else None
    if not known:
        basis += "; card unknown: H100 peak assumed"
    return TimeEstimate(flops, tokens_step, steps, tok_s, wall, basis)

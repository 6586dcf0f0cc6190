"""Parameter counts and bytes: frozen weights, trainable weights, gradients and optimizer states.

Exact for what the formulas cover: tests count the same numbers on tiny models built by transformers and PEFT.
Example (Qwen2.5-0.5B, LoRA r8 on every projection)::

    trainable_params(arch, Plan(lora_rank=8))  # 4_399_104 (24 layers x 8 x (in + out) summed over 7 modules)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog import stage as stage_spec
from .arch import Arch
from .plan import Plan

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
# freeze_trainable_modules names (LLaMA-Factory accepts sub-module names) → projections they hold.
_GROUPS = {"self_attn": _ATTN, "attn": _ATTN, "attention": _ATTN, "mlp": _MLP}


@dataclass(frozen=True)
class ParamBytes:
    """Bytes on one device before sharding; ``trainable`` counts parameters (for FLOPs and reports)."""

    frozen: float
    trainable_weights: float
    gradients: float
    optimizer: float
    trainable: int
    head_trainable: bool


def lora_modules(arch: Arch, targets: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """The projections of one layer that LoRA wraps: ``all`` means every one (never the output head)."""
    linears = arch.linears()
    if any(t == "all" for t in targets):
        return linears
    wanted = {t.strip() for t in targets}
    return {name: shape for name, shape in linears.items() if name in wanted}


def _special(arch: Arch, name: str) -> int:
    """Parameters of a named module outside the layers (additional_target / freeze_extra_modules)."""
    if name in ("embed_tokens", "wte", "lm_head") or name.endswith(("embed_tokens", "lm_head")):
        return arch.embed_params
    if name in ("norm", "model.norm", "ln_f"):
        return arch.hidden
    return 0


def _lora_trainable(arch: Arch, plan: Plan) -> int:
    mods = lora_modules(arch, plan.lora_target)
    per_layer = sum(plan.lora_rank * (a + b) + (b if plan.use_dora else 0) for a, b in mods.values())
    return arch.layers * per_layer + sum(_special(arch, t) for t in plan.additional_target)


def _layer_part(arch: Arch, modules: tuple[str, ...]) -> int:
    """Parameters of the named sub-modules of one layer (``all``: the whole layer)."""
    if "all" in modules:
        return arch.layer_params
    linears = arch.linears()
    names = {p for m in modules for p in _GROUPS.get(m, (m,))}
    return sum(a * b for n, (a, b) in linears.items() if n in names)


def _freeze_trainable(arch: Arch, plan: Plan) -> int:
    layers = min(abs(plan.freeze_layers), arch.layers)
    return layers * _layer_part(arch, plan.freeze_modules) + sum(_special(arch, m) for m in plan.freeze_extra)


def trainable_params(arch: Arch, plan: Plan) -> int:
    """Parameters the optimizer updates (rm and ppo add a value head of hidden + 1)."""
    if plan.method == "full":
        n = arch.n_params
    elif plan.method == "freeze":
        n = _freeze_trainable(arch, plan)
    else:
        n = _lora_trainable(arch, plan)
    return n + (arch.hidden + 1 if stage_spec(plan.stage).value_head else 0)


def quantized_params(arch: Arch) -> int:
    """Parameters bitsandbytes quantizes: the projections of every layer (not embeddings, head, norms, biases)."""
    per_layer = sum(a * b for a, b in arch.linears().values())
    if arch.experts:
        per_layer += arch.experts * 3 * arch.hidden * arch.expert_intermediate
    return arch.layers * per_layer


def quant_bytes_per_param(bits: int, double_quant: bool) -> float:
    """bitsandbytes storage: nf4 0.5 B + an fp32 absmax per 64 (double quant: int8 absmax + fp32 per 256)."""
    if bits == 8:
        return 1.0 + 4 / 4096  # int8 weights and an fp32 scale per row (rows of ~4K)
    return 0.5 + (1 / 64 + 4 / (64 * 256) if double_quant else 4 / 64)


def frozen_weight_bytes(arch: Arch, plan: Plan, bits: int | None) -> float:
    """Bytes of the base model's weights that do not train (QLoRA: quantized projections, the rest in fp32)."""
    if bits:
        q = quantized_params(arch)
        return q * quant_bytes_per_param(bits, plan.double_quant) + (arch.n_params - q) * 4
    if plan.method == "full":
        return 0.0
    replaced = _freeze_trainable(arch, plan) if plan.method == "freeze" else 0  # trained copies replace these
    return (arch.n_params - replaced) * plan.weight_bytes


def optimizer_bytes_per_param(plan: Plan) -> float:
    """Optimizer state per trainable parameter: AdamW two states in the weight dtype, 8-bit ones 2 B, etc.

    DeepSpeed ZeRO keeps an fp32 master copy plus two fp32 states (12 B) whatever the model dtype.
    """
    name = plan.optim.lower()
    if plan.zero_stage:
        return 12.0
    if "8bit" in name:
        return 2.0
    if "adafactor" in name:
        return 0.1  # factored second moment: rows + columns, no first moment by default
    if name.startswith("sgd"):
        return 0.0
    if "lion" in name:
        return plan.trainable_bytes
    return 2.0 * plan.trainable_bytes


def param_bytes(arch: Arch, plan: Plan) -> ParamBytes:
    """Weights, gradients and optimizer state of the policy model on one device, before any sharding."""
    n = trainable_params(arch, plan)
    grad_bytes = 2 if plan.zero_stage else plan.trainable_bytes
    head = plan.method == "full" or "lm_head" in plan.additional_target + plan.freeze_extra or (
        arch.tied and ("embed_tokens" in plan.additional_target + plan.freeze_extra))
    return ParamBytes(
        frozen=frozen_weight_bytes(arch, plan, plan.quant_bit),
        trainable_weights=n * plan.trainable_bytes,
        gradients=n * grad_bytes,
        optimizer=n * optimizer_bytes_per_param(plan),
        trainable=n,
        head_trainable=head,
    )

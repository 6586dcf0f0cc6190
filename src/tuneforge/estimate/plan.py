"""The memory-relevant knobs of a resolved config, as one flat value the formulas and ``--fit`` work on.

``Plan.from_config(cfg)`` reads typed fields only; ``--fit`` changes a Plan with ``dataclasses.replace`` and
``overlay()`` turns the changes back into config keys. Example::

    plan = Plan(method="lora", micro_batch=8, cutoff=2048)
    plan.tokens_per_micro_batch()  # 16384 (the worst case: every row cutoff_len tokens)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..catalog import stage as stage_spec

PAIRED = ("dpo", "rm")  # a row is a chosen and a rejected sequence


@dataclass(frozen=True)
class Lengths:
    """Token lengths of the processed training rows (from ``tuneforge lengths --json``), capped at cutoff_len."""

    mean: float
    p99: float

    def batch_tokens(self, rows: int, cutoff: int) -> float:
        """Real tokens of a large micro-batch of ``rows`` rows: mean per row plus a p99 tail of one row."""
        mean = min(self.mean, cutoff)
        return min(rows * cutoff, rows * mean + (min(self.p99, cutoff) - mean))


@dataclass(frozen=True)
class Plan:
    """Everything the memory and time formulas read. Defaults are LLaMA-Factory's."""

    stage: str = "sft"
    method: str = "lora"  # lora | freeze | full
    quant_bit: int | None = None
    double_quant: bool = True
    pure_bf16: bool = False
    compute_bytes: int = 2  # bf16/fp16 → 2, fp32 → 4
    lora_rank: int = 8
    lora_target: tuple[str, ...] = ("all",)
    additional_target: tuple[str, ...] = ()
    use_dora: bool = False
    lora_dropout: bool = False
    freeze_layers: int = 2
    freeze_modules: tuple[str, ...] = ("all",)
    freeze_extra: tuple[str, ...] = ()
    micro_batch: int = 1
    grad_accum: int = 1
    cutoff: int = 2048
    packing: bool = False
    padding_free: bool = False
    gc: str = "on"  # on | off
    attn: str = "sdpa"  # sdpa | eager | flash
    liger: bool = False
    compile: bool = False
    optim: str = "adamw_torch_fused"
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False
    fsdp: str = ""  # "" | full_shard | shard_grad_op (with "offload" when FSDP offloads)
    world: int = 1
    separate_ref: bool = False
    ref_quant_bit: int | None = None
    separate_reward: bool = False
    upcast_layernorm: bool = False
    max_new_tokens: int = 512
    lengths: Lengths | None = None

    @classmethod
    def from_config(cls, cfg: Any, *, world: int = 1, zero: dict | None = None,
                    lengths: Lengths | None = None) -> Plan:
        """The plan of a resolved :class:`~tuneforge.config.schema.Config` on ``world`` data-parallel devices."""
        m, d, ft, tr = cfg.model, cfg.data, cfg.finetuning, cfg.training
        zero_opt = (zero or {}).get("zero_optimization") or {}
        stage_of_ref = stage_spec(ft.stage).reference != "never"
        return cls(
            stage=ft.stage, method=ft.finetuning_type, quant_bit=m.quantization_bit,
            double_quant=m.double_quantization, pure_bf16=ft.pure_bf16,
            compute_bytes=2 if (tr.bf16 or tr.fp16 or ft.pure_bf16) else 4,
            lora_rank=ft.lora_rank, lora_target=tuple(ft.lora_target or ("all",)),
            additional_target=tuple(ft.additional_target or ()), use_dora=ft.use_dora,
            lora_dropout=ft.lora_dropout > 0, freeze_layers=ft.freeze_trainable_layers,
            freeze_modules=tuple(ft.freeze_trainable_modules or ("all",)),
            freeze_extra=tuple(ft.freeze_extra_modules or ()),
            micro_batch=tr.per_device_train_batch_size, grad_accum=tr.gradient_accumulation_steps,
            cutoff=d.cutoff_len, packing=bool(d.packing), padding_free=_padding_free(cfg),
            gc="off" if m.disable_gradient_checkpointing else "on", attn=_attn(m.flash_attn),
            liger=m.enable_liger_kernel, compile=bool(tr.torch_compile),
            optim=str(getattr(tr.optim, "value", tr.optim)), zero_stage=int(zero_opt.get("stage", 0) or 0),
            offload_optimizer=_offloaded(zero_opt, "offload_optimizer"),
            offload_param=_offloaded(zero_opt, "offload_param"), fsdp=_fsdp(tr.fsdp), world=max(1, world),
            separate_ref=stage_of_ref and (ft.finetuning_type != "lora" or ft.ref_model is not None),
            ref_quant_bit=ft.ref_model_quantization_bit,
            separate_reward="reward_model" in stage_spec(ft.stage).keys and ft.reward_model_type == "full",
            upcast_layernorm=m.upcast_layernorm, max_new_tokens=cfg.generating.max_new_tokens, lengths=lengths,
        )

    @property
    def sequences_per_row(self) -> int:
        return 2 if self.stage in PAIRED else 1

    def row_tokens(self) -> float:
        """Tokens one sequence occupies in a batch: cutoff_len unless padding-free with known lengths."""
        if self.lengths is not None and not self.packing:
            return min(self.cutoff, self.lengths.p99)
        return float(self.cutoff)

    def tokens_per_micro_batch(self) -> float:
        """Tokens the model processes in one micro-batch (padding included), the worst case without lengths."""
        rows = self.micro_batch * self.sequences_per_row
        if self.packing or self.lengths is None:
            return float(rows * self.cutoff)
        if self.padding_free:
            return self.lengths.batch_tokens(rows, self.cutoff)
        return float(rows * self.row_tokens())

    def real_tokens_per_micro_batch(self) -> float:
        """Non-padding tokens per micro-batch: the mean length when known, else cutoff_len per row."""
        rows = self.micro_batch * self.sequences_per_row
        if self.packing or self.lengths is None:
            return float(rows * self.cutoff)
        return rows * min(self.lengths.mean, self.cutoff)

    @property
    def trainable_bytes(self) -> int:
        """Bytes per trainable parameter: fp32 master weights unless pure_bf16 (DeepSpeed keeps bf16 + a master)."""
        if self.pure_bf16 or self.zero_stage:
            return 2
        return 4 if self.compute_bytes == 2 else self.compute_bytes

    @property
    def weight_bytes(self) -> int:
        """Bytes per frozen, unquantized parameter: the compute dtype the model is loaded in."""
        return self.compute_bytes

    @property
    def stream_bytes(self) -> int:
        """Dtype of the residual stream: fp32 when the embedding weight is fp32 (full/AMP, QLoRA's upcast)."""
        if self.compute_bytes == 4 or self.quant_bit:
            return 4
        embed_trained = self.method == "full" or ("embed_tokens" in self.freeze_extra and self.method == "freeze")
        return 4 if embed_trained and self.trainable_bytes == 4 else self.compute_bytes


def _padding_free(cfg: Any) -> bool:
    """As ``model.varlen.flattens_batches`` decides it on a CUDA machine (the estimate is for one)."""
    d, m = cfg.data, cfg.model
    if not stage_spec(cfg.finetuning.stage).packable:
        return False
    if d.neat_packing:
        return True
    if d.packing or m.flash_attn == "disabled":
        return False
    if d.padding_free is not None:
        return bool(d.padding_free)
    return not m.trust_remote_code


def _attn(flash_attn: str) -> str:
    return {"disabled": "eager", "fa2": "flash", "fa3": "flash"}.get(flash_attn, "sdpa")


def _offloaded(zero_opt: dict, key: str) -> bool:
    device = (zero_opt.get(key) or {}).get("device", "none")
    return str(device).lower() in ("cpu", "nvme")


def _fsdp(value: Any) -> str:
    text = " ".join(value) if isinstance(value, list | tuple) else str(value or "")
    text = text.lower()
    kind = "full_shard" if "full_shard" in text else "shard_grad_op" if "shard_grad_op" in text else ""
    return f"{kind} offload" if kind and "offload" in text else kind


# Plan field → config key, for the overlay --fit writes. Fields not listed are never changed by --fit.
CONFIG_KEYS = {
    "micro_batch": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps",
    "cutoff": "cutoff_len", "liger": "enable_liger_kernel", "quant_bit": "quantization_bit",
}


def overlay(before: Plan, after: Plan) -> dict[str, Any]:
    """Config keys (and values) that turn ``before`` into ``after``."""
    out: dict[str, Any] = {}
    for f in fields(Plan):
        old, new = getattr(before, f.name), getattr(after, f.name)
        if old == new:
            continue
        if f.name == "gc":
            out["disable_gradient_checkpointing"] = new == "off"
        elif f.name in CONFIG_KEYS:
            out[CONFIG_KEYS[f.name]] = new
    return out

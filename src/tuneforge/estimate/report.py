"""Text and JSON views of an :class:`~tuneforge.estimate.Estimate` (and of a ``--fit`` result).

The JSON object always has ``peak_allocated_gib``, ``peak_reserved_gib`` (per device, GiB) and ``components``
(name → GiB, summing to the allocated peak). Example line of ``check``::

    memory estimate: 24.4 GiB allocated, 25.2 GiB reserved + 0.5 GiB CUDA context per device vs 23.6 GiB ...
"""

from __future__ import annotations

from typing import Any

from . import Estimate
from .fit import FitResult

_WHAT = {
    "weights": "frozen base weights",
    "trainable_weights": "trained weights (adapters or the model itself)",
    "gradients": "gradients of the trained weights",
    "optimizer": "optimizer states",
    "reference_model": "separate reference model (dpo/kto/ppo)",
    "reward_model": "separate reward model (ppo)",
    "buffers": "DDP gradient buckets / ZeRO and FSDP communication buffers",
    "activations": "activations kept for backward (checkpoints, one layer's recompute and backward)",
    "logits": "loss over the vocabulary (chunked or fused), or ppo's KV cache",
}
_PHASES = {"forward_end": "the end of the forward pass",
           "loss": "the loss at the start of backward", "last_layer": "the backward of the last layer",
           "first_layer": "the backward of the first layer", "reference": "the reference model's forward",
           "rollout": "ppo's generation"}


def _round(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def to_json(est: Estimate, fit: FitResult | None = None, budget_gib: float | None = None) -> dict[str, Any]:
    mem, t, hw = est.memory, est.time, est.hardware
    out: dict[str, Any] = {
        "model": est.arch.source, "total_params": est.arch.n_params, "trainable_params": mem.trainable_params,
        "peak_allocated_gib": _round(mem.peak_allocated_gib), "peak_reserved_gib": _round(mem.peak_reserved_gib),
        "cuda_context_gib": _round(mem.cuda_context / 2**30), "device_total_gib": _round(mem.device_total_gib),
        "components": {k: _round(v) for k, v in mem.components_gib.items()}, "peak_phase": mem.phase,
        "tokens_per_micro_batch": mem.tokens_per_micro_batch, "world_size": est.plan.world,
        "hardware": None if hw is None else {"name": hw.name, "memory_gib": hw.memory_gib, "gpus": hw.gpus,
                                             "source": hw.source},
        "fits": est.fits, "notes": list(est.notes),
        "time": {"flops_per_token": t.flops_per_token, "tokens_per_step": t.tokens_per_step, "steps": t.steps,
                 "tokens_per_s": [round(x) for x in t.tokens_per_s],
                 "wall_s": None if t.wall_s is None else [round(x) for x in t.wall_s], "basis": t.basis},
    }
    if budget_gib is not None:
        out["fit"] = None if fit is None else {
            "overlay": fit.overlay, "reasons": fit.reasons,
            "peak_allocated_gib": _round(fit.memory.peak_allocated_gib),
            "peak_reserved_gib": _round(fit.memory.peak_reserved_gib),
            "device_total_gib": _round(fit.memory.device_total_gib), "budget_gib": _round(budget_gib)}
    return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _setup_line(est: Estimate) -> str:
    p = est.plan
    method = f"lora r{p.lora_rank}" if p.method == "lora" else p.method
    if p.quant_bit:
        method = f"q{method} ({p.quant_bit}-bit)"
    tokens = "padding-free" if p.padding_free else "packed" if p.packing else "padded"
    worst = "" if p.lengths else ", worst case: every row cutoff_len tokens"
    extra = [f"ZeRO-{p.zero_stage}"] if p.zero_stage else []
    extra += ["Liger"] if p.liger else []
    extra += ["compiled"] if p.compile else []
    return (f"  {p.stage}, {method}, {est.memory.trainable_params / 1e6:,.1f}M trainable, micro-batch {p.micro_batch}"
            f" x {p.cutoff} ({tokens}{worst}), accumulation {p.grad_accum}, checkpointing {p.gc}, {p.attn}"
            f"{', ' + ', '.join(extra) if extra else ''}, {p.world} GPU{'s' if p.world > 1 else ''}")


def verdict(est: Estimate) -> str:
    hw = est.hardware
    if hw is None:
        return "no GPU given or detected (use --gpu NAME or --gpu-memory 24GiB)"
    word = "fits" if est.fits else "DOES NOT FIT (try --fit)"
    return f"vs {hw.name} {hw.memory_gib:.1f} GiB: {word}"


def one_line(est: Estimate) -> str:
    """The summary ``tuneforge check`` prints."""
    m = est.memory
    where = verdict(est) if est.hardware is not None else "no GPU detected here"
    return (f"memory estimate: {m.peak_allocated_gib:.1f} GiB allocated, {m.peak_reserved_gib:.1f} GiB reserved "
            f"+ {m.cuda_context / 2**30:.1f} GiB CUDA context per device; {where}")


def render_text(est: Estimate) -> str:
    a, m, t = est.arch, est.memory, est.time
    lines = [f"{a.source}: {a.model_type}, {a.n_params / 1e9:.2f}B parameters, {a.layers} layers, "
             f"hidden {a.hidden}, vocab {a.vocab}", _setup_line(est), "",
             f"Peak GPU memory per device (at {_PHASES[m.phase]}):"]
    lines += [f"  {name:<18} {gib:7.2f} GiB  {_WHAT[name]}" for name, gib in m.components_gib.items()]
    lines += [f"  {'allocated':<18} {m.peak_allocated_gib:7.2f} GiB  torch.cuda.max_memory_allocated",
              f"  {'reserved':<18} {m.peak_reserved_gib:7.2f} GiB  torch.cuda.max_memory_reserved",
              f"  {'device total':<18} {m.device_total_gib:7.2f} GiB  reserved + CUDA context; {verdict(est)}", "",
              "Time:", f"  {t.tokens_per_step:,.0f} tokens per optimizer step, {t.flops_per_token / 1e9:.1f} GFLOP "
              f"per token; {t.tokens_per_s[0]:,.0f}-{t.tokens_per_s[1]:,.0f} tokens/s"]
    if t.wall_s:
        lines.append(f"  {t.steps:,} steps: {_duration(t.wall_s[0])} to {_duration(t.wall_s[1])}")
    else:
        lines.append("  steps unknown: set max_steps, or pass --lengths FILE from `tuneforge lengths CONFIG --json`")
    lines.append(f"  ({t.basis})")
    lines += [f"note: {note}" for note in est.notes]
    return "\n".join(lines)


def render_fit(fit: FitResult | None, budget_gib: float) -> str:
    if fit is None:
        return (f"--fit: nothing fits {budget_gib:.1f} GiB per device, not even 4-bit QLoRA at micro-batch 1 with "
                "checkpointing; use more or larger GPUs, a smaller model or a shorter cutoff_len")
    head = (f"--fit: predicted {fit.memory.device_total_gib:.1f} GiB per device (reserved + context) of "
            f"{budget_gib:.1f} GiB, keeping a 10% margin")
    if not fit.overlay:
        return head + "; the config already is the fastest that fits: nothing to change"
    lines = [head, "# YAML overlay (apply with `tuneforge train cfg.yaml overlay keys...` or merge into the file)"]
    for key, value in fit.overlay.items():
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
        why = fit.reasons.get(key, "")
        if key == "deepspeed" and value:
            why += f"; --write FILE also writes {value} next to FILE"
        lines.append(f"{key}: {shown}  # {why}".rstrip(" #"))
    return "\n".join(lines)

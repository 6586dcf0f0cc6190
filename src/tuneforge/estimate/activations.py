"""Activation memory of a transformers Llama/Qwen2-style decoder layer, counted tensor by tensor.

Notation: N tokens in the micro-batch, H hidden, Q = heads x head_dim, K = kv_heads x head_dim, I intermediate,
c bytes of the compute dtype (2 for bf16), s bytes of the residual stream (4 when the embedding weight is fp32).
What autograd keeps for backward in one layer (no checkpointing), HF kernels under SDPA/flash:

* each RMSNorm: its fp32 input copy (4NH; with an fp32 stream, the stream itself), the normalised value when its
  weight trains (s or c bytes), and its output in c bytes, which the projections keep as their input (cNH);
* attention: RoPE'd q (cNQ), k and v (2cNK, or 2cNQ when SDPA needs repeat_kv for a padding mask), the kernel's
  output, which o_proj keeps as its input (cNQ: the kernels write it token-major, so the reshape is a view), and
  the fp32 log-sum-exp (4N x heads). A padding mask adds its additive bias (c x B x T^2); eager attention adds
  the fp32 softmax and its cast: (4 + c) x B x heads x T^2;
* SwiGLU MLP: gate, SiLU(gate), up and their product, each cNI (Liger's fused SwiGLU recomputes SiLU: 3cNI);
* LoRA: each adapter keeps its A output (cNr); dropout > 0 adds its output and mask per module (c + 1 bytes
  x N x in), DoRA two [N, out] tensors per module.

With checkpointing a layer keeps only its input (sNH) and recomputes the rest in backward, one layer at a time.
The flash/SDPA kernels never store the T x T score matrix: activation memory is linear in cutoff_len, not
quadratic (only eager attention and the padding-mask bias of padded SDPA batches have a T^2 term).
"""

from __future__ import annotations

from ..catalog import stage as stage_spec
from .arch import Arch
from .params import lora_modules
from .plan import Plan


def _norm_saved(plan: Plan, n: float, h: int, trainable: bool) -> float:
    c, s = plan.compute_bytes, plan.stream_bytes
    if plan.liger and not plan.compile:
        return s * n * h + c * n * h + 4 * n  # Liger RMSNorm keeps its input and 1/rms; output kept by the projections
    return 4 * n * h + (s if s == 4 else c) * n * h * trainable + c * n * h + 4 * n  # + fp32 1/rms per token


def _attention_saved(arch: Arch, plan: Plan, n: float) -> float:
    c, q, k = plan.compute_bytes, arch.q_dim, arch.kv_dim
    masked_sdpa = plan.attn == "sdpa" and not plan.padding_free
    kv = 2 * c * n * (q if masked_sdpa else k)
    total = c * n * q + kv + c * n * q + 4 * n * arch.heads
    if masked_sdpa:  # the padding mask becomes an additive [B, 1, T, T] bias in the compute dtype, kept per layer
        total += c * n * plan.row_tokens()
    if arch.model_type.startswith("qwen3"):
        total += 4 * n * (q + k)  # q_norm / k_norm keep their fp32 inputs
    if plan.attn == "eager":
        t = plan.row_tokens()
        total += (4 + c) * (n / t) * arch.heads * t * t
    return total


def _mlp_saved(arch: Arch, plan: Plan, n: float) -> float:
    c = plan.compute_bytes
    per = 3 if plan.liger and not plan.compile else 4
    if arch.experts:
        return arch.experts_per_token * per * c * n * arch.expert_intermediate + 4 * n * arch.experts
    return per * c * n * arch.intermediate


def _lora_saved(arch: Arch, plan: Plan, n: float) -> float:
    if plan.method != "lora":
        return 0.0
    c = plan.compute_bytes
    total = 0.0
    for fan_in, fan_out in lora_modules(arch, plan.lora_target).values():
        total += c * n * plan.lora_rank
        if plan.lora_dropout:
            total += (c + 1) * n * fan_in
        if plan.use_dora:
            total += 2 * c * n * fan_out
    if plan.stream_bytes == 4:  # fp32 norm outputs reach each adapter apart: one bf16 copy per module
        total += c * n * sum(fan_in for fan_in, _ in lora_modules(arch, plan.lora_target).values())
    return total


def layer_saved(arch: Arch, plan: Plan, n: float) -> float:
    """Bytes one decoder layer keeps for backward on ``n`` tokens, without checkpointing."""
    norm_trains = plan.method in ("full", "freeze")
    return (2 * _norm_saved(plan, n, arch.hidden, norm_trains) + _attention_saved(arch, plan, n)
            + _mlp_saved(arch, plan, n) + _lora_saved(arch, plan, n))


def layer_backward_extra(arch: Arch, plan: Plan, n: float) -> float:
    """Working memory of one layer's backward on top of what it saved.

    The MLP's backward holds the incoming [N, I] gradient, the gradients of SiLU(gate) and of up, and SiLU's
    input gradient at once (4cNI; an adapter on the MLP adds its own input gradient); around it the gradient of
    the residual stream, of the norm output and the fp32 norm gradient ((3c + 4)NH).
    """
    c, h = plan.compute_bytes, arch.hidden
    inter = arch.expert_intermediate * max(arch.experts_per_token, 1) if arch.experts else arch.intermediate
    mlp_adapter = plan.method == "lora" and any(
        name in lora_modules(arch, plan.lora_target) for name in ("gate_proj", "up_proj", "down_proj"))
    return (4 + mlp_adapter) * c * n * inter + (3 * c + 4) * n * h


def checkpoint_bytes(arch: Arch, plan: Plan, n: float) -> float:
    """What a checkpointed layer keeps: its input hidden state (sNH)."""
    return plan.stream_bytes * n * arch.hidden


def final_saved(arch: Arch, plan: Plan, n: float) -> float:
    """The final norm's saved tensors and the hidden state handed to the loss."""
    return _norm_saved(plan, n, arch.hidden, plan.method == "full")


def _next_pow2(x: float) -> int:
    return 1 << max(0, int(x - 1).bit_length())


def loss_bytes(arch: Arch, plan: Plan, n: float) -> float:
    """Peak extra memory of the loss over the vocabulary.

    tuneforge never builds a batch's full logits: pt/sft/dpo/kto/ppo project 1,024 trained tokens at a time and
    recompute each chunk in backward, where its fp32 log-softmax output, the loss gradient and the logits
    gradient coexist (3 x 4 bytes x chunk x V). Liger's fused linear cross-entropy (pt/sft) uses chunks of
    ~N / (V / H) rows in the compute dtype plus an fp32 copy, and keeps the input gradient (cNH). rm has no logits.
    """
    if stage_spec(plan.stage).value_head and not stage_spec(plan.stage).generates:  # scores only
        return 4.0 * n
    v, c = arch.vocab, plan.compute_bytes
    if plan.liger and stage_spec(plan.stage).packable:
        chunk = min(n, _next_pow2(-(-n // -(-v // arch.hidden))))
        return chunk * v * (c + 4) + c * n * arch.hidden
    chunk = min(1024.0, n)
    head_cast = c * v * arch.hidden if plan.quant_bit else 0  # QLoRA's fp32 head is cast for every chunk
    return 3 * 4 * chunk * v + head_cast

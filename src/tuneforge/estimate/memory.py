"""Peak GPU memory per device of one training step, by component, from an :class:`Arch` and a :class:`Plan`.

The step is followed phase by phase and the largest total is the peak (``torch.cuda.max_memory_allocated``):

* ``forward_end``: the loss's forward, while autocast still caches bf16 copies of fp32 trained weights;
* ``loss``: the start of backward — every layer's stored activations, the final norm and the loss chunk;
* ``last_layer`` / ``first_layer``: the backward of the last and of the first layer (recomputed when
  checkpointing), with the gradients that exist by then (all of them by the first layer);
* ``reference``: dpo/kto/ppo's reference forward without gradients; ``rollout``: ppo's generation KV cache.

Weights, gradients and optimizer states are divided over the world size as ZeRO/FSDP shard them. Reserved memory
adds the caching allocator's slack; the CUDA context (≈0.5 GiB, more with NCCL) is in neither and is reported
apart, because ``--fit`` must leave room for it. Example::

    est = estimate_memory(arch, Plan(micro_batch=8, cutoff=2048))
    est.peak_allocated_gib, est.components_gib["activations"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..catalog import stage as stage_spec
from . import activations as act
from .arch import Arch
from .params import ParamBytes, param_bytes, quant_bytes_per_param, quantized_params
from .plan import Plan

GIB = 2**30
CUDA_CONTEXT = 0.5 * GIB  # CUDA runtime, cuBLAS/cuDNN handles and kernels: outside the caching allocator
NCCL_BUFFERS = 0.35 * GIB  # NCCL communicators of a multi-GPU run
ALLOCATOR_SLACK = 0.03  # share of the peak the caching allocator keeps reserved beyond what is allocated


@dataclass
class MemoryEstimate:
    """Bytes per device at the peak; ``components`` sum to ``peak_allocated``."""

    components: dict[str, float]
    peak_allocated: float
    peak_reserved: float
    cuda_context: float
    phase: str
    trainable_params: int
    tokens_per_micro_batch: float
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def peak_allocated_gib(self) -> float:
        return self.peak_allocated / GIB

    @property
    def peak_reserved_gib(self) -> float:
        return self.peak_reserved / GIB

    @property
    def device_total_gib(self) -> float:
        """What the card must hold: reserved memory plus the CUDA context."""
        return (self.peak_reserved + self.cuda_context) / GIB

    @property
    def components_gib(self) -> dict[str, float]:
        return {k: v / GIB for k, v in self.components.items()}


@dataclass(frozen=True)
class _Static:
    weights: float
    trainable_weights: float
    gradients: float
    optimizer: float
    reference_model: float
    reward_model: float
    comm_buffers: float


def _shard(pb: ParamBytes, arch: Arch, plan: Plan) -> tuple[float, float, float, float, float]:
    """(frozen, trainable weights, gradients, optimizer, gathered/bucket buffers) on one device."""
    w = plan.world
    frozen, tw, grads, opt = pb.frozen, pb.trainable_weights, pb.gradients, pb.optimizer
    layer_bytes = arch.layer_params * plan.compute_bytes
    if plan.zero_stage:
        opt = 0.0 if plan.offload_optimizer else opt / w
        grads = grads / w if plan.zero_stage >= 2 else grads
        buffers = 2 * 2 * arch.hidden**2 * 2  # two reduce buckets of hidden² bf16 elements, double-buffered
        if plan.zero_stage == 3:
            frozen, tw = (0.0, 0.0) if plan.offload_param else (frozen / w, tw / w)
            buffers += 2 * layer_bytes  # the layer being computed and the prefetched next one, gathered
        return frozen, tw, grads, opt, buffers
    if plan.fsdp:
        full = plan.fsdp.startswith("full_shard")
        opt, grads = opt / w, grads / w
        if full:
            frozen, tw = frozen / w, tw / w
        if "offload" in plan.fsdp:
            opt, tw = 0.0, 0.0
        return frozen, tw, grads, opt, 2 * layer_bytes if full else 0.0
    buckets = grads if w > 1 else 0.0  # DDP's reducer keeps a bucket copy of every gradient
    return frozen, tw, grads, opt, buckets


def _other_models(arch: Arch, plan: Plan) -> tuple[float, float]:
    """Bytes of a separate reference model (dpo/kto/ppo with full/freeze) and of a separate reward model."""
    def model_bytes(bits: int | None) -> float:
        if bits:
            q = quantized_params(arch)
            return q * quant_bytes_per_param(bits, True) + (arch.n_params - q) * plan.compute_bytes
        return arch.n_params * plan.compute_bytes

    shard = plan.world if plan.zero_stage == 3 or plan.fsdp.startswith("full_shard") else 1
    ref = model_bytes(plan.ref_quant_bit) / shard if plan.separate_ref else 0.0
    reward = model_bytes(None) / shard if plan.separate_reward else 0.0
    return ref, reward


def static_memory(arch: Arch, plan: Plan) -> tuple[_Static, ParamBytes]:
    pb = param_bytes(arch, plan)
    frozen, tw, grads, opt, buffers = _shard(pb, arch, plan)
    ref, reward = _other_models(arch, plan)
    return _Static(frozen, tw, grads, opt, ref, reward, buffers), pb


def _first_grads(arch: Arch, plan: Plan, grads: float, pb: ParamBytes) -> float:
    """Gradients that exist when backward starts: all of them while accumulating, else the head's and one layer's."""
    if plan.grad_accum > 1:
        return grads
    head = arch.embed_params * (1 if arch.tied else 2) / max(arch.n_params, 1) if pb.head_trainable else 0.0
    return grads * (head + (1 - head) / arch.layers)


def _autocast_copies(plan: Plan, pb: ParamBytes) -> float:
    """Bytes of the bf16 copies autocast makes of fp32 trained weights (mixed precision without DeepSpeed/FSDP).

    autocast caches them for the whole forward; the projections keep them for backward, so without
    checkpointing they live until each layer's backward, and a recomputed layer makes its own again.
    """
    amp = plan.compute_bytes == 2 and plan.trainable_bytes == 4 and not plan.fsdp
    return plan.compute_bytes * pb.trainable if amp else 0.0


def _phases(arch: Arch, plan: Plan, st: _Static, pb: ParamBytes) -> dict[str, dict[str, float]]:
    """Every phase's components (bytes); the largest total is the peak."""
    n = plan.tokens_per_micro_batch()
    base = {"weights": st.weights, "trainable_weights": st.trainable_weights, "optimizer": st.optimizer,
            "reference_model": st.reference_model, "reward_model": st.reward_model, "buffers": st.comm_buffers}
    copies = _autocast_copies(plan, pb)
    saved = act.layer_saved(arch, plan, n) + copies / arch.layers
    work, ckpt = act.layer_backward_extra(arch, plan, n), act.checkpoint_bytes(arch, plan, n)
    stored = arch.layers * (saved if plan.gc == "off" else ckpt)
    recompute = 0.0 if plan.gc == "off" else saved
    g_first = _first_grads(arch, plan, st.gradients, pb)
    one_layer = saved if plan.gc == "off" else ckpt
    carried = st.gradients if plan.grad_accum > 1 else 0.0
    loss = act.loss_bytes(arch, plan, n)
    phases = {
        "forward_end": {**base, "gradients": carried, "logits": loss if plan.liger else loss * 10 / 12,
                        "activations": stored + act.final_saved(arch, plan, n) + copies * (plan.gc != "off")},
        "loss": {**base, "gradients": g_first, "activations": stored + act.final_saved(arch, plan, n),
                 "logits": loss},
        "last_layer": {**base, "gradients": g_first, "activations": stored + recompute + work, "logits": 0.0},
        "first_layer": {**base, "gradients": st.gradients,
                        "activations": min(stored, one_layer) + recompute + work, "logits": 0.0},
    }
    if stage_spec(plan.stage).reference != "never":
        chunk = min(1024.0, n)
        phases["reference"] = {**base, "gradients": carried, "activations": saved,
                               "logits": 2 * 4 * chunk * arch.vocab}
    if stage_spec(plan.stage).generates:  # rollouts: a KV cache
        kv = plan.micro_batch * (plan.cutoff + plan.max_new_tokens) * arch.layers * 2 * arch.kv_dim
        phases["rollout"] = {**base, "gradients": 0.0, "activations": kv * plan.compute_bytes,
                             "logits": 4 * plan.micro_batch * arch.vocab}
    return phases


def reserved_for(allocated: float, phase: dict[str, float]) -> float:
    """Reserved memory: the allocated peak plus the allocator's slack.

    With ``expandable_segments`` (tuneforge's default for training) blocks are mapped in 2 MiB pages, so the
    slack is small: a share of the peak plus half of the largest short-lived buffer (the loss chunk or a
    layer's backward work), which a freed block of another size often cannot host.
    """
    transient = max(phase.get("logits", 0.0), 0.0)
    return allocated * (1 + ALLOCATOR_SLACK) + 0.5 * transient + 64 * 2**20


def estimate_memory(arch: Arch, plan: Plan) -> MemoryEstimate:
    """The peak memory per device of ``plan`` on ``arch``; see the module docstring for the phases."""
    st, pb = static_memory(arch, plan)
    phases = _phases(arch, plan, st, pb)
    totals = {name: sum(parts.values()) for name, parts in phases.items()}
    peak_name = max(totals, key=totals.__getitem__)
    parts = {k: v for k, v in phases[peak_name].items() if v > 0}
    allocated = totals[peak_name]
    context = CUDA_CONTEXT + (NCCL_BUFFERS if plan.world > 1 else 0.0)
    return MemoryEstimate(parts, allocated, reserved_for(allocated, phases[peak_name]), context, peak_name,
                          pb.trainable, plan.tokens_per_micro_batch(), totals)

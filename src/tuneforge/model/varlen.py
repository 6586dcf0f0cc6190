"""Padding-free attention: one unpadded stream of variable-length sequences, attended to one sequence at a time.

Packed (``neat_packing``) and padding-free batches reach the model as a single ``[1, N]`` row with restarting
``position_ids`` plus ``cu_seq_lens_q/k`` (cumulative lengths, int32) and ``max_length_q/k`` (see
``data/collator.py``). With plain SDPA, transformers would turn the restarting positions into a dense ``N × N``
block-diagonal mask: O(N²) memory and work, and the fused flash kernel cannot take a mask at all. This module
registers one more attention implementation, :data:`VARLEN`, through transformers' public
``AttentionInterface`` / ``AttentionMaskInterface`` registries (no patching):

* on a CUDA GPU it calls PyTorch's own flash-attention varlen kernel (``torch.nn.attention.varlen.varlen_attn``),
  so attention costs Σ sᵢ² instead of N², and no mask is ever built;
* elsewhere (CPU, older torch) it runs causal SDPA on each sequence in turn: the same function, slower;
* batches without ``cu_seq_lens_q`` (padded evaluation, generation) go to transformers' SDPA unchanged, with the
  padding mask SDPA would get.

Example: sequences of 3 and 2 tokens -> ``cu_seq_lens_q = [0, 3, 5]``; token 3 (the first of the second
sequence) attends to itself only, exactly as if the two sequences were two rows of a padded batch.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..catalog import stage

VARLEN = "tuneforge_varlen"
logger = logging.getLogger(__name__)
# The fused kernel (None: none here) and its parameter names, looked up once by register(), before any model can
# use VARLEN: the attention function reads plain values, which torch.compile traces without graph breaks.
_FUSED: dict[str, Any] = {"kernel": None, "params": frozenset()}


def register() -> str:
    """Register :data:`VARLEN` with transformers (idempotent) and return its name for ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN, _mask_for_varlen)
    kernel = cuda_varlen_kernel()
    params = frozenset(inspect.signature(kernel).parameters) if kernel is not None else frozenset()
    _FUSED.update(kernel=kernel, params=params)
    return VARLEN


def _mask_for_varlen(*args: Any, attention_mask: Tensor | None = None, **kwargs: Any) -> Tensor | None:
    """No mask for unpadded streams (the kernel gets ``cu_seq_lens``); SDPA's mask when there is padding."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


@functools.cache
def cuda_varlen_kernel() -> Callable[..., Tensor] | None:
    """PyTorch's flash varlen attention when this torch has it and a GPU it runs on (sm80+), else None."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 8:
        return None
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_available() -> bool:
    """Whether padding-free batches run on a fused varlen kernel here (the condition for ``padding_free: auto``)."""
    return cuda_varlen_kernel() is not None


def varlen_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention function: ``query [1, H, N, D]``, ``key/value [1, Hkv, N, D]`` -> ``[1, N, H, D]``.

    Uses ``cu_seq_lens_q`` and ``max_length_q`` from ``kwargs`` (the collator's varlen metadata); without them,
    or with a batch of several rows, it is transformers' SDPA attention.
    """
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None or query.shape[0] != 1 or getattr(module, "is_causal", True) is False:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    q, k, v = _autocast((t[0].transpose(0, 1) for t in (query, key, value)), query.device.type)  # [N, heads, D]
    fused_dtype = q.dtype in (torch.float16, torch.bfloat16)
    if _FUSED["kernel"] is not None and q.is_cuda and dropout == 0.0 and fused_dtype:
        out = _fused(q, k, v, cu_seqlens.to(torch.int32), int(kwargs["max_length_q"]), scale)
    else:
        out = _per_sequence(q, k, v, cu_seqlens, scale, dropout if module.training else 0.0)
    return out.unsqueeze(0), None


def _autocast(tensors, device_type: str) -> list[Tensor]:
    """Cast to the autocast dtype when autocast is on, as SDPA is (RoPE in fp32 hands attention fp32 q and k)."""
    tensors = list(tensors)
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return [t.to(dtype) for t in tensors]


def _fused(q: Tensor, k: Tensor, v: Tensor, cu: Tensor, max_len: int, scale: float) -> Tensor:
    """One call of torch's varlen flash kernel; adapts to its signature (torch 2.10/2.11 vs later releases)."""
    params = _FUSED["params"]
    kwargs: dict[str, Any] = {}
    if "enable_gqa" in params:
        kwargs["enable_gqa"] = True
    elif k.shape[1] != q.shape[1]:  # older kernels want as many key/value heads as query heads
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    kwargs.update({"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True})
    if "scale" in params:
        kwargs["scale"] = scale
    elif abs(scale - q.shape[-1] ** -0.5) > 1e-12:
        return _per_sequence(q, k, v, cu, scale, 0.0)
    return _FUSED["kernel"](q, k, v, cu, cu, max_len, max_len, **kwargs)


def _per_sequence(q: Tensor, k: Tensor, v: Tensor, cu: Tensor, scale: float, dropout: float) -> Tensor:
    """Causal SDPA on each sequence ``cu[i]:cu[i+1]`` of the ``[N, heads, D]`` stream; the reference path."""
    groups = q.shape[1] // k.shape[1]
    outs = []
    bounds = cu.tolist()
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            continue
        qs, ks, vs = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # [1, heads, s, D]
        if groups > 1:
            ks, vs = (t.repeat_interleave(groups, dim=1) for t in (ks, vs))
        out = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout, is_causal=True, scale=scale)
        outs.append(out[0].transpose(0, 1))
    return torch.cat(outs, dim=0) if outs else q.new_zeros(q.shape)


def flattens_batches(cfg: Any) -> bool:
    """Whether pt/sft training batches reach the model as one unpadded stream (see ``data/collator.py``).

    Always under ``neat_packing`` (examples must not see each other, and a stream with ``cu_seq_lens`` is how
    that stays O(Σ sᵢ²)); never under plain ``packing`` (LLaMA-Factory's rows attend across examples), for other
    stages, or with eager attention. Otherwise ``padding_free``: true, false, or empty = where a fused varlen
    kernel runs (torch's flash varlen on a CUDA GPU for sdpa/auto, flash-attention for fa2/fa3) and the model is
    transformers' own (``trust_remote_code`` models must opt in).
    """
    if not stage(cfg.finetuning.stage).packable:
        return False
    if cfg.data.neat_packing:
        return True
    if cfg.data.packing or cfg.model.flash_attn == "disabled":
        return False
    if cfg.data.padding_free is not None:
        return cfg.data.padding_free
    if cfg.model.trust_remote_code:  # remote modeling code may not pass cu_seq_lens on to attention: opt in only
        return False
    return cfg.model.flash_attn in ("fa2", "fa3") or varlen_available()


def varlen_supported(config: Any, cutoff_len: int) -> bool:
    """Whether :data:`VARLEN` computes this model's attention exactly: an architecture whose attention goes through
    transformers' ``AttentionInterface``, with plain causal attention: no logit soft-capping (Gemma 2) and no
    sliding window that a ``cutoff_len``-token sequence could exceed (Mistral v0.1, Gemma's local layers, Qwen2
    with ``use_sliding_window``)."""
    if not _registered_attention_allowed(config):
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "attn_logit_softcapping", None):
        return False
    window = getattr(text, "sliding_window", None)
    if not window or window >= cutoff_len:
        return True
    layer_types = getattr(text, "layer_types", None)
    if layer_types is not None:
        return "sliding_attention" not in layer_types
    return getattr(text, "use_sliding_window", True) is False


def _registered_attention_allowed(config: Any) -> bool:
    """Whether transformers lets this architecture use a registered attention function (its attention classes go
    through ``AttentionInterface``); unknown (remote-code) architectures count as no."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        return False
    return bool(getattr(model_class, "_supports_attention_backend", False))


def training_attn_implementation(cfg: Any, requested: str | None, config: Any) -> str | None:
    """The attention implementation to train with: :data:`VARLEN` (registered) in place of sdpa/auto when
    batches are flattened and the model's attention is plain causal (see :func:`varlen_supported`); ``requested``
    otherwise (flash-attention reads ``cu_seq_lens`` itself; SDPA gets transformers' block mask, slower)."""
    if requested in (None, "sdpa") and flattens_batches(cfg):
        if not varlen_supported(config, cfg.data.cutoff_len):
            logger.warning("this model's attention is not plain causal attention through transformers' interface "
                           "(sliding window, soft-capping or its own code): packed batches run on SDPA with a block "
                           "mask (exact, slower), unpacked ones padded; flash_attn: fa2 may run them fused")
            return requested
        kernel = "torch flash varlen" if varlen_available() else "per-sequence SDPA (no CUDA varlen kernel here)"
        logger.info("padding-free batches: attention %s via %s", VARLEN, kernel)
        return register()
    return requested


def reads_varlen_kwargs(attn_implementation: str) -> bool:
    """Whether an attention implementation takes ``cu_seq_lens_*`` (else a flattened batch needs a dense mask)."""
    return attn_implementation == VARLEN or attn_implementation.startswith("flash_attention")

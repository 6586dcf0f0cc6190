"""Get a causal LM's last hidden state and output head without letting it build full-vocabulary logits.

The model is still called through its own (possibly DDP-, DeepSpeed- or PEFT-wrapped) ``forward``, so gradient
synchronisation, ZeRO parameter gathering and prompt-learning adapters all behave as in a normal step; we only ask
it for the logits of one position (``logits_to_keep=1``) and read the backbone's output with a forward hook. The
losses then project the hidden state chunk by chunk through the head module (see :mod:`._chunked`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# Keys a causal LM forward accepts from our collators; the rest (labels, seq_lens, KTO tags...) stay out.
DECODER_KEYS = (
    "input_ids", "attention_mask", "position_ids", "inputs_embeds",
    "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k",
)  # fmt: skip


@dataclass
class HeadOutput:
    """What :func:`forward_hidden` returns.

    Attributes:
        hidden: ``[B, T, H]`` last hidden state (after the final norm), attached to the graph.
        head: the output-embedding module; call it on ``[n, H]`` rows to get ``[n, V]`` logits (a plain
            ``nn.Linear``, or a PEFT wrapper around one, which must be called rather than read).
        transform: element-wise map the model applies to its logits after the head (Gemma soft-capping, Cohere
            ``logit_scale``, Granite ``logits_scaling``), or None.
        aux_loss: the router load-balancing term times ``router_aux_loss_coef`` for MoE models that return one,
            else None; HF adds it to the LM loss, and so do we.
    """

    hidden: Tensor
    head: nn.Module
    transform: Callable[[Tensor], Tensor] | None
    aux_loss: Tensor | None


def _wrapped(model: nn.Module) -> nn.Module | None:
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return inner
    return None


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` inside DDP/DeepSpeed (``.module``), ``torch.compile`` (``._orig_mod``) and PEFT.

    Only for reading structure (config, backbone, head); the forward call goes through the outer wrapper.
    """
    while (inner := _wrapped(model)) is not None:
        model = inner
    get_base = getattr(model, "get_base_model", None)  # PeftModel: LoRA layers live inside its base model
    return get_base() if callable(get_base) else model


def backbone_of(lm: nn.Module) -> nn.Module:
    """The module whose output is the last hidden state: ``lm.model`` for HF causal LMs, else ``get_decoder()``."""
    inner = getattr(lm, "model", None)
    return inner if isinstance(inner, nn.Module) else lm.get_decoder()


def logit_transform(config: Any) -> Callable[[Tensor], Tensor] | None:
    """The element-wise logit map that ``config``'s model applies after ``lm_head``, or None.

    ``final_logit_softcapping=c`` (Gemma 2/3): ``c·tanh(x/c)``; ``logit_scale=s`` (Cohere): ``s·x``;
    ``logits_scaling=s`` (Granite, MiniCPM3): ``x/s``. Applied to the fp32 upcast of each chunk, which is at least
    as accurate as HF's order (transform in the compute dtype, then upcast).
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    cap = getattr(text, "final_logit_softcapping", None)
    if cap:
        return lambda x: torch.tanh(x / cap) * cap
    scale = getattr(text, "logit_scale", None)
    if isinstance(scale, int | float) and scale != 1:
        return lambda x: x * scale
    divisor = getattr(text, "logits_scaling", None)
    if isinstance(divisor, int | float) and divisor != 1:
        return lambda x: x / divisor
    return None


def decoder_kwargs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``batch`` under :data:`DECODER_KEYS` (padding masks, packed positions, varlen metadata)."""
    return {key: batch[key] for key in DECODER_KEYS if key in batch}


def _accepts_logits_to_keep(lm: nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(lm.forward).parameters


def _scaled_aux_loss(output: Any, lm: nn.Module) -> Tensor | None:
    aux = getattr(output, "aux_loss", None)
    if aux is None:
        return None
    return getattr(lm.config, "router_aux_loss_coef", 0.0) * aux


def forward_hidden(model: nn.Module, batch: Mapping[str, Any]) -> HeadOutput:
    """Run ``model`` on ``batch`` and return its last hidden state and head (see :class:`HeadOutput`).

    Args:
        model: a HF ``*ForCausalLM``, optionally wrapped by PEFT, DDP, DeepSpeed or ``torch.compile``.
        batch: at least ``input_ids`` (or ``inputs_embeds``); see :data:`DECODER_KEYS` for what is passed on.

    Raises:
        RuntimeError: when the backbone's forward never ran (a model layout this helper does not know).
    """
    lm = unwrap_causal_lm(model)
    captured: list[Tensor] = []

    def keep_hidden(_module, _args, output):
        captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    kwargs = decoder_kwargs(batch)
    if _accepts_logits_to_keep(lm):
        kwargs["logits_to_keep"] = 1  # the model still builds [B, 1, V] logits; we ignore them
    handle = backbone_of(lm).register_forward_hook(keep_hidden)
    try:
        output = model(**kwargs, use_cache=False)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{type(lm).__name__}: its backbone {type(backbone_of(lm)).__name__} did not run")
    head = lm.get_output_embeddings()
    return HeadOutput(captured[-1], head, logit_transform(lm.config), _scaled_aux_loss(output, lm))

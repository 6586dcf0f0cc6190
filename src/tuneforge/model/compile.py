"""``torch_compile``: compile each decoder layer, not the whole model.

Why per layer: the layers are where the step's thousands of small kernels are (norms, RoPE, SwiGLU, residual adds,
the LoRA adapters' extra matmuls and adds), so fusing them there is most of what compilation can give; all
layers share one code object, so they compile once and reuse the graph; and the parts around them stay eager:
our loss reads the backbone's output through a forward hook and projects it chunk by chunk, which a whole-model
graph would recompile for. Activation checkpointing keeps working: each checkpointed call runs the compiled layer.
transformers' own ``torch_compile`` (the whole model, through accelerate) is therefore never switched on.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The decoder's layer list of a causal LM (PEFT-wrapped or not), or None for a layout we do not know."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    return layers if isinstance(layers, torch.nn.ModuleList) else None


def compile_decoder_layers(model: torch.nn.Module, cfg) -> int:
    """``layer.compile(backend=torch_compile_backend, mode=torch_compile_mode)`` for every decoder layer.

    Returns how many layers were compiled (0 when ``torch_compile`` is off or no layer list was found). The
    compilation itself happens lazily, on the first training step.
    """
    tr = cfg.training
    if not tr.torch_compile:  # also derived true from torch_compile_backend / torch_compile_mode (config/derive.py)
        return 0
    layers = decoder_layers(model)
    if layers is None:
        logger.warning("torch_compile: no decoder layer list found on %s; left uncompiled", type(model).__name__)
        return 0
    kwargs = {"backend": tr.torch_compile_backend or "inductor"}
    if tr.torch_compile_mode:
        kwargs["mode"] = tr.torch_compile_mode
    for layer in layers:
        layer.compile(**kwargs)
    logger.info("torch_compile: %d decoder layers compiled lazily (%s)", len(layers), kwargs)
    return len(layers)

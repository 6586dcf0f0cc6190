"""On-the-fly quantization of the base model with bitsandbytes (QLoRA)."""

from __future__ import annotations

from typing import Any

import torch

from .errors import ModelLoadError
from .kernels import check_bitsandbytes


def quantization_kwargs(cfg, dtype: torch.dtype | str, *, is_trainable: bool) -> dict[str, Any]:
    """``from_pretrained`` keywords for ``quantization_bit`` (empty without it).

    4-bit: ``quantization_type`` (nf4/fp4), ``double_quantization`` and the compute dtype; 8-bit: LLM.int8.
    The weights are quantized while they load, so the model is placed on its device right away: this process's
    GPU (``LOCAL_RANK``) or the CPU; ``quantization_device_map: auto`` spreads it at inference.
    """
    bits = cfg.model.quantization_bit
    if bits is None:
        return {}
    if cfg.model.quantization_method != "bnb":
        raise ModelLoadError(f"quantization_method {cfg.model.quantization_method!r}: on-the-fly quantization "
                             "supports bnb only")
    check_bitsandbytes(cfg)
    from transformers import BitsAndBytesConfig

    if bits == 4:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_compute_dtype=dtype if isinstance(dtype, torch.dtype) else _auto_compute_dtype(),
            bnb_4bit_use_double_quant=cfg.model.double_quantization,
            bnb_4bit_quant_type=cfg.model.quantization_type,
        )
    else:
        quant = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": quant, "device_map": _device_map(cfg, is_trainable=is_trainable)}


def _auto_compute_dtype() -> torch.dtype:
    # infer_dtype: auto has no single dtype for a quantized checkpoint: the fastest the device computes in.
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _device_map(cfg, *, is_trainable: bool) -> Any:
    if not is_trainable and cfg.model.quantization_device_map == "auto":
        return "auto"
    if torch.cuda.is_available():
        return {"": torch.device("cuda", cfg.env.LOCAL_RANK)}
    return {"": "cpu"}


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether the model was loaded in 4 or 8 bits (its weights cannot be merged into or trained fully)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))

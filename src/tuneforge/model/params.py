"""Dtypes and parameter accounting: which dtype a run computes in, how many parameters train, their precision."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_INFER_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def compute_dtype(cfg) -> torch.dtype:
    """Training compute dtype: bfloat16 with ``bf16`` or ``pure_bf16``, float16 with ``fp16``, else float32.

    The base model is loaded in this dtype (same rule as ``tuneforge check``'s derived ``compute_dtype``).
    """
    if cfg.training.bf16 or cfg.finetuning.pure_bf16:
        return torch.bfloat16
    if cfg.training.fp16:
        return torch.float16
    return torch.float32


def inference_dtype(cfg) -> torch.dtype | str:
    """Dtype for inference and export: ``infer_dtype`` when set; with ``auto``, the training dtype when bf16/fp16 is
    set, else the checkpoint's own dtype on a GPU (``"auto"``) and float32 on a CPU (half precision is slow there).
    """
    if cfg.model.infer_dtype != "auto":
        return _INFER_DTYPES[cfg.model.infer_dtype]
    if cfg.training.bf16 or cfg.training.fp16 or cfg.finetuning.pure_bf16:
        return compute_dtype(cfg)
    return "auto" if torch.cuda.is_available() else torch.float32


def _numel(param: torch.nn.Parameter) -> int:
    # bitsandbytes packs two 4-bit values per byte of its storage dtype: count the logical weights.
    if param.__class__.__name__ == "Params4bit":
        storage = getattr(param, "quant_storage", None)
        itemsize = storage.itemsize if storage is not None and hasattr(storage, "itemsize") else param.element_size()
        return param.numel() * 2 * itemsize
    return param.numel()


def trainable_summary(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (tied weights once; 4-bit weights unpacked) and one INFO log line:
    ``trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330``.
    """
    trainable = total = 0
    for param in model.parameters():
        count = _numel(param)
        total += count
        if param.requires_grad:
            trainable += count
    share = 100 * trainable / total if total else 0.0
    logger.info("trainable params: %s || all params: %s || trainable%%: %.4f", f"{trainable:,}", f"{total:,}", share)
    return trainable, total


def cast_trainable_params(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast every trainable floating parameter to ``dtype`` (fp32 master weights under mixed precision)."""
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)


def log_param_status(model: torch.nn.Module) -> None:
    """One INFO line per parameter: name, dtype, device, trainable (``print_param_status``)."""
    for name, param in model.named_parameters():
        logger.info("name: %s, dtype: %s, device: %s, trainable: %s", name, param.dtype, param.device,
                    param.requires_grad)

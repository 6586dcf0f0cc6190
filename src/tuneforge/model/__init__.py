"""Model side of a run: tokenizer, base model, fine-tuning method (lora / freeze / full), parameter accounting.

Public API (imported lazily, so ``from tuneforge.model.errors import ModelLoadError`` stays cheap for the CLI)::

    load_tokenizer(cfg) -> PreTrainedTokenizerBase
    load_model(cfg, tokenizer, *, is_trainable) -> torch.nn.Module
    trainable_summary(model) -> (trainable, total)
    compute_dtype(cfg) -> torch.dtype
    optimizer_param_groups(model, cfg, lr) -> list[dict]      # LoRA+ learning rates
    wants_fp32_logits(model) -> bool                          # upcast_lmhead_output
    ModelLoadError                                            # a user-facing error: the CLI exits 2, no traceback
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_tokenizer": "tokenizer",
    "load_model": "loader",
    "trainable_summary": "params",
    "compute_dtype": "params",
    "optimizer_param_groups": "loraplus",
    "wants_fp32_logits": "training",
    "UPCAST_LMHEAD_ATTR": "training",
    "ModelLoadError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuneforge.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)

"""Unsloth's optimised LoRA path (``use_unsloth``), used for LoRA training only.

Unsloth loads the model (4-bit when ``quantization_bit: 4``) and builds the adapter with its own fused kernels
and its CPU-offloading activation checkpointing, so tuneforge's checkpointing is left off on this path. Resumed
adapters go through PEFT as usual. Inference always uses plain transformers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import ModelLoadError
from .kernels import check_unsloth


def check_unsloth_config(cfg) -> None:
    """Unsloth is a LoRA path here; the options it cannot honour are errors, not silently dropped."""
    check_unsloth()
    ft = cfg.finetuning
    if ft.finetuning_type != "lora":
        raise ModelLoadError(f"use_unsloth supports finetuning_type: lora only (it is {ft.finetuning_type})")
    unsupported = [key for key, on in (("use_dora", ft.use_dora), ("pissa_init", ft.pissa_init),
                                       ("quantization_bit: 8", cfg.model.quantization_bit == 8)) if on]
    if unsupported:
        raise ModelLoadError(f"use_unsloth cannot be combined with {', '.join(unsupported)}")


def load_unsloth_model(cfg, source: str, dtype: torch.dtype) -> torch.nn.Module:
    """The base model loaded by ``unsloth.FastLanguageModel`` (its tokenizer is discarded: ours is loaded apart)."""
    from unsloth import FastLanguageModel

    device = torch.device("cuda", cfg.env.LOCAL_RANK) if torch.cuda.is_available() else torch.device("cpu")
    model, _ = FastLanguageModel.from_pretrained(
        model_name=source,
        max_seq_length=cfg.data.cutoff_len,
        dtype=dtype,
        load_in_4bit=cfg.model.quantization_bit == 4,
        token=cfg.model.hf_hub_token,
        device_map={"": device},
        trust_remote_code=cfg.model.trust_remote_code,
        use_gradient_checkpointing=_checkpointing(cfg),
    )
    return model


def _checkpointing(cfg) -> str | bool:
    return False if cfg.model.disable_gradient_checkpointing else "unsloth"


def unsloth_adapter_builder(cfg) -> Callable:
    """``new_adapter(model, lora_config)`` for :func:`tuneforge.model.lora.apply_lora` that uses Unsloth."""

    def build(model: torch.nn.Module, lora_config) -> torch.nn.Module:
        from unsloth import FastLanguageModel

        return FastLanguageModel.get_peft_model(
            model,
            r=lora_config.r,
            target_modules=sorted(lora_config.target_modules),
            lora_alpha=lora_config.lora_alpha,
            lora_dropout=lora_config.lora_dropout,
            use_rslora=lora_config.use_rslora,
            modules_to_save=lora_config.modules_to_save,
            use_gradient_checkpointing=_checkpointing(cfg),
            random_state=cfg.training.seed,
            max_seq_length=cfg.data.cutoff_len,
        )

    return build

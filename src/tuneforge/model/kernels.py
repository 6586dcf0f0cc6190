"""Optional kernels: attention implementation, Liger and Unsloth.

Unlike LLaMA-Factory, a kernel that was asked for and cannot run here is an error before any weight is read, never
a silent fallback to another kernel (a run that is "fa2" on paper but eager in fact is slower and uses more memory).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging

import torch

from ..catalog import stage
from .errors import ModelLoadError

logger = logging.getLogger(__name__)

ATTN_IMPLEMENTATIONS = {
    "auto": None,  # transformers' own default (sdpa where the model supports it)
    "disabled": "eager",
    "sdpa": "sdpa",
    "fa2": "flash_attention_2",
    "fa3": "flash_attention_3",
}
# flash_attn value -> (import name, pip distribution, install hint)
_FLASH_PACKAGES = {
    "fa2": ("flash_attn", "flash-attn", "pip install flash-attn --no-build-isolation"),
    "fa3": ("flash_attn_interface", "flash-attn-3", "build flash-attention's hopper/ package"),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    return importlib.util.find_spec(module) is not None


def attn_implementation(cfg) -> str | None:
    """The ``attn_implementation`` for ``from_pretrained`` (None: transformers' default).

    Raises :class:`ModelLoadError` when fa2/fa3 is asked for and its package or a CUDA GPU is missing.
    """
    choice = cfg.model.flash_attn
    if choice in _FLASH_PACKAGES:
        _require_flash(choice)
    return ATTN_IMPLEMENTATIONS[choice]


def _require_flash(choice: str) -> None:
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    module, dist, how = _FLASH_PACKAGES[choice]
    alternative = "use flash_attn: sdpa (or auto) instead"
    if not installed(module):
        raise ModelLoadError(f"flash_attn: {choice} needs the {dist} package, which is not installed here ({how}); "
                             f"{alternative}")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"flash_attn: {choice} needs a CUDA GPU and this machine has none; {alternative}")
    available = is_flash_attn_2_available() if choice == "fa2" else is_flash_attn_3_available()
    if not available:
        raise ModelLoadError(f"flash_attn: {choice}: transformers cannot use the installed {dist} (too old, or built "
                             f"for another CUDA); reinstall it or {alternative}")


def check_liger(cfg) -> None:
    """``enable_liger_kernel`` needs the liger-kernel package and a CUDA GPU (Triton has no CPU backend)."""
    if not installed("liger_kernel"):
        raise ModelLoadError("enable_liger_kernel needs the liger-kernel package, which is not installed here "
                             "(pip install 'tuneforge[liger]'); remove enable_liger_kernel to train without it")
    if not torch.cuda.is_available():
        raise ModelLoadError("enable_liger_kernel: Liger's kernels are Triton GPU kernels and this machine has no "
                             "CUDA GPU; remove enable_liger_kernel")


def apply_liger(cfg, model_type: str) -> None:
    """Patch transformers' modeling code of ``model_type`` with Liger's kernels (before the model is built).

    Liger patches the modeling module for the whole process (its own design, not ours). Stages other than pt/sft
    need the logits, so the fused linear cross-entropy (which never materialises them) is turned off there.
    With ``torch_compile`` nothing is patched: inductor fuses the norms, RoPE and SwiGLU itself (Liger's Triton
    functions would split its graphs), and our loss still uses Liger's fused linear cross-entropy.
    """
    check_liger(cfg)
    if cfg.training.torch_compile:
        logger.info("enable_liger_kernel with torch_compile: Liger's fused linear cross-entropy only (the compiled "
                    "layers fuse norms, RoPE and SwiGLU)")
        return
    liger = importlib.import_module("liger_kernel.transformers")
    patch = getattr(liger, f"apply_liger_kernel_to_{model_type}", None)
    if patch is None:
        raise ModelLoadError(f"enable_liger_kernel: Liger has no kernels for model type {model_type!r}; "
                             "remove enable_liger_kernel")
    accepted = inspect.signature(patch).parameters
    kwargs = {}
    if not stage(cfg.finetuning.stage).packable and "fused_linear_cross_entropy" in accepted:
        kwargs["fused_linear_cross_entropy"] = False
    patch(**kwargs)
    logger.info("Liger kernels applied to %s", model_type)


def check_unsloth() -> None:
    """``use_unsloth`` needs the unsloth package (no silent fallback to plain transformers)."""
    if not installed("unsloth"):
        raise ModelLoadError("use_unsloth needs the unsloth package, which is not installed here (pip install "
                             "unsloth); remove use_unsloth to train with transformers + PEFT")


def check_bitsandbytes(cfg) -> None:
    """``quantization_bit`` (on-the-fly bnb quantization) needs bitsandbytes."""
    if not installed("bitsandbytes"):
        raise ModelLoadError(f"quantization_bit: {cfg.model.quantization_bit} needs the bitsandbytes package, which "
                             "is not installed here (pip install 'tuneforge[bnb]')")

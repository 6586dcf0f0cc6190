"""Optimizer parameter groups, with LoRA+ learning rates (``loraplus_lr_ratio``).

LoRA+ (Hayou et al., 2024) trains the B matrices faster than the A matrices: lr_B = lr x ratio. As in the
reference implementation (and LLaMA-Factory), 1-D trainable parameters (biases, norms, DoRA magnitudes) join the B
group, and LoRA adapters of embedding layers use ``loraplus_lr_embedding``.
"""

from __future__ import annotations

import torch


def _decays(name: str, param: torch.nn.Parameter) -> bool:
    # transformers' rule in spirit: no weight decay on biases and on 1-D (normalisation) weights.
    return param.ndim >= 2 and not name.endswith(".bias")


def _group_of(name: str, param: torch.nn.Parameter, loraplus: bool) -> str:
    if not loraplus:
        return "default"
    if "lora_embedding_" in name:
        return "embedding"
    if "lora_B" in name or param.ndim == 1:
        return "lora_b"
    return "lora_a"


def optimizer_param_groups(model: torch.nn.Module, cfg, lr: float) -> list[dict]:
    """Parameter groups of the trainable parameters for a torch optimizer.

    Each group is ``{"name", "params", "lr", "weight_decay"}``; empty groups are left out. Weight decay is
    ``cfg.training.weight_decay`` except on biases and 1-D weights (``*_no_decay`` groups, decay 0).
    Without ``loraplus_lr_ratio`` there are two groups at ``lr`` (``default``, ``default_no_decay``). With it:
    ``lora_a`` at lr, ``lora_b`` at lr x ratio, ``embedding`` at ``loraplus_lr_embedding``.
    """
    ratio = cfg.finetuning.loraplus_lr_ratio
    rates = {"default": lr, "lora_a": lr, "lora_b": lr * (ratio or 1.0),
             "embedding": cfg.finetuning.loraplus_lr_embedding}
    decay = cfg.training.weight_decay
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        kind = _group_of(name, param, ratio is not None)
        key = kind if _decays(name, param) else f"{kind}_no_decay"
        group = groups.setdefault(key, {"name": key, "params": [], "lr": rates[kind],
                                        "weight_decay": decay if key == kind else 0.0})
        group["params"].append(param)
    return list(groups.values())

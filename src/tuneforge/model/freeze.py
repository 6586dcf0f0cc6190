"""``finetuning_type: freeze`` (train some decoder layers and modules) and ``full`` (train everything).

A parameter belongs to layer ``i`` when its name has a ``.i.`` component (``model.layers.3.mlp.up_proj.weight``);
its sub-module is the component right after it (``mlp``). Parameters without an index are "extra" modules, named
by their owning module (``model.embed_tokens.weight`` -> ``embed_tokens``, ``model.norm.weight`` -> ``norm``).
Unlike LLaMA-Factory's substring match, ``freeze_extra_modules: norm`` trains ``model.norm`` only, not every
``*_layernorm`` inside the layers.
"""

from __future__ import annotations

import logging
import re

import torch

from .errors import ModelLoadError

logger = logging.getLogger(__name__)

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def num_layers(model: torch.nn.Module) -> int:
    """Number of decoder layers, from the model config (``text_config`` for multimodal configs)."""
    config = model.config
    text = getattr(config, "text_config", None) or config
    count = getattr(text, "num_hidden_layers", None) or getattr(text, "num_layers", None)
    if not count:
        raise ModelLoadError(f"finetuning_type: freeze cannot find the number of layers of {type(model).__name__}")
    return int(count)


def trainable_layer_ids(total: int, n: int, *, llama_pro: bool = False) -> list[int]:
    """Layers trained by ``freeze_trainable_layers: n``: the last n (n > 0) or the first |n| (n < 0).

    With ``use_llama_pro`` the n trainable layers are the expanded blocks, every (total / n)-th layer.
    """
    if llama_pro:
        if n <= 0 or total % n:
            raise ModelLoadError(f"use_llama_pro: the model's {total} layers must be a multiple of "
                                 f"freeze_trainable_layers ({n}), which must be > 0")
        stride = total // n
        return list(range(stride - 1, total, stride))
    if n > 0:
        return list(range(max(0, total - n), total))
    return list(range(min(-n, total)))


def split_param_name(name: str) -> tuple[int | None, str]:
    """``(layer index, sub-module)`` of a layer parameter, ``(None, owning module)`` of any other one."""
    match = _LAYER_INDEX.search(name)
    if match:
        return int(match.group(1)), name[match.end():].split(".")[0]
    parts = name.split(".")
    return None, parts[-2] if len(parts) > 1 else parts[0]


def layer_module_names(model: torch.nn.Module) -> list[str]:
    """Valid ``freeze_trainable_modules``: sub-modules found inside the layers (``self_attn``, ``mlp``...)."""
    return sorted({sub for idx, sub in map(split_param_name, _names(model)) if idx is not None})


def extra_module_names(model: torch.nn.Module) -> list[str]:
    """Valid ``freeze_extra_modules``: modules outside the layers (``embed_tokens``, ``norm``, ``lm_head``)."""
    return sorted({sub for idx, sub in map(split_param_name, _names(model)) if idx is None})


def _names(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def _check(names: list[str], valid: list[str], key: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ModelLoadError(f"{key}: unknown module(s) {', '.join(map(repr, unknown))}; valid names: "
                             f"{', '.join(valid)}")


def apply_freeze(model: torch.nn.Module, cfg) -> torch.nn.Module:
    """Train only the selected layers' selected sub-modules plus ``freeze_extra_modules``; freeze the rest.

    Raises :class:`ModelLoadError` for module names the model does not have, listing the valid ones.
    """
    ft = cfg.finetuning
    layers = set(trainable_layer_ids(num_layers(model), ft.freeze_trainable_layers, llama_pro=ft.use_llama_pro))
    modules = list(ft.freeze_trainable_modules)
    extra = list(ft.freeze_extra_modules or [])
    if "all" not in modules:
        _check(modules, layer_module_names(model), "freeze_trainable_modules")
    _check(extra, extra_module_names(model), "freeze_extra_modules")
    for name, param in model.named_parameters():
        idx, sub = split_param_name(name)
        if idx is None:
            param.requires_grad_(sub in extra)
        else:
            param.requires_grad_(idx in layers and ("all" in modules or sub in modules))
    logger.info("freeze: training layers %s, modules %s, extra modules %s", sorted(layers), modules, extra or "none")
    return model


def apply_full(model: torch.nn.Module) -> torch.nn.Module:
    """Train every parameter."""
    model.requires_grad_(True)
    return model

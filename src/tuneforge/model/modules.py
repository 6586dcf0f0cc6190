"""Finding modules by name: the names a user may give to ``lora_target``, ``additional_target`` and freeze keys."""

from __future__ import annotations

import torch

from .errors import ModelLoadError


def leaf(name: str) -> str:
    """Last component of a dotted module or parameter path (``model.layers.0.mlp.up_proj`` -> ``up_proj``)."""
    return name.rsplit(".", 1)[-1]


def module_name_of(model: torch.nn.Module, target: torch.nn.Module | None) -> str | None:
    """Dotted name of ``target`` inside ``model`` (None if absent)."""
    if target is None:
        return None
    return next((name for name, module in model.named_modules() if module is target), None)


def embedding_names(model: torch.nn.Module) -> list[str]:
    """Leaf names of the input embeddings and the output head, in that order, once each (``embed_tokens``,
    ``lm_head``; a tied head keeps its own module name)."""
    names = [module_name_of(model, model.get_input_embeddings()), module_name_of(model, model.get_output_embeddings())]
    return list(dict.fromkeys(leaf(n) for n in names if n))


def _is_linear(module: torch.nn.Module) -> bool:
    # Class names, not isinstance: bitsandbytes' Linear4bit / Linear8bitLt and GPT-2's Conv1D count too.
    kind = type(module).__name__
    return ("Linear" in kind and "Embedding" not in kind) or kind == "Conv1D"


def linear_leaf_names(model: torch.nn.Module) -> list[str]:
    """``lora_target: all``: the sorted leaf names of every linear layer except the output head."""
    head = module_name_of(model, model.get_output_embeddings())
    head_leaf = leaf(head) if head else "lm_head"
    return sorted({leaf(n) for n, m in model.named_modules() if _is_linear(m) and leaf(n) != head_leaf})


def lora_targetable_names(model: torch.nn.Module) -> list[str]:
    """Leaf names LoRA can wrap: linear layers (the head included) and embeddings."""
    return sorted({leaf(n) for n, m in model.named_modules() if n and (_is_linear(m) or "Embedding" in
                                                                       type(m).__name__)})


def check_names(model: torch.nn.Module, names: list[str], valid: list[str], key: str) -> None:
    """Each of ``names`` must be one of ``valid`` or a dotted path ending in a module (PEFT's suffix match).

    Raises :class:`ModelLoadError` listing the valid names.
    """
    paths = [n for n, _ in model.named_modules() if n]
    for name in names:
        if name in valid or (("." in name) and any(p == name or p.endswith("." + name) for p in paths)):
            continue
        raise ModelLoadError(f"{key}: this model ({type(model).__name__}) has no module {name!r}; valid names: "
                             f"{', '.join(valid)}")


def all_leaf_names(model: torch.nn.Module) -> list[str]:
    """Every module leaf name of the model (the valid values of ``additional_target``)."""
    return sorted({leaf(n) for n, _ in model.named_modules() if n and not leaf(n).isdigit()})

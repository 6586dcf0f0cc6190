"""Helpers for the model tests: a resolved config for a tiny model folder, fixed inputs, base logits.

Not a conftest.py: tests/data imports the top-level conftest by name, and a second conftest module would shadow it.
"""

from __future__ import annotations

import functools

import torch

from tuneforge.config.loader import resolve

INPUT_IDS = torch.tensor([[5, 17, 300, 42, 8, 99, 512, 7]])


def make_cfg(model_dir, **keys):
    """The typed config of ``{"model_name_or_path": model_dir, "cutoff_len": 512, **keys}``; fails on config errors."""
    res = resolve({"model_name_or_path": str(model_dir), "cutoff_len": 512, **keys}, environ={})
    assert not res.errors, [(d.key, d.message) for d in res.errors]
    return res.config


def logits(model, ids: torch.Tensor = INPUT_IDS) -> torch.Tensor:
    """Eval-mode logits without a KV cache (restores train mode afterwards)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False).logits
    model.train(was_training)
    return out


def base_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()


def trainable_names(model) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


@functools.cache
def base_logits(model_dir) -> torch.Tensor:
    """Logits of the untouched model folder (cached per folder; do not modify the result)."""
    return logits(base_model(model_dir))


def load(model_dir, *, is_trainable: bool = True, **keys):
    """``load_model`` of the tiny folder with these config keys (tokenizer from ``load_tokenizer``)."""
    from tuneforge.model import load_model, load_tokenizer

    cfg = make_cfg(model_dir, **keys)
    return load_model(cfg, load_tokenizer(cfg), is_trainable=is_trainable)

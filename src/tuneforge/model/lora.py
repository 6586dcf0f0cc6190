"""``finetuning_type: lora`` (and ``oft``): a new or resumed PEFT adapter, and the adapters merged under it.

``adapter_name_or_path: [a, b, c]`` (LLaMA-Factory semantics):

* training: merge a and b into the base, continue training c;
* training with ``create_new_adapter``: merge a, b and c, train a new adapter;
* inference: merge all three (the result is a plain transformers model);
* a quantized base cannot take merges: one adapter at most, kept unmerged.

A new adapter is a ``LoraConfig`` for lora and an ``OFTConfig`` for oft (:mod:`tuneforge.model.oft`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from .errors import ModelLoadError
from .freeze import num_layers, trainable_layer_ids
from .hub import explain_hub_errors, looks_like_path
from .modules import all_leaf_names, check_names, embedding_names, linear_leaf_names, lora_targetable_names
from .offline import offline_folder
from .oft import build_oft_config
from .quantization import is_quantized

logger = logging.getLogger(__name__)


def lora_targets(model: torch.nn.Module, cfg) -> list[str]:
    """``lora_target`` as module names: ``all`` -> every linear layer but the output head; a list is checked."""
    targets = list(cfg.finetuning.lora_target)
    if "all" in targets:
        return linear_leaf_names(model)
    check_names(model, targets, lora_targetable_names(model), "lora_target")
    return targets


def modules_to_save(model: torch.nn.Module, cfg, *, vocab_extended: bool) -> list[str] | None:
    """``additional_target``; when the vocabulary was extended and none is given, the embeddings and the head
    (new tokens need trained rows, LLaMA-Factory's rule)."""
    extra = cfg.finetuning.additional_target
    if extra:
        check_names(model, list(extra), all_leaf_names(model), "additional_target")
        return list(extra)
    if vocab_extended:
        return embedding_names(model)
    return None


def _init_weights(cfg) -> bool | str:
    ft = cfg.finetuning
    if not ft.pissa_init:
        return True
    return "pissa" if ft.pissa_iter == -1 else f"pissa_niter_{ft.pissa_iter}"


def build_lora_config(model: torch.nn.Module, cfg, *, vocab_extended: bool = False):
    """The ``peft.LoraConfig`` of a new adapter (rank, alpha, dropout, targets, rsLoRA, DoRA, PiSSA...)."""
    from peft import LoraConfig, TaskType

    ft = cfg.finetuning
    to_save = modules_to_save(model, cfg, vocab_extended=vocab_extended)
    kwargs = {
        "task_type": TaskType.CAUSAL_LM,
        "r": ft.lora_rank,
        "lora_alpha": ft.lora_alpha or 2 * ft.lora_rank,
        "lora_dropout": ft.lora_dropout,
        "target_modules": lora_targets(model, cfg),
        "use_rslora": ft.use_rslora,
        "use_dora": ft.use_dora,
        "modules_to_save": to_save,
        "init_lora_weights": _init_weights(cfg),
    }
    if ft.use_llama_pro:  # only the expanded blocks carry adapters
        kwargs["layers_to_transform"] = trainable_layer_ids(num_layers(model), ft.freeze_trainable_layers,
                                                            llama_pro=True)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied and to_save and "ensure_weight_tying" in {f.name for f in dataclasses.fields(LoraConfig)}:
        kwargs["ensure_weight_tying"] = True  # one trained copy shared by the tied embeddings and head
    return LoraConfig(**kwargs)


def _adapter_kwargs(cfg) -> dict:
    kwargs: dict = {}
    if cfg.model.adapter_folder:
        kwargs["subfolder"] = cfg.model.adapter_folder
    if cfg.model.hf_hub_token:
        kwargs["token"] = cfg.model.hf_hub_token
    if cfg.model.cache_dir:
        kwargs["cache_dir"] = cfg.model.cache_dir
    return kwargs


def _check_adapter_path(path: str, cfg) -> None:
    folder = Path(path).expanduser()
    if folder.is_dir():
        inner = folder / (cfg.model.adapter_folder or "")
        if not (inner / "adapter_config.json").is_file():
            raise ModelLoadError(f"adapter_name_or_path {path!r}: {inner} has no adapter_config.json "
                                 "(is it a LoRA adapter folder? a full model goes in model_name_or_path)")
    elif looks_like_path(path):
        raise ModelLoadError(f"adapter_name_or_path {path!r}: no such folder")


def load_adapter(model: torch.nn.Module, path: str, cfg, *, is_trainable: bool):
    """``PeftModel`` of ``model`` with the adapter at ``path`` (a folder or hub id)."""
    from peft import PeftModel

    _check_adapter_path(path, cfg)
    with explain_hub_errors("adapter", path):
        path = offline_folder(path, "adapter_config.json", subfolder=cfg.model.adapter_folder,
                              cache_dir=cfg.model.cache_dir)
        return PeftModel.from_pretrained(model, path, is_trainable=is_trainable,
                                         autocast_adapter_dtype=not cfg.finetuning.pure_bf16, **_adapter_kwargs(cfg))


def merge_adapters(model: torch.nn.Module, paths: list[str], cfg) -> torch.nn.Module:
    """Load each adapter in turn and merge it into the weights; returns the plain base model."""
    for path in paths:
        model = load_adapter(model, path, cfg, is_trainable=False).merge_and_unload()
        logger.info("merged adapter %s", path)
    return model


def _plan(adapters: list[str], cfg, *, mergeable: bool, is_trainable: bool) -> tuple[list[str], str | None]:
    """``(adapters to merge, adapter to keep as the PeftModel)``."""
    if not mergeable:
        if len(adapters) > 1:
            raise ModelLoadError(f"adapter_name_or_path: a quantized base cannot merge adapters; give one adapter, "
                                 f"not {len(adapters)}")
        if adapters and is_trainable and cfg.finetuning.create_new_adapter:
            raise ModelLoadError("create_new_adapter merges the given adapters, which a quantized base cannot do")
        return [], (adapters[0] if adapters else None)
    if not is_trainable or cfg.finetuning.create_new_adapter:
        return adapters, None
    return adapters[:-1], (adapters[-1] if adapters else None)


def apply_lora(model: torch.nn.Module, cfg, *, is_trainable: bool, vocab_extended: bool = False,
               new_adapter=None) -> torch.nn.Module:
    """Merge/resume ``adapter_name_or_path`` and, in training, add a new adapter (LoRA or OFT, after
    ``finetuning_type``) when none is resumed.

    ``new_adapter(model, lora_config)`` builds the new PeftModel (default ``peft.get_peft_model``; Unsloth passes
    its own). Returns a PeftModel in training; at inference a plain model unless an adapter stays unmerged.
    """
    adapters = list(cfg.model.adapter_name_or_path or [])
    merge, keep = _plan(adapters, cfg, mergeable=not is_quantized(model), is_trainable=is_trainable)
    model = merge_adapters(model, merge, cfg)
    if keep is not None:
        logger.info("%s adapter %s", "resuming training of" if is_trainable else "loaded", keep)
        return load_adapter(model, keep, cfg, is_trainable=is_trainable)
    if not is_trainable:
        return model
    if cfg.finetuning.finetuning_type == "oft":
        peft_config = build_oft_config(model, cfg, vocab_extended=vocab_extended)
    else:
        peft_config = build_lora_config(model, cfg, vocab_extended=vocab_extended)
        logger.info("new LoRA adapter: r=%d, alpha=%s, targets %s", peft_config.r, peft_config.lora_alpha,
                    sorted(peft_config.target_modules))
    if new_adapter is not None:
        return new_adapter(model, peft_config)
    from peft import get_peft_model

    return get_peft_model(model, peft_config, autocast_adapter_dtype=not cfg.finetuning.pure_bf16)

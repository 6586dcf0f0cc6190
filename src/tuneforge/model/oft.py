"""``finetuning_type: oft``: an orthogonal fine-tuning (OFT) adapter through PEFT's ``OFTConfig``.

OFT multiplies each target layer's weight by a learned block-diagonal orthogonal matrix, which keeps the angles
between the layer's neurons. Everything but the new adapter's config is LoRA's: ``adapter_name_or_path`` resumes,
merges and ``create_new_adapter`` work as in :mod:`tuneforge.model.lora` (PEFT loads either kind of adapter).

Keys (LLaMA-Factory's): ``oft_block_size`` (default 32) or ``oft_rank`` (blocks per layer; set exactly one, the
other 0), ``oft_target`` (``all`` = every linear layer but the output head), ``module_dropout``,
``additional_target``. Example: ``finetuning_type: oft, oft_block_size: 32, oft_target: q_proj,v_proj``.
"""

from __future__ import annotations

import logging

import torch

from .freeze import num_layers, trainable_layer_ids
from .modules import check_names, linear_leaf_names, lora_targetable_names

logger = logging.getLogger(__name__)


def oft_targets(model: torch.nn.Module, cfg) -> list[str]:
    """``oft_target`` as module names: ``all`` -> every linear layer but the output head; a list is checked."""
    targets = list(cfg.finetuning.oft_target)
    if "all" in targets:
        return linear_leaf_names(model)
    check_names(model, targets, lora_targetable_names(model), "oft_target")
    return targets


def build_oft_config(model: torch.nn.Module, cfg, *, vocab_extended: bool = False):
    """The ``peft.OFTConfig`` of a new adapter. PEFT moves a block size that does not divide a layer's input
    width to the nearest one that does (with a warning), as LLaMA-Factory's OFT runs do."""
    from peft import OFTConfig, TaskType

    from .lora import modules_to_save

    ft = cfg.finetuning
    layers = None
    if ft.use_llama_pro:  # only the expanded blocks carry adapters
        layers = trainable_layer_ids(num_layers(model), ft.freeze_trainable_layers, llama_pro=True)
    config = OFTConfig(
        task_type=TaskType.CAUSAL_LM,
        r=ft.oft_rank,
        oft_block_size=ft.oft_block_size,
        module_dropout=ft.module_dropout,
        target_modules=oft_targets(model, cfg),
        modules_to_save=modules_to_save(model, cfg, vocab_extended=vocab_extended),
        layers_to_transform=layers,
    )
    logger.info("new OFT adapter: r=%d, block size %d, targets %s", config.r, config.oft_block_size,
                sorted(config.target_modules))
    return config

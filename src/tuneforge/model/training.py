"""Changes to the loaded base model before a method is applied: vocabulary size, precision of norms, activation
checkpointing, KV cache, and the fp32-logits flag.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

# Set to True on the base model by ``upcast_lmhead_output``: the loss must compute the logits (lm_head output) in
# float32. Our loss already runs the cross-entropy in fp32 chunk by chunk; it reads this flag through
# :func:`wants_fp32_logits` instead of a forward hook, so the full-vocabulary logits are never stored twice.
UPCAST_LMHEAD_ATTR = "tuneforge_upcast_lmhead_output"
EMBEDDING_MULTIPLE = 64


def wants_fp32_logits(model: torch.nn.Module) -> bool:
    """Whether the loss should compute this model's logits in float32 (``upcast_lmhead_output``).

    Works on the HF model and on a PeftModel around it (PEFT forwards unknown attributes to the base model).
    """
    return bool(getattr(model, UPCAST_LMHEAD_ATTR, False))


def resize_embeddings(model: torch.nn.Module, vocab_size: int) -> bool:
    """Grow the embeddings (and an untied head) to ``vocab_size`` rows padded to a multiple of 64.

    New rows are the mean of the old rows, exactly (transformers' ``mean_resizing`` samples around the mean
    instead). Never shrinks: returns False, unchanged, when the model already has enough rows.
    """
    old_rows = model.get_input_embeddings().weight.size(0)
    if vocab_size <= old_rows:
        return False
    model.resize_token_embeddings(vocab_size, pad_to_multiple_of=EMBEDDING_MULTIPLE, mean_resizing=False)
    weights = {id(w): w for w in (model.get_input_embeddings().weight, _output_weight(model)) if w is not None}
    with torch.no_grad():
        for weight in weights.values():
            weight[old_rows:] = weight[:old_rows].float().mean(dim=0).to(weight.dtype)
    new_rows = model.get_input_embeddings().weight.size(0)
    logger.info("resized the embeddings from %d to %d rows (tokenizer: %d tokens)", old_rows, new_rows, vocab_size)
    return True


def _output_weight(model: torch.nn.Module) -> torch.Tensor | None:
    head = model.get_output_embeddings()
    return None if head is None else head.weight


def upcast_layernorm(model: torch.nn.Module) -> None:
    """Keep the weights of every normalisation layer (LayerNorm, RMSNorm...) in float32 (``upcast_layernorm``).

    Relies on autocast (bf16/fp16 mixed precision) to run the following layers in the compute dtype.
    """
    for module in model.modules():
        if "Norm" in type(module).__name__:
            for param in module.parameters(recurse=False):
                param.data = param.data.float()


def enable_checkpointing(model: torch.nn.Module, cfg) -> None:
    """Activation checkpointing with ``use_reentrant_gc``, plus gradients on the embedding output so that
    checkpointed layers get gradients when the embeddings are frozen (LoRA, freeze, QLoRA).
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        logger.warning("%s does not support activation checkpointing: left off", type(model).__name__)
        return
    kwargs = {"use_reentrant": cfg.model.use_reentrant_gc}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()
    logger.info("activation checkpointing on (use_reentrant=%s)", cfg.model.use_reentrant_gc)


def prepare_for_training(model: torch.nn.Module, cfg, *, checkpointing: bool = True) -> None:
    """Training-time settings of the base model, before the method: kbit preparation (QLoRA), norm upcast,
    checkpointing (on unless ``disable_gradient_checkpointing``; ``checkpointing=False`` when another library owns
    it), ``use_cache=False``, and the fp32-logits flag.
    """
    from .quantization import is_quantized

    if is_quantized(model):
        from peft import prepare_model_for_kbit_training

        # Checkpointing is ours (below), so PEFT only freezes the base and casts the non-quantized weights to fp32.
        prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if cfg.model.upcast_layernorm:
        upcast_layernorm(model)
    if checkpointing and not cfg.model.disable_gradient_checkpointing:
        enable_checkpointing(model, cfg)
    model.config.use_cache = False
    if cfg.model.upcast_lmhead_output:
        setattr(model, UPCAST_LMHEAD_ATTR, True)

"""``load_model``: base model -> vocabulary -> training settings -> fine-tuning method, in that order.

1. Check that every requested kernel/package can run here (attention kernel, Liger, Unsloth, bitsandbytes): a
   clear :class:`ModelLoadError` before any weight is read.
2. Read the config; RoPE scaling; ``use_cache=False`` in training; Liger patches (they act on the classes).
3. Build the model: ``from_pretrained`` in the compute dtype (or ``from_config`` with ``train_from_scratch``,
   seeded), with the attention kernel and bnb quantization; Unsloth's loader on its path.
4. Grow the embeddings when the tokenizer outgrew them (new rows = mean of the old ones).
5. Training: kbit preparation, norm upcast, activation checkpointing, fp32-logits flag.
6. The method: LoRA (merge/resume adapters, or a new adapter), freeze, or full.
7. Training: trainable parameters in fp32 unless ``pure_bf16``, train mode. Inference: no gradients, eval mode.
"""

from __future__ import annotations

import logging

import torch

from .compile import compile_decoder_layers
from .freeze import apply_freeze, apply_full
from .hub import explain_hub_errors, hub_kwargs, load_config, model_source
from .kernels import apply_liger, attn_implementation, check_bitsandbytes, check_liger
from .lora import apply_lora
from .params import cast_trainable_params, compute_dtype, inference_dtype, log_param_status, trainable_summary
from .quantization import quantization_kwargs
from .rope import configure_rope
from .tokenizer import num_added_tokens
from .training import prepare_for_training, resize_embeddings
from .unsloth import check_unsloth_config, load_unsloth_model, unsloth_adapter_builder
from .varlen import training_attn_implementation

logger = logging.getLogger(__name__)


def load_model(cfg, tokenizer, *, is_trainable: bool) -> torch.nn.Module:
    """The causal LM of ``cfg.model`` with ``cfg.finetuning``'s method applied.

    Training: a ``PeftModel`` for lora and oft, the transformers model for freeze/full, with exactly the method's
    parameters trainable (fp32 unless ``pure_bf16``), activation checkpointing on unless disabled, ``use_cache``
    off, in train mode. Inference (``is_trainable=False``): adapters merged, nothing trainable, eval mode.
    ``tokenizer`` (from :func:`load_tokenizer`, or None) decides whether the embeddings must grow.
    Raises :class:`ModelLoadError` for anything the user must fix (missing package, offline hub id, bad names).
    """
    use_unsloth = is_trainable and cfg.model.use_unsloth
    _check_requirements(cfg, is_trainable=is_trainable, use_unsloth=use_unsloth)
    source = model_source(cfg)
    config = load_config(cfg, source)
    configure_rope(config, cfg, is_trainable=is_trainable)
    if is_trainable:
        config.use_cache = False
        if cfg.model.enable_liger_kernel:
            apply_liger(cfg, config.model_type)
    model = _instantiate(cfg, source, config, is_trainable=is_trainable, use_unsloth=use_unsloth)
    vocab_extended = _fit_vocabulary(model, tokenizer, cfg)
    if is_trainable:
        prepare_for_training(model, cfg, checkpointing=not use_unsloth)
    model = _apply_method(model, cfg, is_trainable=is_trainable, vocab_extended=vocab_extended,
                          use_unsloth=use_unsloth)
    _finish(model, cfg, is_trainable=is_trainable)
    if is_trainable:
        compile_decoder_layers(model, cfg)
    return model


def _check_requirements(cfg, *, is_trainable: bool, use_unsloth: bool) -> None:
    attn_implementation(cfg)
    if is_trainable and cfg.model.enable_liger_kernel:
        check_liger(cfg)
    if use_unsloth:
        check_unsloth_config(cfg)
    elif cfg.model.use_unsloth:
        logger.info("use_unsloth applies to training only: inference uses transformers")
    if cfg.model.quantization_bit is not None:
        check_bitsandbytes(cfg)


def _instantiate(cfg, source: str, config, *, is_trainable: bool, use_unsloth: bool) -> torch.nn.Module:
    dtype = compute_dtype(cfg) if is_trainable else inference_dtype(cfg)
    if use_unsloth:
        return load_unsloth_model(cfg, source, dtype)
    attn = attn_implementation(cfg)
    if is_trainable:
        attn = training_attn_implementation(cfg, attn, config)
    attn_kwargs = {"attn_implementation": attn} if attn else {}
    if cfg.model.train_from_scratch:
        return _from_scratch(cfg, config, dtype, attn_kwargs)
    from transformers import AutoModelForCausalLM

    kwargs = {**hub_kwargs(cfg), **attn_kwargs, **quantization_kwargs(cfg, dtype, is_trainable=is_trainable)}
    with explain_hub_errors("model", cfg.model.model_name_or_path):
        return AutoModelForCausalLM.from_pretrained(source, config=config, dtype=dtype, **kwargs)


def _from_scratch(cfg, config, dtype, attn_kwargs: dict) -> torch.nn.Module:
    """Random weights from the config, drawn under ``seed`` (same seed, same weights) without touching the
    caller's RNG."""
    from transformers import AutoModelForCausalLM

    from .errors import ModelLoadError

    if cfg.model.quantization_bit is not None:
        raise ModelLoadError("train_from_scratch builds random weights and cannot be quantized (quantization_bit)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.training.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype if isinstance(dtype, torch.dtype) else None,
                                                 trust_remote_code=cfg.model.trust_remote_code, **attn_kwargs)
    logger.info("train_from_scratch: random weights (seed %d)", cfg.training.seed)
    return model


def _fit_vocabulary(model: torch.nn.Module, tokenizer, cfg) -> bool:
    """Resize the embeddings to the tokenizer; returns whether the vocabulary counts as extended (``resize_vocab``
    or tokens added by ``load_tokenizer``), which makes LoRA train the embeddings and the head."""
    extended = cfg.model.resize_vocab or (tokenizer is not None and num_added_tokens(tokenizer) > 0)
    resized = tokenizer is not None and resize_embeddings(model, len(tokenizer))
    if resized and not extended:
        logger.warning("the tokenizer has more tokens than the model has embeddings: resized; set resize_vocab: "
                       "true to also train the new rows with LoRA")
    return extended


def _apply_method(model: torch.nn.Module, cfg, *, is_trainable: bool, vocab_extended: bool,
                  use_unsloth: bool) -> torch.nn.Module:
    method = cfg.finetuning.finetuning_type
    if method in ("lora", "oft"):
        builder = unsloth_adapter_builder(cfg) if use_unsloth else None
        return apply_lora(model, cfg, is_trainable=is_trainable, vocab_extended=vocab_extended, new_adapter=builder)
    if not is_trainable:
        return model
    return apply_freeze(model, cfg) if method == "freeze" else apply_full(model)


def _finish(model: torch.nn.Module, cfg, *, is_trainable: bool) -> None:
    if is_trainable:
        if not cfg.finetuning.pure_bf16:
            cast_trainable_params(model, torch.float32)
        model.train()
    else:
        model.requires_grad_(False)
        model.eval()
    trainable_summary(model)
    if cfg.model.print_param_status:
        log_param_status(model)

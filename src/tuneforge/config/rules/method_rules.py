"""Errors about the fine-tuning method, quantization, precision and parallelism."""

from __future__ import annotations

from collections.abc import Iterator

from . import Ctx, Finding, rule


@rule("error")
def lora_only_options(ctx: Ctx) -> Iterator[Finding]:
    """DoRA, rsLoRA, PiSSA and LoRA+ exist only for finetuning_type: lora; adapters for lora and oft."""
    if ctx.ft.finetuning_type == "lora":
        return
    options = {
        "use_dora": ctx.ft.use_dora,
        "use_rslora": ctx.ft.use_rslora,
        "pissa_init": ctx.ft.pissa_init,
        "loraplus_lr_ratio": ctx.ft.loraplus_lr_ratio is not None,
    }
    if ctx.ft.finetuning_type != "oft":
        options |= {"create_new_adapter": ctx.ft.create_new_adapter,
                    "adapter_name_or_path": bool(ctx.model.adapter_name_or_path)}
    for key, on in options.items():
        if on:
            yield key, f"{key} needs finetuning_type: lora (it is {ctx.ft.finetuning_type})"


@rule("error")
def oft_rank_or_block_size(ctx: Ctx) -> Iterator[Finding]:
    """PEFT's OFT takes the number of blocks (oft_rank) or their size (oft_block_size), exactly one non-zero."""
    if ctx.ft.finetuning_type != "oft" or (ctx.ft.oft_rank == 0) != (ctx.ft.oft_block_size == 0):
        return
    if ctx.ft.oft_rank:
        yield "oft_rank", f"give oft_rank ({ctx.ft.oft_rank}) or oft_block_size ({ctx.ft.oft_block_size}), not " \
                          "both (rank x block size = the layer width): add oft_block_size: 0 to use oft_rank"
    else:
        yield "oft_block_size", "oft_rank and oft_block_size are both 0: set one of them (default oft_block_size: 32)"


@rule("error")
def quantization_limits(ctx: Ctx) -> Iterator[Finding]:
    """A quantized base can only carry LoRA or OFT adapters, and cannot be changed underneath them."""
    if ctx.model.quantization_bit is None:
        return
    if ctx.ft.finetuning_type not in ("lora", "oft"):
        yield "quantization_bit", f"a quantized model can only be trained with LoRA (QLoRA) or OFT, not " \
                                  f"{ctx.ft.finetuning_type}; set finetuning_type: lora"
    if ctx.ft.pissa_init:
        yield "pissa_init", "pissa_init rewrites the base weights and cannot be used with quantization_bit"
    if ctx.model.resize_vocab:
        yield "resize_vocab", "resize_vocab cannot resize a quantized model; remove quantization_bit or resize_vocab"
    adapters = ctx.model.adapter_name_or_path or []
    if len(adapters) > 1:
        yield "adapter_name_or_path", "a quantized base cannot merge adapters: give only one adapter"
    if adapters and ctx.ft.create_new_adapter:
        yield "create_new_adapter", "create_new_adapter merges adapters, which a quantized base cannot do"
    if ctx.model.quantization_method != "bnb":
        yield "quantization_method", f"on-the-fly quantization supports bnb only, not " \
                                     f"{ctx.model.quantization_method}"


@rule("error")
def llama_pro_method(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.use_llama_pro and ctx.ft.finetuning_type == "full":
        yield "use_llama_pro", "use_llama_pro needs finetuning_type freeze or lora"


@rule("error")
def pissa_convert_needs_init(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.pissa_convert and not ctx.ft.pissa_init:
        yield "pissa_convert", "pissa_convert converts a PiSSA adapter: it needs pissa_init: true"


@rule("error")
def freeze_layers_nonzero(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.finetuning_type == "freeze" and ctx.ft.freeze_trainable_layers == 0:
        yield "freeze_trainable_layers", "freeze_trainable_layers: 0 trains no layer; use n > 0 (last n) or " \
                                         "n < 0 (first |n|)"


@rule("error")
def precision_flags(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.bf16 and ctx.tr.fp16:
        yield "fp16", "bf16 and fp16 are both set; choose one"
    if ctx.ft.pure_bf16 and ctx.tr.fp16:
        yield "pure_bf16", "pure_bf16 and fp16 are both set; choose one"


@rule("error")
def zero3_limits(ctx: Ctx) -> Iterator[Finding]:
    """Features that need whole weights on every rank do not work under ZeRO-3."""
    if ctx.zero_stage != 3:
        return
    if ctx.ft.pissa_init:
        yield "pissa_init", "pissa_init cannot run under DeepSpeed ZeRO-3 (it needs the whole weights for the SVD)"
    if ctx.ft.pure_bf16:
        yield "pure_bf16", "pure_bf16 cannot be used with DeepSpeed ZeRO-3; use bf16 and let DeepSpeed cast"
    if ctx.model.use_unsloth:
        yield "use_unsloth", "Unsloth does not support DeepSpeed ZeRO-3"
    if ctx.ev.predict_with_generate:
        yield "predict_with_generate", "predict_with_generate cannot run under ZeRO-3; predict in a separate run"


@rule("error")
def generate_with_accuracy(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ev.predict_with_generate and ctx.ft.compute_accuracy:
        yield "compute_accuracy", "compute_accuracy needs logits, predict_with_generate returns text; keep one"


@rule("error")
def inference_backend(ctx: Ctx) -> Iterator[Finding]:
    if ctx.model.infer_backend != "huggingface":
        yield "infer_backend", f"tuneforge serves and predicts with transformers only; set infer_backend: " \
                               f"huggingface (got {ctx.model.infer_backend})"


@rule("error")
def device_map_in_training(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.do_train and ctx.model.quantization_device_map == "auto":
        yield "quantization_device_map", "quantization_device_map: auto is for inference; remove it for training"


@rule("error")
def export_options(ctx: Ctx) -> Iterator[Finding]:
    if ctx.model.export_quantization_bit is not None and not ctx.model.export_quantization_dataset:
        yield "export_quantization_bit", "export_quantization_bit needs export_quantization_dataset (calibration)"
    if ctx.model.export_legacy_format:
        yield "export_legacy_format", "tuneforge exports safetensors only (pickle .bin files can run code when " \
                                      "loaded); remove export_legacy_format"

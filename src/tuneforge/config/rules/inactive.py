"""Notices: keys the user set that have no effect in this setup (the seed's 'Inactive' column)."""

from __future__ import annotations

from collections.abc import Iterator

from ...catalog import LOSSES, STAGES, loss_keys, stage, stage_keys, stages_reading
from ..schema import all_specs
from . import Ctx, Finding, rule

_LORA_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target", "loraplus_lr_embedding",
              "pissa_iter", "pissa_convert")
_OFT_KEYS = ("oft_rank", "oft_block_size", "oft_target", "module_dropout")
_FREEZE_KEYS = ("freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules")
_GENERATION_KEYS = tuple(k for k, s in all_specs().items() if s.group == "generating")


def _set_keys(ctx: Ctx, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if ctx.is_set(k)]


@rule("notice")
def lora_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.finetuning_type == "lora":
        return
    for key in _set_keys(ctx, _LORA_KEYS):
        if not (key == "additional_target" and ctx.ft.finetuning_type == "oft"):
            yield key, f"ignored: {key} only applies to finetuning_type: lora (it is {ctx.ft.finetuning_type})"


@rule("notice")
def oft_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.finetuning_type == "oft":
        return
    for key in _set_keys(ctx, _OFT_KEYS):
        yield key, f"ignored: {key} only applies to finetuning_type: oft (it is {ctx.ft.finetuning_type})"


@rule("notice")
def freeze_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.finetuning_type == "freeze":
        return
    for key in _set_keys(ctx, _FREEZE_KEYS):
        yield key, f"ignored: {key} only applies to finetuning_type: freeze (it is {ctx.ft.finetuning_type})"


@rule("notice")
def generation_keys_in_training(ctx: Ctx) -> Iterator[Finding]:
    """Decoding settings matter for chat/api/predict, predict_with_generate and PPO rollouts only."""
    if not ctx.tr.do_train or ctx.ev.predict_with_generate or stage(ctx.stage).generates:
        return
    for key in _set_keys(ctx, _GENERATION_KEYS):
        yield key, f"ignored during training: {key} is used by chat, api, predict, predict_with_generate and ppo"


@rule("notice")
def stage_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    """Keys the stage catalog gives to other stages (ppo_epochs in sft, ref_model in rm, ...)."""
    mine = stage(ctx.stage).keys
    for key in _set_keys(ctx, stage_keys()):
        if key not in mine:
            owners = " or ".join(stages_reading(key))
            yield key, f"ignored: {key} only applies to stage {owners} (stage is {ctx.stage})"


@rule("notice")
def pref_loss_specific(ctx: Ctx) -> Iterator[Finding]:
    """Keys the loss catalog gives to other preference losses, and a reference model for a reference-free one."""
    if stage(ctx.stage).reference != "loss":
        return
    loss = LOSSES[ctx.ft.pref_loss]
    for key in _set_keys(ctx, loss_keys()):
        if key not in loss.keys:
            owners = " or ".join(name for name, spec in LOSSES.items() if key in spec.keys)
            yield key, f"ignored: {key} only applies to pref_loss: {owners} (it is {loss.name})"
    if loss.reference_free and ctx.ft.ref_model:
        yield "ref_model", f"ignored: pref_loss {loss.name} is reference-free"


@rule("notice")
def eval_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ev.eval_strategy != "no":
        return
    for key in _set_keys(ctx, ("eval_steps", "eval_delay", "eval_on_start")):
        yield key, f"ignored: {key} applies when eval_strategy is steps or epoch (it is no)"


@rule("notice")
def quantization_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.model.quantization_bit is not None:
        return
    for key in _set_keys(ctx, ("quantization_type", "double_quantization", "quantization_method")):
        yield key, f"ignored: {key} applies only with quantization_bit"


@rule("notice")
def pissa_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    if ctx.ft.finetuning_type == "lora" and not ctx.ft.pissa_init and ctx.is_set("pissa_iter"):
        yield "pissa_iter", "ignored: pissa_iter applies only with pissa_init: true"


@rule("notice")
def hf_duplicates(ctx: Ctx) -> Iterator[Finding]:
    """transformers keys that tuneforge drives through its own keys."""
    if ctx.is_set("gradient_checkpointing") or ctx.is_set("activation_checkpointing"):
        key = "gradient_checkpointing" if ctx.is_set("gradient_checkpointing") else "activation_checkpointing"
        yield key, "ignored: gradient checkpointing is on by default; use disable_gradient_checkpointing to turn " \
                   "it off"
    if ctx.tr.use_liger_kernel:
        yield "use_liger_kernel", "read as enable_liger_kernel (the LLaMA-Factory key tuneforge uses)"


@rule("notice")
def neat_packing_forces_packing(ctx: Ctx) -> Iterator[Finding]:
    if ctx.data.neat_packing and ctx.is_set("packing") and ctx.res.sources.get("packing") == "derived":
        yield "packing", "packing: false is overridden: neat_packing implies packing"


@rule("notice")
def template_in_pretraining(ctx: Ctx) -> Iterator[Finding]:
    if stage(ctx.stage).processor == "pretrain" and ctx.data.template:
        yield "template", f"ignored in stage {ctx.stage}: pretraining text is tokenized without a chat template"


@rule("notice")
def version_check_flag(ctx: Ctx) -> Iterator[Finding]:
    if ctx.cfg.env.DISABLE_VERSION_CHECK:
        yield "DISABLE_VERSION_CHECK", "no effect: tuneforge does not pin library versions"


@rule("notice")
def padding_free_inactive(ctx: Ctx) -> Iterator[Finding]:
    """padding_free changes how pt/sft batches reach attention; elsewhere, or where it cannot apply, it is moot."""
    if not ctx.is_set("padding_free") or not ctx.data.padding_free:
        return
    if not stage(ctx.stage).packable:
        packable = "/".join(s.name for s in STAGES.values() if s.packable)
        yield "padding_free", f"ignored in stage {ctx.stage}: only {packable} batches are flattened"
    elif ctx.data.neat_packing:
        yield "padding_free", "no effect: neat_packing batches are always padding-free"
    elif ctx.data.packing:
        yield "padding_free", "ignored with packing (not neat): packed rows attend across examples, so they stay rows"
    elif ctx.cfg.model.flash_attn == "disabled":
        yield "padding_free", "ignored with flash_attn: disabled (eager attention has no varlen kernel); use sdpa"


@rule("notice")
def liger_kernels_under_compile(ctx: Ctx) -> Iterator[Finding]:
    """With torch_compile, inductor fuses what Liger's norm/RoPE/SwiGLU kernels would; only its fused CE stays."""
    if ctx.cfg.model.enable_liger_kernel and ctx.tr.torch_compile:
        yield "enable_liger_kernel", "with torch_compile only Liger's fused linear cross-entropy is used; the " \
                                     "compiled layers fuse norms, RoPE and SwiGLU themselves"

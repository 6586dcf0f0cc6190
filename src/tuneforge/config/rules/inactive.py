"""Notices: keys the user set that have no effect in this setup (the seed's 'Inactive' column)."""

from __future__ import annotations

from collections.abc import Iterator

from ..schema import all_specs
from . import Ctx, Finding, rule

_LORA_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target", "loraplus_lr_embedding",
              "pissa_iter", "pissa_convert")
_OFT_KEYS = ("oft_rank", "oft_block_size", "oft_target", "module_dropout")
_FREEZE_KEYS = ("freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules")
_GENERATION_KEYS = tuple(k for k, s in all_specs().items() if s.group == "generating")
_STAGE_KEYS = {
    "dpo": ("pref_bco_weight", "dpo_label_smoothing", "simpo_gamma", "ld_alpha"),
    "kto": ("kto_chosen_weight", "kto_rejected_weight"),
    "ppo": ("ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target", "ppo_whiten_rewards", "reward_model",
            "reward_model_adapters", "reward_model_quantization_bit", "reward_model_type"),
}
_SHARED_PREF = {"pref_beta": ("dpo", "kto"), "pref_ftx": ("dpo", "kto"), "pref_loss": ("dpo",),
                "ref_model": ("dpo", "kto", "ppo"), "ref_model_adapters": ("dpo", "kto", "ppo"),
                "ref_model_quantization_bit": ("dpo", "kto", "ppo")}


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
    if not ctx.tr.do_train or ctx.ev.predict_with_generate or ctx.stage == "ppo":
        return
    for key in _set_keys(ctx, _GENERATION_KEYS):
        yield key, f"ignored during training: {key} is used by chat, api, predict, predict_with_generate and ppo"


@rule("notice")
def stage_keys_inactive(ctx: Ctx) -> Iterator[Finding]:
    for stage, keys in _STAGE_KEYS.items():
        if ctx.stage != stage:
            for key in _set_keys(ctx, keys):
                yield key, f"ignored: {key} only applies to stage {stage} (stage is {ctx.stage})"
    for key, stages in _SHARED_PREF.items():
        if ctx.stage not in stages and ctx.is_set(key):
            yield key, f"ignored: {key} only applies to stage {' or '.join(stages)} (stage is {ctx.stage})"


@rule("notice")
def pref_loss_specific(ctx: Ctx) -> Iterator[Finding]:
    if ctx.stage != "dpo":
        return
    if ctx.is_set("simpo_gamma") and ctx.ft.pref_loss != "simpo":
        yield "simpo_gamma", f"ignored: simpo_gamma only applies to pref_loss: simpo (it is {ctx.ft.pref_loss})"
    if ctx.ft.pref_loss in ("orpo", "simpo") and ctx.ft.ref_model:
        yield "ref_model", f"ignored: pref_loss {ctx.ft.pref_loss} is reference-free"


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
    if ctx.stage == "pt" and ctx.data.template:
        yield "template", "ignored in stage pt: pretraining text is tokenized without a chat template"


@rule("notice")
def version_check_flag(ctx: Ctx) -> Iterator[Finding]:
    if ctx.cfg.env.DISABLE_VERSION_CHECK:
        yield "DISABLE_VERSION_CHECK", "no effect: tuneforge does not pin library versions"


@rule("notice")
def padding_free_inactive(ctx: Ctx) -> Iterator[Finding]:
    """padding_free changes how pt/sft batches reach attention; elsewhere, or where it cannot apply, it is moot."""
    if not ctx.is_set("padding_free") or not ctx.data.padding_free:
        return
    if ctx.stage not in ("pt", "sft"):
        yield "padding_free", f"ignored in stage {ctx.stage}: only pt/sft batches are flattened"
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

"""Notices about the preference stages (dpo, kto): settings that do nothing here, and where the reference comes from.

What LLaMA-Factory silently ignores (a BCO weight on a reference-free loss, reference-model options without a
reference model) is said out loud; so is the second full model that full/freeze dpo and kto load as reference.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...catalog import LOSSES, stage, uses_reference
from . import Ctx, Finding, rule


def _uses_reference(ctx: Ctx) -> bool:
    return uses_reference(stage(ctx.stage), ctx.ft.pref_loss)


@rule("notice")
def bco_needs_reference(ctx: Ctx) -> Iterator[Finding]:
    """BCO scores implicit rewards log(π/π_ref): there is nothing to mix into a reference-free loss."""
    if stage(ctx.stage).reference == "loss" and ctx.ft.pref_bco_weight > 0 and LOSSES[ctx.ft.pref_loss].reference_free:
        yield "pref_bco_weight", (f"ignored: pref_bco_weight mixes BCO into losses with a reference model; "
                                  f"pref_loss {ctx.ft.pref_loss} is reference-free")


@rule("notice")
def ref_model_options_need_ref_model(ctx: Ctx) -> Iterator[Finding]:
    if stage(ctx.stage).reference == "never" or ctx.ft.ref_model:
        return
    for key in ("ref_model_adapters", "ref_model_quantization_bit"):
        if ctx.is_set(key) and ctx.cfg.value(key) is not None:
            yield key, f"ignored: {key} applies to ref_model, which is not set; set ref_model or remove {key}"


@rule("notice")
def reference_is_a_second_copy(ctx: Ctx) -> Iterator[Finding]:
    """Full/freeze training cannot disable an adapter to recover the base: the reference is a frozen copy."""
    if not (ctx.tr.do_train and _uses_reference(ctx)) or ctx.ft.ref_model or ctx.ft.finetuning_type in ("lora", "oft"):
        return
    yield "finetuning_type", (f"stage {ctx.stage} with finetuning_type: {ctx.ft.finetuning_type} loads a second, "
                              "frozen copy of the model as reference (one more set of weights in memory); "
                              "finetuning_type: lora uses the same weights with the adapter disabled instead")

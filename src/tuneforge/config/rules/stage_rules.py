"""Errors tied to the training stage (LLaMA-Factory parser rules §3.1, §3.6, plus the ones it misses)."""

from __future__ import annotations

from collections.abc import Iterator

from ...catalog import STAGES, stage, uses_reference
from . import Ctx, Finding, rule


@rule("error")
def stage_exclusive_options(ctx: Ctx) -> Iterator[Finding]:
    """Keys a stage owns outright (sft: train_on_prompt, mask_history, neat_packing, predict_with_generate)."""
    for owner in STAGES.values():
        if owner.name == ctx.stage:
            continue
        for key in owner.exclusive_keys:
            if ctx.cfg.value(key):
                yield key, (f"{key} only works with stage: {owner.name} (stage is {ctx.stage}); remove it or set "
                            f"stage: {owner.name}")


@rule("error")
def packing_stage(ctx: Ctx) -> Iterator[Finding]:
    """Packing concatenates single sequences: pairwise and KTO batches cannot be packed."""
    if ctx.data.packing and not stage(ctx.stage).packable and ctx.is_set("packing"):
        packable = " or ".join(s.name for s in STAGES.values() if s.packable)
        yield "packing", f"packing works with stage {packable}, not {ctx.stage}; remove packing"


@rule("error")
def predict_needs_generate(ctx: Ctx) -> Iterator[Finding]:
    if ctx.stage == "sft" and ctx.ev.do_predict and not ctx.ev.predict_with_generate:
        yield "do_predict", "do_predict in sft writes generated text: also set predict_with_generate: true"


@rule("error")
def best_model_stage(ctx: Ctx) -> Iterator[Finding]:
    if not stage(ctx.stage).best_model and ctx.ev.load_best_model_at_end:
        yield "load_best_model_at_end", f"load_best_model_at_end is not available for stage {ctx.stage}; remove it"


@rule("error")
def ppo_requirements(ctx: Ctx) -> Iterator[Finding]:
    """PPO trains from rollouts scored by a reward model."""
    if ctx.stage != "ppo":
        return
    if not ctx.ft.reward_model:
        yield "reward_model", "stage ppo needs reward_model (a reward model path, adapter, or an API URL)"
    if ctx.ft.reward_model_type == "lora" and ctx.ft.finetuning_type != "lora":
        yield "reward_model_type", "reward_model_type: lora needs finetuning_type: lora; use reward_model_type: full"
    if ctx.ft.reward_model_type == "api" and ctx.ft.reward_model and not ctx.ft.reward_model.startswith("http"):
        yield "reward_model", f"reward_model_type: api needs an http(s) URL, got {ctx.ft.reward_model!r}"
    if ctx.model.shift_attn:
        yield "shift_attn", "shift_attn cannot be used with stage ppo"
    if ctx.model.use_unsloth and ctx.ft.reward_model_type == "lora":
        yield "use_unsloth", "use_unsloth cannot share the base with a LoRA reward model; use reward_model_type: full"



@rule("error")
def train_only_stage(ctx: Ctx) -> Iterator[Finding]:
    if stage(ctx.stage).train_only and not ctx.tr.do_train:
        yield "do_train", f"stage {ctx.stage} only trains: set do_train: true"


@rule("error")
def train_needs_dataset(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.do_train and not ctx.data.dataset and not ctx.data.tokenized_path:
        yield "dataset", "do_train needs a dataset (names from dataset_info.json, or a path to a data file)"


@rule("error")
def eval_needs_data(ctx: Ctx) -> Iterator[Finding]:
    """Evaluation or prediction with nothing to evaluate on."""
    if not ctx.wants_eval or ctx.data.eval_dataset or ctx.data.val_size > 1e-6 or ctx.data.tokenized_path:
        return
    key = "do_eval" if ctx.ev.do_eval else "do_predict" if ctx.ev.do_predict else "eval_strategy"
    yield key, "evaluation is requested but there is nothing to evaluate on: set eval_dataset or val_size"


@rule("error")
def pissa_stage(ctx: Ctx) -> Iterator[Finding]:
    """PiSSA changes the base weights, so a reference model cannot be the base with the adapter off."""
    if not ctx.ft.pissa_init:
        return
    if uses_reference(stage(ctx.stage), ctx.ft.pref_loss):
        yield "pissa_init", (f"pissa_init cannot be used with stage {ctx.stage} (it needs the unchanged base as "
                             "reference); remove pissa_init")


@rule("error")
def early_stopping_needs_eval(ctx: Ctx) -> Iterator[Finding]:
    """Early stopping watches an eval metric, so it needs evaluation."""
    if ctx.ft.early_stopping_steps is None:
        return
    if ctx.ev.eval_strategy == "no":
        yield "early_stopping_steps", "early_stopping_steps needs evaluation: set eval_strategy: steps and eval data"

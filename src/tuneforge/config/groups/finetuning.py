"""Finetuning group: stage, method and its LoRA / OFT / freeze / RLHF parts (LLaMA-Factory's FinetuningArguments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...catalog import LOSS_NAMES, STAGE_NAMES
from ..fields import opt


@dataclass
class FinetuningArgs:
    """What is trained and with which objective."""

    stage: str = opt("sft", "Training stage.", choices=STAGE_NAMES)
    finetuning_type: Literal["lora", "oft", "freeze", "full"] = opt("lora", "Which weights are trained.")
    pure_bf16: bool = opt(False, "Train in bf16 without mixed precision (trainable weights stay bf16).")
    use_llama_pro: bool = opt(False, "Train only the expanded blocks (LLaMA Pro).")
    compute_accuracy: bool = opt(False, "Report token accuracy in evaluation (sft).")
    disable_shuffling: bool = opt(False, "Read the training data in order.")
    early_stopping_steps: int | None = opt(
        None, "Stop when the eval metric has not improved for this many evaluations.", ge=1
    )
    # LoRA
    lora_rank: int = opt(8, "LoRA rank r.", ge=1)
    lora_alpha: int | None = opt(None, "LoRA scale alpha; empty means 2 x lora_rank.", gt=0)
    lora_dropout: float = opt(0.0, "Dropout on the LoRA input.", ge=0, lt=1)
    lora_target: list[str] = opt(
        None, "Comma list of module names for LoRA, or 'all' (every linear layer but the output head).",
        factory=lambda: ["all"], listy=True,
    )
    additional_target: list[str] | None = opt(
        None, "Comma list of extra modules trained fully and saved with the adapter.", listy=True
    )
    loraplus_lr_ratio: float | None = opt(None, "LoRA+: learning-rate ratio of B to A.", gt=0)
    loraplus_lr_embedding: float = opt(1e-6, "LoRA+: learning rate of embedding adapters.", ge=0)
    use_rslora: bool = opt(False, "Rank-stabilised LoRA: scale by alpha / sqrt(r).")
    use_dora: bool = opt(False, "Weight-decomposed LoRA (DoRA).")
    pissa_init: bool = opt(False, "Initialise LoRA with PiSSA (principal singular vectors).")
    pissa_iter: int = opt(16, "Fast-SVD iterations for PiSSA; -1 for the exact SVD.", ge=-1)
    pissa_convert: bool = opt(False, "Also save the PiSSA adapter converted to a plain LoRA adapter.")
    create_new_adapter: bool = opt(False, "Merge all given adapters and train a new one.")
    # OFT (orthogonal fine-tuning through PEFT); additional_target and create_new_adapter apply too
    oft_rank: int = opt(0, "OFT: number of blocks per layer; 0 when oft_block_size is given (set exactly one).", ge=0)
    oft_block_size: int = opt(32, "OFT: size of each orthogonal block; 0 when oft_rank is given.", ge=0)
    oft_target: list[str] = opt(
        None, "Comma list of module names for OFT, or 'all' (every linear layer but the output head).",
        factory=lambda: ["all"], listy=True,
    )
    module_dropout: float = opt(0.0, "OFT: probability of dropping a whole orthogonal block in training.", ge=0, lt=1)
    # freeze
    freeze_trainable_layers: int = opt(2, "Train the last n layers (n > 0) or the first |n| layers (n < 0).")
    freeze_trainable_modules: list[str] = opt(
        None, "Comma list of sub-modules trained inside those layers, or 'all'.", factory=lambda: ["all"],
        listy=True,
    )
    freeze_extra_modules: list[str] | None = opt(
        None, "Comma list of modules outside the layers also trained (e.g. embed_tokens,norm).", listy=True
    )
    # RLHF
    pref_beta: float = opt(0.1, "beta of DPO, KTO, ORPO and SimPO.", gt=0)
    pref_ftx: float = opt(0.0, "Weight of the SFT loss on the chosen response (dpo, kto).", ge=0)
    pref_bco_weight: float = opt(0.0, "Weight of the BCO loss mixed into DPO.", ge=0)
    pref_loss: str = opt("sigmoid", "DPO loss variant.", choices=LOSS_NAMES)
    dpo_label_smoothing: float = opt(0.0, "cDPO label smoothing (sigmoid loss only).", ge=0, le=0.5)
    kto_chosen_weight: float = opt(1.0, "KTO weight of desirable examples.", gt=0)
    kto_rejected_weight: float = opt(1.0, "KTO weight of undesirable examples.", gt=0)
    simpo_gamma: float = opt(0.5, "SimPO target reward margin.", ge=0)
    ppo_buffer_size: int = opt(1, "Mini-batches gathered per PPO optimisation step.", ge=1)
    ppo_epochs: int = opt(4, "PPO epochs per batch of rollouts.", ge=1)
    ppo_score_norm: bool = opt(False, "Normalise reward-model scores.")
    ppo_target: float = opt(6.0, "Target KL of the adaptive KL controller.", gt=0)
    ppo_whiten_rewards: bool = opt(False, "Whiten rewards before computing advantages.")
    ref_model: str | None = opt(None, "Reference model for DPO/KTO/PPO (default: the base with adapters off).")
    ref_model_adapters: list[str] | None = opt(None, "Adapters of the reference model.", listy=True)
    ref_model_quantization_bit: Literal[4, 8] | None = opt(None, "Quantize the reference model.")
    reward_model: str | None = opt(None, "Reward model of PPO: path, adapter or API URL.")
    reward_model_adapters: list[str] | None = opt(None, "Adapters of the reward model.", listy=True)
    reward_model_quantization_bit: Literal[4, 8] | None = opt(None, "Quantize the reward model.")
    reward_model_type: Literal["lora", "full", "api"] = opt("lora", "Kind of reward model for PPO.")
    ld_alpha: float | None = opt(None, "LD-DPO weight of the verbose part of the response.", ge=0, le=1)

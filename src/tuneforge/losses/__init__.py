"""Losses as pure functions: the memory-lean LM loss and log-probabilities, and the preference/RL objectives.

One module per family: :mod:`.ce` (pt/sft), :mod:`.logps` (log-probabilities for dpo/kto/ppo), :mod:`.reward`
(rm), :mod:`.dpo`, :mod:`.kto`, :mod:`.ppo`, :mod:`.running` (running moments). Each loss cites its paper.
"""

from .ce import IGNORE_INDEX, causal_lm_loss, chunked_cross_entropy, shift_labels
from .dpo import (
    PREF_LOSSES,
    bco_loss,
    dpo_rewards,
    hinge_dpo_loss,
    ipo_loss,
    mix_bco,
    orpo_loss,
    sft_term,
    sigmoid_dpo_loss,
    simpo_loss,
)
from .kto import kto_kl_estimate, kto_loss
from .logps import logits_token_logps, model_token_logps, sequence_logps, token_logps
from .ppo import (
    AdaptiveKLController,
    clip_fraction,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalty_rewards,
    masked_mean,
    score_norm,
    whiten,
)
from .reward import pairwise_accuracy, pairwise_reward_loss
from .running import RunningMoments

__all__ = [
    "IGNORE_INDEX",
    "PREF_LOSSES",
    "AdaptiveKLController",
    "RunningMoments",
    "bco_loss",
    "causal_lm_loss",
    "chunked_cross_entropy",
    "clip_fraction",
    "clipped_policy_loss",
    "clipped_value_loss",
    "dpo_rewards",
    "gae",
    "hinge_dpo_loss",
    "ipo_loss",
    "kl_penalty_rewards",
    "kto_kl_estimate",
    "kto_loss",
    "logits_token_logps",
    "masked_mean",
    "mix_bco",
    "model_token_logps",
    "orpo_loss",
    "pairwise_accuracy",
    "pairwise_reward_loss",
    "score_norm",
    "sequence_logps",
    "sft_term",
    "shift_labels",
    "sigmoid_dpo_loss",
    "simpo_loss",
    "token_logps",
    "whiten",
]

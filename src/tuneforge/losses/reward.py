"""Pairwise reward-model loss (stage ``rm``).

Ouyang et al. 2022, "Training language models to follow instructions with human feedback" (InstructGPT), eq. 1:
``loss(θ) = −E[log σ(r_θ(x, y_w) − r_θ(x, y_l))]``, the Bradley-Terry likelihood of the human preference. The paper
averages over all C(K, 2) pairs of one prompt; our batches hold one pair per prompt, so the expectation is the
batch mean and the per-pair term is returned unreduced.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pairwise_reward_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """``−log σ(r_c − r_r)`` per pair (InstructGPT eq. 1), in fp32 via ``logsigmoid`` (no overflow for big margins).

    Args:
        r_chosen: ``[B]`` scalar rewards of the preferred responses (value head at the last non-pad token).
        r_rejected: ``[B]`` rewards of the dispreferred responses.

    Returns:
        ``[B]`` losses; 0 < loss, and loss = log 2 when the rewards tie.
    """
    return -F.logsigmoid(r_chosen.float() - r_rejected.float())


def pairwise_accuracy(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """``1.0`` where the chosen reward is strictly higher, else ``0.0`` (a tie counts as wrong), shape ``[B]``.

    Its mean is the ``accuracy`` / ``eval_accuracy`` metric of LLaMA-Factory's rm stage.
    """
    return (r_chosen > r_rejected).float()

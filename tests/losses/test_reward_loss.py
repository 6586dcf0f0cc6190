"""Pairwise reward-model loss against hand-computed values."""

from __future__ import annotations

import torch

from tuneforge.losses import pairwise_accuracy, pairwise_reward_loss


def test_pairwise_reward_loss_hand_values():
    """loss = −log σ(r_c − r_r) = log(1 + e^{−(r_c − r_r)}).

    1. r_c = 1, r_r = 1: margin 0  → log 2            = 0.693147
    2. r_c = 2, r_r = 0: margin 2  → log(1 + e^{−2}) = log 1.135335 = 0.126928
    3. r_c = 0, r_r = 3: margin −3 → log(1 + e^{3})  = log 21.085537 = 3.048587
    """
    loss = pairwise_reward_loss(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([1.0, 0.0, 3.0]))
    torch.testing.assert_close(loss, torch.tensor([0.693147, 0.126928, 3.048587]), rtol=0, atol=1e-6)


def test_pairwise_reward_loss_is_stable_for_huge_margins():
    loss = pairwise_reward_loss(torch.tensor([0.0, 1000.0]), torch.tensor([1000.0, 0.0]))
    torch.testing.assert_close(loss, torch.tensor([1000.0, 0.0]))


def test_pairwise_accuracy_counts_ties_as_wrong():
    """Chosen above rejected → 1; tie → 0; below → 0."""
    acc = pairwise_accuracy(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([1.0, 0.0, 3.0]))
    assert acc.tolist() == [0.0, 1.0, 0.0]

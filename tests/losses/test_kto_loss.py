"""KTO loss and its KL reference point against hand-computed values."""

from __future__ import annotations

import torch

from tuneforge.losses import kto_kl_estimate, kto_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_kto_loss_hand_values():
    """β = 0.1, z_0 = 2, λ_D = 1, λ_U = 1.5, r = policy − ref.

    1. desirable,   r = 2:   λ_D·(1 − σ(0.1·(2 − 2)))   = 1 − 0.5             = 0.5
    2. undesirable, r = 2:   λ_U·(1 − σ(0.1·(2 − 2)))   = 1.5·0.5             = 0.75
    3. desirable,   r = 12:  1 − σ(0.1·10) = 1 − σ(1)  = 1 − 0.731059        = 0.268941
    4. undesirable, r = −8:  1.5·(1 − σ(0.1·(2 + 8)))  = 1.5·0.268941        = 0.403412
    Rewards are β·r = 0.2, 0.2, 1.2, −0.8.
    """
    policy, ref = t(-10.0, -10.0, 0.0, -20.0), t(-12.0, -12.0, -12.0, -12.0)
    desirable = torch.tensor([True, False, True, False])
    losses, rewards = kto_loss(
        policy, ref, t(2.0).squeeze(), desirable, beta=0.1, desirable_weight=1.0, undesirable_weight=1.5
    )
    torch.testing.assert_close(losses, t(0.5, 0.75, 0.268941, 0.403412), rtol=0, atol=1e-6)
    torch.testing.assert_close(rewards, t(0.2, 0.2, 1.2, -0.8), rtol=0, atol=1e-6)


def test_kto_reference_point_is_clamped_and_detached():
    """A negative estimate counts as z_0 = 0: desirable r = 0 → 1 − σ(0) = 0.5; no gradient reaches the estimate."""
    kl = t(-3.0).squeeze().requires_grad_()
    policy = t(0.0).requires_grad_()
    losses, _ = kto_loss(policy, t(0.0), kl, torch.tensor([True]), beta=0.1)
    torch.testing.assert_close(losses, t(0.5))
    losses.sum().backward()
    assert kl.grad is None
    torch.testing.assert_close(policy.grad, t(-0.1 * 0.25))  # d/dr (1 − σ(βr)) = −β·σ'(0) = −0.1·0.25


def test_kto_kl_estimate_hand_values():
    """mean(policy − ref) over mismatched pairs, floored at 0.

    [−4, −6] vs [−6, −6] → mean(2, 0) = 1;  [−5, −7] vs [−6, −6] → mean(1, −1) = 0;  [−8, −8] vs [−6, −6] → −2 → 0.
    """
    assert kto_kl_estimate(t(-4.0, -6.0), t(-6.0, -6.0)).item() == 1.0
    assert kto_kl_estimate(t(-5.0, -7.0), t(-6.0, -6.0)).item() == 0.0
    policy = t(-8.0, -8.0).requires_grad_()
    estimate = kto_kl_estimate(policy, t(-6.0, -6.0))
    assert estimate.item() == 0.0 and not estimate.requires_grad

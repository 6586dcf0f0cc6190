"""PPO pieces against hand-computed values: GAE, whitening, the clipped losses, KL shaping, the controllers."""

from __future__ import annotations

import math

import pytest
import torch

from tuneforge.losses import (
    AdaptiveKLController,
    RunningMoments,
    clip_fraction,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalty_rewards,
    masked_mean,
    score_norm,
    whiten,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_gae_hand_values():
    """γ = 1, λ = 0.5, δ_t = r_t + V_{t+1} − V_t, A_t = δ_t + 0.5·A_{t+1}.

    Row 0, mask 111, r = [0, 0, 1], V = 0.5 everywhere:
        δ_2 = 1 − 0.5 = 0.5 → A_2 = 0.5;  δ_1 = 0 → A_1 = 0.25;  δ_0 = 0 → A_0 = 0.125;  R = A + V = [0.625, 0.75, 1]
    Row 1, mask 110 (right padding, garbage V_2 = 9): the episode ends at t = 1, so V_2 is never used:
        δ_1 = 1 − 0.5 → A_1 = 0.5;  δ_0 = 0.5 − 0.5 → A_0 = 0.25;  R = [0.75, 1, 0]
    Row 2, mask 101 (a hole at t = 1 with garbage r, V): t = 0 bootstraps from t = 2:
        A_2 = 0.5;  δ_0 = 0 + 0.5 − 0.5 = 0 → A_0 = 0.5·0.5 = 0.25;  R = [0.75, 0, 1]
    """
    rewards = t([0, 0, 1], [0, 1, 0], [0, 5, 1])
    values = t([0.5, 0.5, 0.5], [0.5, 0.5, 9], [0.5, 9, 0.5])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 1]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    close(advantages, t([0.125, 0.25, 0.5], [0.25, 0.5, 0], [0.25, 0, 0.5]))
    close(returns, t([0.625, 0.75, 1], [0.75, 1, 0], [0.75, 0, 1]))


def test_gae_with_lambda_one_is_the_discounted_return():
    """λ = 1, γ = 0.9, V = 0, r = [0, 1]: A_1 = 1, A_0 = 0.9·1 = 0.9 (Monte-Carlo return minus V)."""
    advantages, _ = gae(t([0, 1]), t([0, 0]), torch.ones(1, 2), gamma=0.9, lam=1.0)
    close(advantages, t([0.9, 1.0]))


def test_whiten_hand_values():
    """Masked [1, 2, 3] (100 is padding): mean 2, population var 2/3, std 0.816497 → ±1/0.816497 = ±1.224745.

    shift_mean=False adds the mean back: [0.775255, 2, 3.224745]; the padding entry is 0 either way.
    """
    x, mask = t([1, 2, 3, 100]), torch.tensor([[1, 1, 1, 0]])
    close(whiten(x, mask), t([-1.224745, 0, 1.224745, 0]))
    close(whiten(x, mask, shift_mean=False), t([0.775255, 2, 3.224745, 0]))
    close(masked_mean(x, mask), torch.tensor(2.0))


def test_clipped_policy_loss_hand_values():
    """ε = 0.2, loss = max(−ρA, −clip(ρ, 0.8, 1.2)·A).

    ρ = 1,   A = 2:  −2
    ρ = 1.5, A = 1:  max(−1.5, −1.2) = −1.2   (clipped: no gradient)
    ρ = 0.5, A = 1:  max(−0.5, −0.8) = −0.5
    ρ = 0.5, A = −1: max(0.5, 0.8)   = 0.8    (clipped)
    ρ = 1.5, A = −1: max(1.5, 1.2)   = 1.5
    masked token:   0
    clip fraction: 4 of the 5 masked tokens have |ρ − 1| > 0.2 → 0.8
    """
    ratio = t([1.0, 1.5, 0.5, 0.5, 1.5, 3.0])
    old = torch.zeros(1, 6)
    logprobs = ratio.log().requires_grad_()
    advantages = t([2.0, 1.0, 1.0, -1.0, -1.0, 5.0])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    loss = clipped_policy_loss(logprobs, old, advantages, mask, clip=0.2)
    close(loss.detach(), t([-2.0, -1.2, -0.5, 0.8, 1.5, 0.0]))
    loss.sum().backward()
    assert logprobs.grad[0, 1] == 0 and logprobs.grad[0, 3] == 0 and logprobs.grad[0, 5] == 0
    close(logprobs.grad[0, 0], torch.tensor(-2.0))  # d(−ρA)/d log ρ = −ρA = −2
    close(clip_fraction(logprobs, old, mask, clip=0.2), torch.tensor(0.8))


def test_clipped_value_loss_hand_values():
    """ε = 0.2, R = 1, V_old = 0.5, loss = ½·max((V − R)², (V_clip − R)²), V_clip = 0.5 + clip(V − 0.5, ±0.2).

    V = 1.0: V_clip = 0.7 → ½·max(0, 0.09) = 0.045
    V = 0.6: V_clip = 0.6 → ½·0.16          = 0.08
    V = 0.0: V_clip = 0.3 → ½·max(1, 0.49)  = 0.5
    """
    values, old, returns = t([1.0, 0.6, 0.0]), torch.full((1, 3), 0.5), torch.ones(1, 3)
    close(clipped_value_loss(values, old, returns, torch.ones(1, 3), clip=0.2), t([0.045, 0.08, 0.5]))


def test_kl_penalty_rewards_hand_values():
    """β = 0.1; kl = (logprob − ref)·mask; reward = −β·kl, plus the score on the last masked token.

    Row 0, mask 111, kl = [0.5, 0, −2]: [−0.05, 0, 0.2 + 2]            = [−0.05, 0, 2.2]
    Row 1, mask 110, kl = [1, 0, (masked)]: [−0.1, 0 + (−1), 0]         = [−0.1, −1, 0]
    Row 2, empty mask: no reward at all (the score 7 is dropped).
    """
    logprobs = t([-1, -2, -3], [-1, -1, 0], [-1, -1, -1])
    ref = t([-1.5, -2, -1], [-2, -1, 0], [0, 0, 0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    rewards, kl = kl_penalty_rewards(torch.tensor([2.0, -1.0, 7.0]), logprobs, ref, mask, kl_coef=0.1)
    close(rewards, t([-0.05, 0, 2.2], [-0.1, -1, 0], [0, 0, 0]))
    close(kl, t([0.5, 0, -2], [1, 0, 0], [0, 0, 0]))


def test_adaptive_kl_controller_hand_values():
    """β_0 = 0.2, target 6, horizon 10000; e = clip(KL/6 − 1, ±0.2), β ← β·(1 + e·n/10000).

    KL = 9,   n = 100:  e = 0.5 → 0.2  → β = 0.2·1.002     = 0.2004
    KL = 3,   n = 100:  e = −0.5 → −0.2 → β = 0.2004·0.998 = 0.1999992
    fresh, KL = 6.6, n = 1000: e = 0.1 → β = 0.2·1.01     = 0.202
    """
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    assert ctl.update(9.0, 100) == pytest.approx(0.2004)
    assert ctl.update(3.0, 100) == pytest.approx(0.1999992)
    assert AdaptiveKLController(0.2, 6.0, 10000).update(6.6, 1000) == pytest.approx(0.202)
    with pytest.raises(ValueError, match="target must be > 0"):
        AdaptiveKLController(0.2, 0.0, 10000)


def test_score_norm_and_running_moments_hand_values():
    """score_norm([1, 3], mean 2, std 2) = [−0.5, 0.5].

    RunningMoments: [1, 2, 3] → mean 2, std sqrt(2/3) = 0.816497; then [4, 5] → the moments of 1..5: mean 3, std
    sqrt(2) = 1.414214. Before any update: mean 0, std 1.
    """
    close(score_norm(torch.tensor([1.0, 3.0]), 2.0, 2.0), torch.tensor([-0.5, 0.5]))
    moments = RunningMoments()
    assert (moments.mean, moments.std) == (0.0, 1.0)
    assert moments.update(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx((2.0, math.sqrt(2 / 3)))
    assert moments.update(torch.tensor([4.0, 5.0])) == pytest.approx((3.0, math.sqrt(2)))
    with pytest.raises(ValueError, match="at least one value"):
        moments.update(torch.tensor([]))

"""PPO for RLHF (stage ``ppo``): KL-shaped rewards, GAE, the clipped policy and value losses, the KL controller.

Shapes: every per-token tensor is ``[B, T]`` over the response tokens, with ``mask`` 1 (True) on tokens the policy
generated and 0 on prompt/padding. Per-token losses come back with 0 outside the mask; reduce them with
:func:`masked_mean`. Nothing here needs the model.
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is set (over ``dim``, or all of them); 0 where none is."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``(x − mean) / sqrt(var + eps)`` with mean and (population) variance over the masked entries.

    ``shift_mean=False`` adds the mean back (rescale only), which is how rewards are usually whitened. Entries
    outside the mask are 0 in the result.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * mask.to(x.dtype)


def _last_index(mask: Tensor) -> Tensor:
    # The last set position per row: positions weighted by the mask, then argmax (0 for an empty row).
    positions = torch.arange(mask.shape[-1], device=mask.device)
    return (mask.long() * positions).argmax(-1)


@torch.no_grad()
def kl_penalty_rewards(
    scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, *, kl_coef: float
) -> tuple[Tensor, Tensor]:
    """Per-token rewards ``−β·(log π(y_t) − log π_ref(y_t))`` plus the sequence score on the last response token.

    Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", eq. 2:
    ``R(x, y) = r(x, y) − β·log(π(y|x) / ρ(y|x))``, with the log-ratio spread over the tokens that produce it
    (its sum over t is the sequence term) and r paid at the end of the episode.

    Args:
        scores: ``[B]`` reward-model scores r(x, y) (after :func:`score_norm`, if used).
        logprobs, ref_logprobs: ``[B, T]`` per-token log-probabilities of the sampled tokens, policy and reference.
        mask: ``[B, T]`` response-token mask.
        kl_coef: β, e.g. :attr:`AdaptiveKLController.value`.

    Returns:
        ``(rewards, kl)``, both ``[B, T]`` fp32 and 0 outside the mask; ``kl`` is the per-token log-ratio, whose
        per-sequence sum averaged over the batch is the KL the controller tracks. A row with an empty mask gets
        no score.
    """
    mask = mask.to(torch.float32)
    kl = (logprobs.float() - ref_logprobs.float()) * mask
    score = scores.float() * (mask.sum(-1) > 0)
    rewards = (-kl_coef * kl).scatter_add(1, _last_index(mask).unsqueeze(-1), score.unsqueeze(-1))
    return rewards, kl


@torch.no_grad()
def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", eq. 16): ``Â_t = Σ_l (γλ)^l δ_{t+l}``, ``δ_t = r_t + γ·V_{t+1} − V_t``.

    The episode ends after the last masked token (V = 0 beyond it). Unmasked tokens are skipped, not treated as
    episode ends: the next masked token's value and advantage carry across them, so a response with masked holes
    (tool output) bootstraps across the hole. The backward recursion is a Python loop over T.

    Args:
        rewards: ``[B, T]`` per-token rewards (see :func:`kl_penalty_rewards`).
        values: ``[B, T]`` value-head estimates V_t from the rollout.
        mask: ``[B, T]`` response-token mask.
        gamma: discount γ (1.0 for RLHF: episodes are short and the score comes at the end).
        lam: λ, the bias/variance trade-off of the estimator.

    Returns:
        ``(advantages, returns)``, both ``[B, T]`` and 0 outside the mask; ``returns = advantages + values`` (the
        TD(λ) targets for the value loss).
    """
    mask = mask.bool()
    advantages = torch.zeros_like(values, dtype=torch.float32)
    next_value = torch.zeros_like(advantages[:, 0])
    carry = torch.zeros_like(next_value)
    for t in reversed(range(values.shape[-1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        step = delta + gamma * lam * carry
        m = mask[:, t]
        carry = torch.where(m, step, carry)
        next_value = torch.where(m, values[:, t].float(), next_value)
        advantages[:, t] = torch.where(m, step, 0.0)
    return advantages, (advantages + values) * mask


def clipped_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *, clip: float = 0.2
) -> Tensor:
    """PPO's clipped surrogate, negated for minimisation (Schulman et al. 2017, "Proximal Policy Optimization
    Algorithms", eq. 7): ``−min(ρ_t·Â_t, clip(ρ_t, 1−ε, 1+ε)·Â_t)`` with ``ρ_t = exp(log π(y_t) − log π_old(y_t))``.

    Args:
        logprobs: ``[B, T]`` current policy log-probabilities (with grad).
        old_logprobs: ``[B, T]`` log-probabilities at rollout time.
        advantages: ``[B, T]`` (usually whitened) advantages, no grad.
        mask: ``[B, T]`` response-token mask.
        clip: ε.

    Returns:
        ``[B, T]`` per-token losses, 0 outside the mask.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    return torch.maximum(unclipped, clipped) * mask.to(unclipped.dtype)


def clip_fraction(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, *, clip: float = 0.2) -> Tensor:
    """Share of masked tokens whose ratio left ``[1−ε, 1+ε]`` (the ``policy/clipfrac`` metric), a scalar."""
    ratio = torch.exp(logprobs.detach() - old_logprobs)
    return masked_mean(((ratio - 1).abs() > clip).float(), mask)


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *, clip: float = 0.2
) -> Tensor:
    """``½·max((V − R)², (V_clip − R)²)`` with ``V_clip = V_old + clip(V − V_old, −ε, ε)``.

    The squared error is PPO's ``L^VF`` (Schulman et al. 2017, eq. 9). Clipping the value update around the
    rollout's estimate is not in the paper; it comes from OpenAI's baselines implementation (studied by Engstrom et
    al. 2020, "Implementation Matters in Deep Policy Gradients") and is what RLHF PPO implementations use.

    Returns:
        ``[B, T]`` per-token losses, 0 outside the mask.
    """
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return loss * mask.to(loss.dtype)


def score_norm(scores: Tensor, running_mean: float, running_std: float, *, eps: float = 1e-8) -> Tensor:
    """``(scores − mean) / (std + eps)`` with the running moments of all scores so far (``ppo_score_norm``).

    Keep the moments with :class:`tuneforge.losses.running.RunningMoments`, updated with this batch's scores first.
    """
    return (scores - running_mean) / (running_std + eps)


class AdaptiveKLController:
    """Proportional controller for the KL coefficient β (Ziegler et al. 2019, §2.2).

    ``e_t = clip(KL_t / KL_target − 1, −0.2, 0.2)`` and ``β_{t+1} = β_t·(1 + K_β·e_t)`` with ``K_β = n / horizon``
    for an update that covers ``n`` steps (the paper uses K_β = 0.1). β grows while the policy drifts further than
    the target and shrinks while it stays closer.

    Args:
        init_kl_coef: β_0 > 0.
        target: KL_target in nats per sequence, > 0 (6 in LLaMA-Factory).
        horizon: steps over which a full ±20 % correction is applied, > 0 (10000).

    Raises:
        ValueError: when an argument is not positive.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        for name, value in (("init_kl_coef", init_kl_coef), ("target", target), ("horizon", horizon)):
            if value <= 0:
                raise ValueError(f"AdaptiveKLController: {name} must be > 0 (got {value})")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move β towards the target after ``n_steps`` steps whose mean KL was ``current_kl``; returns the new β."""
        error = min(max(float(current_kl) / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
        return self.value

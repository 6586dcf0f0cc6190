"""KTO loss (stage ``kto``): alignment from unpaired desirable/undesirable examples.

Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", eq. 8::

    r(x, y) = log π_θ(y|x) − log π_ref(y|x)
    z_0     = KL(π_θ(y'|x) ‖ π_ref(y'|x))
    v(x, y) = λ_D·σ(β·(r − z_0))   if y is desirable
              λ_U·σ(β·(z_0 − r))   if y is undesirable
    L_KTO   = E[λ_y − v(x, y)]

z_0 is the reference point. As in the paper it is estimated from *mismatched* pairs (prompt i with the completion
of example j ≠ i, which the KTO collator builds), clamped at 0 and not back-propagated through.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kto_kl_estimate(policy_kl_logps: Tensor, ref_kl_logps: Tensor) -> Tensor:
    """ẑ_0 = max(0, mean_j(log π_θ(y'_j|x_j) − log π_ref(y'_j|x_j))), detached (the z_0 of KTO eq. 8).

    Args:
        policy_kl_logps: ``[B]`` summed log-probabilities of the mismatched completions under the policy.
        ref_kl_logps: ``[B]`` the same under the reference model.

    Returns:
        A detached fp32 scalar ≥ 0. Under data parallelism, average the per-rank means (all-reduce) before
        :func:`kto_loss`, as the paper estimates z_0 over the whole batch.
    """
    return (policy_kl_logps.float() - ref_kl_logps.float()).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    kl_estimate: Tensor | float,
    desirable: Tensor,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-example ``λ_y − v(x, y)`` of KTO eq. 8 (see the module docstring).

    Args:
        policy_logps: ``[B]`` summed log π_θ(y|x).
        ref_logps: ``[B]`` summed log π_ref(y|x).
        kl_estimate: z_0 from :func:`kto_kl_estimate`; clamped at 0 and detached again here, so any estimate
            (e.g. an all-reduced one) obeys the paper's contract.
        desirable: ``[B]`` bool, True where y is a desirable (thumbs-up) completion.
        beta: β > 0, the risk-aversion / KL-strength parameter (0.1 in the paper).
        desirable_weight: λ_D (LLaMA-Factory ``kto_chosen_weight``).
        undesirable_weight: λ_U (``kto_rejected_weight``); the paper keeps λ_D·n_D / (λ_U·n_U) in [1, 4/3].

    Returns:
        ``(losses, rewards)``, both ``[B]``: losses in [0, λ_y], and the detached implicit rewards ``β·r`` (split
        them by ``desirable`` for the ``rewards/chosen`` and ``rewards/rejected`` metrics).
    """
    z0 = torch.as_tensor(kl_estimate, dtype=torch.float32, device=policy_logps.device).detach().clamp(min=0)
    logratio = policy_logps.float() - ref_logps.float()
    gain = desirable_weight * (1 - torch.sigmoid(beta * (logratio - z0)))
    loss = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - logratio)))
    return torch.where(desirable.bool(), gain, loss), (beta * logratio).detach()

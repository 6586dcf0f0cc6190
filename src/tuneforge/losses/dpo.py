"""Pairwise preference losses for stage ``dpo`` (``pref_loss``: sigmoid, hinge, ipo, orpo, simpo; plus BCO mixing).

Every loss here is a pure function of sequence log-probabilities (see :mod:`.logps`) and returns one value per
pair, ``[B]``; the trainer takes the mean. Notation shared by the docstrings::

    pc, pr   log π_θ(y_w|x), log π_θ(y_l|x)       policy, chosen / rejected
    rc, rr   log π_ref(y_w|x), log π_ref(y_l|x)   reference model
    h        (pc − rc) − (pr − rr)                the DPO log-ratio margin

Which log-probabilities each loss takes (length-averaged or summed) and whether it needs a reference model is
written in the loss catalog (``tuneforge/catalog/losses.yaml``), not here. A ``pref_loss`` name is looked up in
:data:`PREF_LOSSES`, which raises on an unknown name instead of quietly training sigmoid DPO
(LLaMA-Factory with TRL ≥ 0.20 trains hinge and ipo as sigmoid).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _margin(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor) -> Tensor:
    return (pc - rc) - (pr - rr)


def sigmoid_dpo_loss(
    pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float, label_smoothing: float = 0.0
) -> Tensor:
    """DPO: ``−log σ(β·h)`` (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7).

    With ``label_smoothing = ε > 0`` it is conservative DPO (Mitchell 2023, "A note on DPO with noisy
    preferences"): the label is flipped with probability ε, ``−(1−ε)·log σ(β·h) − ε·log σ(−β·h)``.

    Args:
        pc, pr, rc, rr: ``[B]`` summed sequence log-probabilities (see the module notation).
        beta: inverse temperature β > 0 (the strength of the implicit KL constraint); 0.1 is the paper default.
        label_smoothing: ε in [0, 0.5).

    Returns:
        ``[B]`` losses.
    """
    logits = beta * _margin(pc, pr, rc, rr)
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def hinge_dpo_loss(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float) -> Tensor:
    """SLiC-style hinge on the DPO margin: ``max(0, 1 − β·h)``.

    Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", eq. 1, rank-calibration term
    ``max(0, δ − log π(y_w|x) + log π(y_l|x))``. Departures, as in the DPO literature's "hinge" variant: the raw
    log-likelihood difference is replaced by the reference-relative margin h, and the margin δ is 1/β with the
    whole term scaled by β (``β·max(0, 1/β − h) = max(0, 1 − β·h)``). The paper's SFT regulariser is ``pref_ftx``.

    Returns:
        ``[B]`` losses, exactly 0 once ``h ≥ 1/β``.
    """
    return torch.relu(1 - beta * _margin(pc, pr, rc, rr))


def ipo_loss(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float) -> Tensor:
    """IPO: ``(h − 1/(2β))²`` (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", eq. 17, with the paper's τ as β).

    A squared loss regresses h onto the target 1/(2β) instead of pushing it to infinity, so it does not overfit
    deterministic preferences. LLaMA-Factory passes length-averaged log-probabilities here.

    Returns:
        ``[B]`` losses, 0 when ``h = 1/(2β)``.
    """
    return (_margin(pc, pr, rc, rr) - 1 / (2 * beta)) ** 2


def _log1mexp(x: Tensor) -> Tensor:
    # log(1 − e^x) for x < 0, accurate at both ends (Mächler 2012, "Accurately computing log(1 − exp(−|a|))").
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen_avg_logps: Tensor, rejected_avg_logps: Tensor, *, beta: float) -> Tensor:
    """ORPO's odds-ratio term, ``β·L_OR`` with ``L_OR = −log σ(log(odds(y_w) / odds(y_l)))``.

    Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model", eqs. 6-7, with
    ``odds(y) = P(y|x) / (1 − P(y|x))`` and ``log P(y|x)`` the length-averaged log-likelihood, and λ written β
    (LLaMA-Factory's key). The SFT half of ``L_ORPO = L_SFT + λ·L_OR`` is separate: add :func:`sft_term`.

    Args:
        chosen_avg_logps, rejected_avg_logps: ``[B]`` mean per-token log-probabilities, < 0.
        beta: λ, the weight of the odds-ratio term.

    Returns:
        ``[B]`` losses.
    """
    log_odds = (chosen_avg_logps - rejected_avg_logps) - (_log1mexp(chosen_avg_logps) - _log1mexp(rejected_avg_logps))
    return -beta * F.logsigmoid(log_odds)


def simpo_loss(chosen_avg_logps: Tensor, rejected_avg_logps: Tensor, *, beta: float, gamma: float) -> Tensor:
    """SimPO: ``−log σ(β·(avg log π(y_w) − avg log π(y_l)) − γ)`` (Meng et al. 2024, "SimPO: Simple Preference
    Optimization with a Reference-Free Reward", eq. 6).

    Args:
        chosen_avg_logps, rejected_avg_logps: ``[B]`` length-averaged policy log-probabilities.
        beta: reward scale β (the paper uses 2.0-2.5).
        gamma: target reward margin γ (LLaMA-Factory's ``simpo_gamma``).

    Returns:
        ``[B]`` losses.
    """
    return -F.logsigmoid(beta * (chosen_avg_logps - rejected_avg_logps) - gamma)


def bco_loss(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, beta: float, delta: float | Tensor) -> Tensor:
    """BCO: ``−log σ(r_w − δ) − log σ(−(r_l − δ))``, a binary classifier on implicit rewards ``r = β·log(π/π_ref)``.

    Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment" (the BCO loss with reward
    shift δ, §3). δ estimates the mean implicit reward over chosen and rejected responses alike; it is a running
    mean kept by the trainer (``tuneforge.losses.running.RunningMoments``), updated with this batch's rewards
    (:func:`dpo_rewards`) before the loss, so δ is already defined at step 1. Blend with :func:`mix_bco`.

    Returns:
        ``[B]`` losses.
    """
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    return -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))


def mix_bco(loss: Tensor, bco: Tensor, weight: float) -> Tensor:
    """``(L + w·L_bco) / (1 + w)``: LLaMA-Factory's ``bco_weight`` blend, which keeps the loss on L's scale."""
    return (loss + weight * bco) / (1 + weight)


def sft_term(chosen_logps: Tensor, chosen_lengths: Tensor) -> Tensor:
    """``−log π(y_w|x) / |y_w|`` per pair: the NLL added as ``pref_ftx · sft_term`` (and ORPO's ``L_SFT``).

    Args:
        chosen_logps: ``[B]`` summed log-probabilities of the chosen responses.
        chosen_lengths: ``[B]`` trained-token counts of the chosen responses (0 is treated as 1).

    Returns:
        ``[B]`` length-averaged negative log-likelihoods.
    """
    return -chosen_logps / chosen_lengths.clamp(min=1)


def dpo_rewards(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Implicit rewards ``(β·(pc − rc), β·(pr − rr))``, detached, each ``[B]`` (DPO eq. 5, up to β·log Z(x)).

    They give the ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins`` and ``rewards/accuracies``
    metrics. For reference-free losses LLaMA-Factory logs ``β·pc`` and ``β·pr``: pass zeros for ``rc`` and ``rr``.
    """
    return (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


class _LossTable(dict):
    """A dict whose missing-key error lists the valid names (never a silent default)."""

    def __missing__(self, name: str):
        raise KeyError(f"pref_loss={name!r} is not a preference loss; choose one of {', '.join(sorted(self))}")


PREF_LOSSES: dict[str, Callable[..., Tensor]] = _LossTable(
    sigmoid=sigmoid_dpo_loss, hinge=hinge_dpo_loss, ipo=ipo_loss, orpo=orpo_loss, simpo=simpo_loss
)
"""``pref_loss`` name → loss function. sigmoid/hinge/ipo take ``(pc, pr, rc, rr, *, beta)``; orpo takes
``(chosen_avg, rejected_avg, *, beta)``, simpo also ``gamma``."""

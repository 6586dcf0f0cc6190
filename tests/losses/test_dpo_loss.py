"""Preference losses against values worked out by hand (softplus(x) = log(1 + e^x) = −log σ(−x))."""

from __future__ import annotations

import math

import pytest
import torch

from tuneforge.catalog import LOSSES
from tuneforge.losses import (
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


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def close(actual, *expected):
    torch.testing.assert_close(actual, t(*expected), rtol=0, atol=1e-6)


# Three pairs with margins h = (pc − rc) − (pr − rr) of 2, 0 and −15.
PC, PR, RC, RR = t(-10.0, -7.0, -20.0), t(-12.0, -7.0, -5.0), t(-11.0, -9.0, -10.0), t(-11.0, -9.0, -10.0)


def test_sigmoid_dpo_hand_values():
    """β = 0.1, loss = softplus(−β·h).

    1. h = (−10 + 11) − (−12 + 11) = 2   → softplus(−0.2) = log 1.818731 = 0.598139
    2. h = 0                              → log 2                         = 0.693147
    3. h = (−20 + 10) − (−5 + 10) = −15  → softplus(1.5)  = log 5.481689 = 1.701413
    """
    close(sigmoid_dpo_loss(PC, PR, RC, RR, beta=0.1), 0.598139, 0.693147, 1.701413)


def test_conservative_dpo_label_smoothing_hand_values():
    """ε = 0.1: loss = 0.9·softplus(−βh) + 0.1·softplus(βh).

    1. h = 2:   0.9·0.598139 + 0.1·0.798139 = 0.538325 + 0.079814 = 0.618139
    2. h = 0:   0.9·log 2 + 0.1·log 2 = 0.693147
    3. h = −15: 0.9·1.701413 + 0.1·softplus(−1.5) = 1.531272 + 0.1·0.201413 = 1.551413
    """
    close(sigmoid_dpo_loss(PC, PR, RC, RR, beta=0.1, label_smoothing=0.1), 0.618139, 0.693147, 1.551413)


def test_hinge_dpo_hand_values():
    """β = 0.1, loss = max(0, 1 − β·h): h = 2 → 0.8; h = 0 → 1; h = −15 → 2.5. And h = 10 → max(0, 0) = 0."""
    close(hinge_dpo_loss(PC, PR, RC, RR, beta=0.1), 0.8, 1.0, 2.5)
    close(hinge_dpo_loss(t(0.0), t(-10.0), t(0.0), t(0.0), beta=0.1), 0.0)


def test_ipo_hand_values():
    """β = 0.1, target 1/(2β) = 5, loss = (h − 5)²: h = 2 → 9; h = 0 → 25; h = −15 → 400. With β = 0.5, h = 2 → 1."""
    close(ipo_loss(PC, PR, RC, RR, beta=0.1), 9.0, 25.0, 400.0)
    close(ipo_loss(t(-1.0), t(-3.0), t(0.0), t(0.0), beta=0.5), 1.0)


def test_orpo_hand_values():
    """β = 0.1, odds(P) = P/(1−P), loss = −β·log σ(log odds_w − log odds_l).

    1. P_w = 0.5 (odds 1), P_l = 0.2 (odds 1/4): σ(log 4) = 4/5 → −0.1·log 0.8 = 0.1·log 1.25 = 0.022314
    2. P_w = P_l = 0.5: log-odds ratio 0 → 0.1·log 2 = 0.069315
    3. P_w = 0.2, P_l = 0.5: σ(−log 4) = 1/5 → 0.1·log 5 = 0.160944
    """
    half, fifth = math.log(0.5), math.log(0.2)
    close(orpo_loss(t(half, half, fifth), t(fifth, half, half), beta=0.1), 0.022314, 0.069315, 0.160944)


def test_simpo_hand_values():
    """β = 2, γ = 1, loss = softplus(−(β·(c − r) − γ)).

    1. c = −1, r = −1.5: 2·0.5 − 1 = 0  → log 2           = 0.693147
    2. c = −1, r = −2:   2·1 − 1 = 1    → softplus(−1)    = 0.313262
    3. c = −2, r = −1:   2·(−1) − 1 = −3 → softplus(3)    = 3.048587
    """
    close(simpo_loss(t(-1.0, -1.0, -2.0), t(-1.5, -2.0, -1.0), beta=2.0, gamma=1.0), 0.693147, 0.313262, 3.048587)


def test_bco_hand_values():
    """β = 0.1, δ = 0.5, r_w = β(pc − rc), r_l = β(pr − rr), loss = softplus(−(r_w − δ)) + softplus(r_l − δ).

    1. r_w = 0.5, r_l = 0.5:   2·softplus(0)  = 2·log 2        = 1.386294
    2. r_w = 2.5, r_l = −1.5:  2·softplus(−2) = 2·0.126928     = 0.253856
    3. r_w = −1.5, r_l = 3.5:  softplus(2) + softplus(3) = 2.126928 + 3.048587 = 5.175515
    """
    pc, rc = t(5.0, 25.0, -15.0), t(0.0, 0.0, 0.0)
    pr, rr = t(5.0, -15.0, 35.0), t(0.0, 0.0, 0.0)
    close(bco_loss(pc, pr, rc, rr, beta=0.1, delta=0.5), 1.386294, 0.253856, 5.175515)


def test_mix_bco_sft_term_and_rewards():
    """mix: (1 + 0.5·3)/1.5 = 1.666667, and w = 0 leaves L. sft: −(−10)/5 = 2, −(−6)/3 = 2, −(−3)/max(0, 1) = 3.

    Rewards with β = 0.1: chosen 0.1·(−10 + 11) = 0.1, 0.1·(−7 + 9) = 0.2; rejected 0.1·(−12 + 11) = −0.1, 0.2.
    """
    close(mix_bco(t(1.0), t(3.0), 0.5), 1.666667)
    close(mix_bco(t(1.0), t(3.0), 0.0), 1.0)
    close(sft_term(t(-10.0, -6.0, -3.0), torch.tensor([5, 3, 0])), 2.0, 2.0, 3.0)
    pc = PC[:2].clone().requires_grad_()
    chosen, rejected = dpo_rewards(pc, PR[:2], RC[:2], RR[:2], 0.1)
    close(chosen, 0.1, 0.2)
    close(rejected, -0.1, 0.2)
    assert not chosen.requires_grad


def test_pref_losses_registry_names_and_unknown_name():
    assert set(PREF_LOSSES) == set(LOSSES) == {"sigmoid", "hinge", "ipo", "orpo", "simpo"}
    assert PREF_LOSSES["ipo"] is ipo_loss
    with pytest.raises(KeyError, match="choose one of hinge, ipo, orpo, sigmoid, simpo"):
        PREF_LOSSES["kto_pair"]


def test_sigmoid_dpo_gradient_pushes_chosen_up():
    """d/dpc of softplus(−βh) = −β·σ(−βh); at h = 0 that is −0.1·0.5 = −0.05."""
    pc = t(0.0).requires_grad_()
    sigmoid_dpo_loss(pc, t(0.0), t(0.0), t(0.0), beta=0.1).sum().backward()
    close(pc.grad, -0.05)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_catalog_keywords_are_the_loss_functions_keywords(name):
    """Every keyword the loss catalog feeds a loss exists on its function; reference-free ones take no reference."""
    import inspect

    params = inspect.signature(PREF_LOSSES[name]).parameters
    keyword_only = {p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {"beta", *LOSSES[name].kwargs} <= keyword_only
    positional = [p for p, v in params.items() if v.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert len(positional) == (2 if LOSSES[name].reference_free else 4)

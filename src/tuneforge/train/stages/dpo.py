"""Stage dpo: pairwise preference optimisation (``pref_loss`` sigmoid, hinge, ipo, orpo, simpo; BCO mix; LD-DPO).

Chosen and rejected replies go through the policy in one forward pass (the 2n batch of ``PairwiseCollator``), with
chunked log-probabilities. The reference runs under ``torch.no_grad()`` (see :mod:`.preference`); orpo and simpo
need none. The loss of a pair, following LLaMA-Factory::

    L = pref_loss(pc, pr[, rc, rr])                    ipo/orpo/simpo on length-averaged log-probabilities
      → (L + w·L_bco) / (1 + w)                       with pref_bco_weight = w > 0 (losses with a reference)
      + L_SFT                                          orpo (its own SFT half)
      + pref_ftx · L_SFT                               L_SFT = −log π(y_w|x) / |y_w|

Reference log-probabilities are computed at every step, not precomputed and cached: for LoRA they cost one
no-grad forward of the same weights, and a cache would have to follow the data order and resume.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...catalog import LOSSES
from ...config.schema import Config
from ...losses import PREF_LOSSES, RunningMoments, bco_loss, dpo_rewards, mix_bco
from ..core.workflow import prepare, train_and_evaluate
from . import preference as pref


class DPOLoss:
    """The ``compute_loss`` of stage dpo: ``(mean loss over the micro-batch's pairs, metrics)``.

    Metrics (LLaMA-Factory's names): ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``,
    ``rewards/margins`` (implicit rewards β·(log π − log π_ref), or β·log π for reference-free losses; left out when
    the reference is the evaluated model itself), ``logps/chosen``, ``logps/rejected``; orpo adds ``sft_loss`` and
    ``odds_ratio_loss``. ``logits/*`` are not reported: full-vocabulary logits are never built.
    """

    per_example = True  # a mean over the micro-batch's pairs (build_trainer reads it)

    def __init__(self, cfg: Config, reference: pref.Reference) -> None:
        ft = cfg.finetuning
        self.name, self.beta, self.ftx, self.ld_alpha = ft.pref_loss, ft.pref_beta, ft.pref_ftx, ft.ld_alpha
        self.reference = reference
        spec = LOSSES[self.name]
        self.average = spec.length_averaged
        # the loss catalog says which config keys feed which keyword of the loss function
        self.kwargs: dict[str, float] = {"beta": self.beta}
        self.kwargs.update({keyword: getattr(ft, key) for keyword, key in spec.kwargs.items()})
        self.bco_weight = ft.pref_bco_weight if reference.kind != "none" else 0.0
        self.moments = RunningMoments()  # BCO's reward baseline δ

    def __call__(self, model: nn.Module, batch: dict[str, Any], num_items_in_batch: Any) -> tuple[Tensor, dict]:
        policy = pref.pair_logps(model, batch, average=self.average, ld_alpha=self.ld_alpha)
        if self.reference.kind == "none":
            losses = PREF_LOSSES[self.name](policy.chosen, policy.rejected, **self.kwargs)
            zeros = torch.zeros_like(policy.chosen)
            chosen, rejected = dpo_rewards(policy.chosen, policy.rejected, zeros, zeros, self.beta)
        else:
            # The reference never gets LD-DPO weighting (LLaMA-Factory applies ld_alpha to the policy only).
            ref = self.reference.run(model, lambda m: pref.pair_logps(m, batch, average=self.average))
            args = (policy.chosen, policy.rejected, ref.chosen, ref.rejected)
            losses = PREF_LOSSES[self.name](*args, **self.kwargs)
            if self.bco_weight > 0:
                losses = mix_bco(losses, self._bco(*args, training=model.training), self.bco_weight)
            chosen, rejected = dpo_rewards(*args, self.beta)
        metrics = self._metrics(policy, chosen, rejected)
        if self.name == "orpo":
            metrics.update(sft_loss=policy.sft.detach(), odds_ratio_loss=(losses / self.beta).detach())
            losses = losses + policy.sft
        if self.ftx > 0:
            losses = losses + self.ftx * policy.sft
        return losses.mean(), metrics

    def _bco(self, pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, *, training: bool) -> Tensor:
        if training:  # δ = running mean of the batch-mean implicit reward (all ranks alike); evaluation reads it
            rewards = torch.cat(dpo_rewards(pc, pr, rc, rr, self.beta))
            self.moments.update(pref.mean_over_ranks(rewards.mean()))
        return bco_loss(pc, pr, rc, rr, beta=self.beta, delta=self.moments.mean)

    def _metrics(self, policy: pref.PairLogps, chosen: Tensor, rejected: Tensor) -> dict[str, Tensor]:
        metrics = {pref.LOGPS_CHOSEN: policy.chosen.detach(), pref.LOGPS_REJECTED: policy.rejected.detach()}
        if self.reference.reports_rewards:
            metrics.update({
                pref.REWARDS_CHOSEN: chosen, pref.REWARDS_REJECTED: rejected,
                pref.REWARDS_ACCURACIES: (chosen > rejected).float(), pref.REWARDS_MARGINS: chosen - rejected,
            })  # fmt: skip
        return metrics


def run(cfg: Config) -> dict[str, Any]:
    from ...data.collator import build_collator
    from ..core.trainer import build_trainer

    p = prepare(cfg)
    reference = pref.build_reference(cfg, p.model, p.tokenizer,
                                     reference_free=LOSSES[cfg.finetuning.pref_loss].reference_free)
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, p.data.eval, build_collator(cfg, p.tokenizer),
                            compute_loss=DPOLoss(cfg, reference))
    pref.prepare_reference(trainer, reference)
    return train_and_evaluate(cfg, trainer, p)

"""Stage kto: alignment from unpaired desirable / undesirable replies (Ethayarajh et al. 2024, KTO).

Each row brings its reply (``input_ids``/``labels``), a mismatched reply under the same prompt (``kl_*``, built by
the data processor) and its tag (``kto_tags``, True = desirable). Per micro-batch: the policy forward on the replies
(with gradients), a no-grad policy forward on the KL pairs, and the reference on both (see :mod:`.preference`); the
reference point z_0 is the clamped mean log-ratio on the KL pairs, averaged over ranks, then :func:`kto_loss`.
``pref_ftx`` adds the length-averaged NLL of the desirable replies, averaged over all the micro-batch's examples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...config.schema import Config
from ...losses import kto_kl_estimate, kto_loss, sft_term
from ..core.callbacks import ratio
from ..core.workflow import prepare, train_and_evaluate
from . import preference as pref

_SIDE_KEYS = ("input_ids", "attention_mask", "labels")


def side(batch: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The replies (``prefix=""``) or the KL pairs (``prefix="kl_"``) of a ``KTOCollator`` batch, as model inputs."""
    return {key: batch[prefix + key] for key in _SIDE_KEYS if prefix + key in batch}


def margins(metrics: dict[str, float]) -> dict[str, float]:
    """``rewards/margins = rewards/chosen − rewards/rejected`` of the logged means, when both were measured."""
    if pref.REWARDS_CHOSEN in metrics and pref.REWARDS_REJECTED in metrics:
        return {pref.REWARDS_MARGINS: metrics[pref.REWARDS_CHOSEN] - metrics[pref.REWARDS_REJECTED]}
    return {}


class KTOLoss:
    """The ``compute_loss`` of stage kto: ``(mean KTO loss over the micro-batch, metrics)``.

    A per-example loss (``per_example``); ``rewards/margins`` is derived from the logged means (``margins``).

    Metrics (LLaMA-Factory's names): ``rewards/chosen`` / ``rewards/rejected`` and ``logps/chosen`` /
    ``logps/rejected`` averaged over the desirable / undesirable examples of the log window (ratios: a micro-batch may
    hold only one kind), ``rewards/margins`` from those, and ``kl`` (z_0). Without a separate reference in an
    evaluation-only run the rewards are 0 and left out.
    """

    per_example = True  # a mean over the micro-batch's examples (build_trainer reads it)
    derive_metrics = staticmethod(margins)

    def __init__(self, cfg: Config, reference: pref.Reference) -> None:
        ft = cfg.finetuning
        self.reference = reference
        self.beta, self.ftx = ft.pref_beta, ft.pref_ftx
        self.weights = {"desirable_weight": ft.kto_chosen_weight, "undesirable_weight": ft.kto_rejected_weight}

    def __call__(self, model: nn.Module, batch: dict[str, Any], num_items_in_batch: Any) -> tuple[Tensor, dict]:
        target, kl = side(batch), side(batch, "kl_")
        logps, lengths = pref.sequence_stats(model, target)
        with torch.no_grad():
            policy_kl, _ = pref.sequence_stats(model, kl)

        def reference_logps(m: nn.Module) -> tuple[Tensor, Tensor]:
            return pref.sequence_stats(m, target)[0], pref.sequence_stats(m, kl)[0]

        ref_logps, ref_kl = self.reference.run(model, reference_logps)
        z0 = pref.mean_over_ranks(kto_kl_estimate(policy_kl, ref_kl))  # KTO estimates z_0 over the whole batch
        desirable = batch["kto_tags"].to(logps.device).bool()
        losses, rewards = kto_loss(logps, ref_logps, z0, desirable, beta=self.beta, **self.weights)
        loss = losses.mean()
        if self.ftx > 0:
            loss = loss + self.ftx * (sft_term(logps, lengths) * desirable).sum() / desirable.numel()
        return loss, self._metrics(logps.detach(), rewards, desirable, z0)

    def _metrics(self, logps: Tensor, rewards: Tensor, desirable: Tensor, z0: Tensor) -> dict[str, Any]:
        metrics: dict[str, Any] = {pref.KL: z0}
        for mask, reward_key, logps_key in ((desirable, pref.REWARDS_CHOSEN, pref.LOGPS_CHOSEN),
                                            (~desirable, pref.REWARDS_REJECTED, pref.LOGPS_REJECTED)):
            count = mask.sum()
            metrics[logps_key] = ratio((logps * mask).sum(), count)
            if self.reference.reports_rewards:
                metrics[reward_key] = ratio((rewards * mask).sum(), count)
        return metrics


def run(cfg: Config) -> dict[str, Any]:
    from ...data.collator import build_collator
    from ..core.trainer import build_trainer

    p = prepare(cfg)
    reference = pref.build_reference(cfg, p.model, p.tokenizer)
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, p.data.eval, build_collator(cfg, p.tokenizer),
                            compute_loss=KTOLoss(cfg, reference))
    pref.prepare_reference(trainer, reference)
    return train_and_evaluate(cfg, trainer, p)

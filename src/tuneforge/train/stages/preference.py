"""What the preference stages (rm, dpo, kto) share: the reference model, sequence log-probabilities, metric names,
and the set-up of the reference model.

* :class:`Reference` / :func:`build_reference` - where reference log-probabilities come from (LLaMA-Factory's
  ``create_ref_model``): nothing for reference-free losses; ``ref_model`` when given; for LoRA the policy itself
  with its adapter disabled (no second copy); for full/freeze a second, frozen copy of the base; and in an
  evaluation-only run the evaluated model itself (its ``rewards/*`` metrics are then dropped, as they are 0).
* :func:`sequence_stats` / :func:`pair_logps` - chunked log-probabilities (never a full-vocabulary fp32
  ``log_softmax``) summed or length-averaged per sequence, LD-DPO weighting, split into chosen/rejected halves.
* :func:`prepare_reference` - dropout off in policy and reference, a separate reference frozen on the device.
  Per-example loss averaging is ``StageLoss.per_example = True`` (LLaMA-Factory turns
  ``model_accepts_loss_kwargs`` off for these stages); exact ``Σ/count`` metrics are
  :func:`~tuneforge.train.core.callbacks.ratio` values, which every trainer's meter folds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from ...config.schema import Config
from ...losses import IGNORE_INDEX, model_token_logps, sequence_logps, sft_term
from ..core.lifecycle import disable_dropout

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

logger = logging.getLogger(__name__)

# LLaMA-Factory's metric names (the trainer adds the ``eval_`` prefix in evaluation).
REWARDS_CHOSEN, REWARDS_REJECTED = "rewards/chosen", "rewards/rejected"
REWARDS_ACCURACIES, REWARDS_MARGINS = "rewards/accuracies", "rewards/margins"
LOGPS_CHOSEN, LOGPS_REJECTED = "logps/chosen", "logps/rejected"
KL, ACCURACY = "kl", "accuracy"

# ---- the reference model -----------------------------------------------------------------------------------------


def peft_model_of(model: nn.Module) -> Any:
    """The ``PeftModel`` inside DDP / DeepSpeed / compile wrappers, or None for a plain model."""
    from peft import PeftModel

    while not isinstance(model, PeftModel):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return None
        model = inner
    return model


@dataclass
class Reference:
    """Where reference log-probabilities come from.

    Attributes:
        kind: ``"none"`` (reference-free loss), ``"adapter"`` (the LoRA policy with its adapter disabled),
            ``"model"`` (a separate frozen model) or ``"policy"`` (evaluation only: the evaluated model itself).
        model: the separate model for ``"model"``, else None.
    """

    kind: Literal["none", "adapter", "model", "policy"]
    model: nn.Module | None = None

    @property
    def reports_rewards(self) -> bool:
        """False when the reference is the policy itself: the implicit rewards are 0 by construction."""
        return self.kind != "policy"

    def run(self, policy: nn.Module, fn: Callable[[nn.Module], Any]) -> Any:
        """``fn(model)`` under ``torch.no_grad()`` with the reference weights (``policy`` is the trained model).

        Raises:
            RuntimeError: for a reference-free loss (``kind="none"``), which must not ask for reference values.
        """
        if self.kind == "none":
            raise RuntimeError("a reference-free loss asked for reference log-probabilities")
        with torch.no_grad():
            if self.kind == "adapter":
                # The same weights minus the adapter: the base model the LoRA run started from, no second copy.
                with peft_model_of(policy).disable_adapter():
                    return fn(policy)
            return fn(self.model if self.kind == "model" else policy)


def load_reference_model(cfg: Config, tokenizer: Tokenizer) -> nn.Module:
    """The frozen reference: ``ref_model`` (+ ``ref_model_adapters`` merged, ``ref_model_quantization_bit``), or,
    without it, a second copy of the run's model (its adapters merged). See :func:`workflow.load_frozen_model`."""
    from ..core.workflow import load_frozen_model

    ft, model = cfg.finetuning, cfg.model
    if ft.ref_model:
        source = (ft.ref_model, ft.ref_model_adapters, ft.ref_model_quantization_bit)
    else:
        source = (model.model_name_or_path, model.adapter_name_or_path, model.quantization_bit)
    logger.info("reference model: %s", source[0])
    return load_frozen_model(cfg, tokenizer, *source)


def build_reference(cfg: Config, model: nn.Module, tokenizer: Tokenizer, *, reference_free: bool = False) -> Reference:
    """The :class:`Reference` of a dpo/kto run (see the module docstring for the order of choices)."""
    if reference_free:
        return Reference("none")
    if cfg.finetuning.ref_model:
        return Reference("model", load_reference_model(cfg, tokenizer))
    if not cfg.training.do_train:
        return Reference("policy")
    if peft_model_of(model) is not None:
        return Reference("adapter")
    return Reference("model", load_reference_model(cfg, tokenizer))


# ---- log-probabilities -------------------------------------------------------------------------------------------


def ld_weighted_logps(token_logps: Tensor, labels: Tensor, alpha: float) -> Tensor:
    """LD-DPO sequence log-probabilities of a pair batch (2n rows: n chosen, then n rejected).

    Liu et al. 2024, "Length Desensitization in Direct Preference Optimization" (LD-DPO), as LLaMA-Factory's
    ``get_batch_logps``: the first ``min(|y_w|, |y_l|)`` response tokens of both replies count fully, the "verbose"
    rest is weighted by ``alpha``. Positions are counted from each row's first trained token.

    Args:
        token_logps: ``[2n, T]`` per-token log-probabilities (0 where untrained).
        labels: ``[2n, T]`` shifted labels.
        alpha: weight of the tokens beyond the shorter reply's length, in [0, 1].

    Returns:
        ``[2n]`` fp32 weighted sums.
    """
    mask = labels != IGNORE_INDEX
    lengths = mask.sum(-1)
    n = labels.shape[0] // 2
    public = torch.minimum(lengths[:n], lengths[n:]).repeat(2)  # [2n] the length both replies share
    start = mask.to(torch.int64).argmax(-1)
    position = torch.arange(labels.shape[-1], device=labels.device)
    front = position[None, :] < (start + public)[:, None]
    weights = torch.where(front, 1.0, alpha) * mask
    return (token_logps * weights).sum(-1)


def sequence_stats(
    model: nn.Module, batch: Mapping[str, Any], *, ld_alpha: float | None = None, chunk_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """``(log π(y|x) summed per row [B], trained tokens per row [B])`` from one chunked forward pass.

    ``ld_alpha`` (pair batches only) gives the LD-DPO weighted sums of :func:`ld_weighted_logps` instead.
    """
    token_logps, labels = model_token_logps(model, batch, chunk_size=chunk_size)
    lengths = (labels != IGNORE_INDEX).sum(-1)
    if ld_alpha is None:
        return sequence_logps(token_logps, labels), lengths
    return ld_weighted_logps(token_logps, labels, ld_alpha), lengths


@dataclass
class PairLogps:
    """Log-probabilities of a pair batch, each ``[n]`` fp32.

    Attributes:
        chosen, rejected: log π(y|x), summed, or length-averaged when the loss wants it (ipo/orpo/simpo).
        sft: ``−log π(y_w|x) / |y_w|`` per pair, the ``pref_ftx`` term (and ORPO's L_SFT).
    """

    chosen: Tensor
    rejected: Tensor
    sft: Tensor


def pair_logps(
    model: nn.Module, batch: Mapping[str, Any], *, average: bool, ld_alpha: float | None = None
) -> PairLogps:
    """:class:`PairLogps` of the 2n-row pair batch (rows ``0..n-1`` chosen, ``n..2n-1`` rejected) in one forward."""
    totals, lengths = sequence_stats(model, batch, ld_alpha=ld_alpha)
    values = totals / lengths.clamp(min=1) if average else totals
    n = totals.shape[0] // 2
    return PairLogps(values[:n], values[n:], sft_term(totals[:n], lengths[:n]))


# ---- trainer settings --------------------------------------------------------------------------------------------


def prepare_reference(trainer: Any, reference: Reference | None = None) -> None:
    """Dropout off in policy and reference; a separate reference model on the training device, frozen.

    (The per-example loss averaging every preference stage needs is ``StageLoss.per_example = True``.)
    """
    if reference is None:
        return
    disable_dropout(trainer.model)
    if reference.model is not None:
        from ...model.quantization import is_quantized

        disable_dropout(reference.model)
        if not is_quantized(reference.model):  # bitsandbytes models are placed at load time and cannot move
            reference.model.to(trainer.args.device)
        reference.model.requires_grad_(False).eval()


def mean_over_ranks(value: Tensor) -> Tensor:
    """Mean of a scalar over data-parallel ranks (itself on one process); every rank must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()

"""What a stage hands the trainer as its objective: a :class:`StageLoss`.

``loss(model, batch, num_items_in_batch) -> (loss, metrics)``. The loss must already be normalised over the whole
optimizer step: a token-normalised loss (``per_example = False``) divides its summed token loss by
``num_items_in_batch`` (trained tokens of every micro-batch of the step, on all ranks); a per-example loss
(``per_example = True``: rm, dpo, kto) returns the mean over its micro-batch's examples and is given
``num_items_in_batch = None`` (the trainer divides by the accumulation steps). ``metrics`` are logged as means since
the last log; ``derive_metrics(logged)`` adds metrics computed from those means (kto's ``rewards/margins``).
Example: ``TokenLoss()(model, {"input_ids": ..., "labels": ...}, 12)`` returns ``(loss, {})``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

Batch = dict[str, Any]


class StageLoss(ABC):
    """A stage's loss; subclasses set ``per_example`` and may add ``derive_metrics`` (see the module docstring)."""

    per_example: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, model: nn.Module, batch: Batch, num_items_in_batch: Tensor | int | None
                 ) -> tuple[Tensor, dict[str, Any]]:
        """``(loss normalised for the step, metrics of this micro-batch)``."""

    def derive_metrics(self, logged: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the logged means (none by default)."""
        return {}


class TokenLoss(StageLoss):
    """The default (pt, sft): chunked causal-LM cross-entropy over the trained tokens
    (:func:`tuneforge.losses.ce.causal_lm_loss`), Liger's fused linear cross-entropy with ``use_liger``."""

    def __init__(self, chunk_size: int = 1024, use_liger: bool = False) -> None:
        self.chunk_size, self.use_liger = chunk_size, use_liger

    def __call__(self, model: nn.Module, batch: Batch, num_items_in_batch: Tensor | int | None
                 ) -> tuple[Tensor, dict[str, Any]]:
        from ...losses.ce import causal_lm_loss

        return causal_lm_loss(model, batch, num_items_in_batch=num_items_in_batch, chunk_size=self.chunk_size,
                              use_liger=self.use_liger)


class FunctionLoss(StageLoss):
    """A plain ``fn(model, batch, num_items_in_batch) -> (loss, metrics)`` as a token-normalised loss (custom
    objectives, tests): ``FunctionLoss(my_fn)``."""

    def __init__(self, fn: Callable[[nn.Module, Batch, Tensor | int | None], tuple[Tensor, dict[str, Any]]]) -> None:
        self.fn = fn

    def __call__(self, model: nn.Module, batch: Batch, num_items_in_batch: Tensor | int | None
                 ) -> tuple[Tensor, dict[str, Any]]:
        return self.fn(model, batch, num_items_in_batch)

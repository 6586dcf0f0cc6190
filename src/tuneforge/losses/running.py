"""Running mean and standard deviation over a stream of batches (PPO score normalisation, the BCO baseline δ)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class RunningMoments:
    """Mean and population standard deviation of every value passed to :meth:`update` so far.

    Batches are merged with the parallel-variance formula of Chan, Golub & LeVeque 1979 ("Updating formulae and a
    pairwise algorithm for computing sample variances"), so the result equals the moments of the
    concatenation of all batches, without keeping them. Before the first update, ``mean == 0`` and ``std == 1``
    (normalising by it is the identity). Under data parallelism, gather the values first: each rank must see the
    same stream.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0
        self._m2 = 0.0  # sum of squared deviations from the mean

    @property
    def std(self) -> float:
        """Population standard deviation (1.0 before any update)."""
        return math.sqrt(self._m2 / self.count) if self.count else 1.0

    @torch.no_grad()
    def update(self, values: Tensor) -> tuple[float, float]:
        """Fold ``values`` (any shape, at least one element) into the moments and return ``(mean, std)``.

        Raises:
            ValueError: when ``values`` is empty.
        """
        if values.numel() == 0:
            raise ValueError("RunningMoments.update needs at least one value (got an empty tensor)")
        x = values.detach().double().reshape(-1)
        n, batch_mean = x.numel(), x.mean().item()
        batch_m2 = ((x - batch_mean) ** 2).sum().item()
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self._m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total
        return self.mean, self.std

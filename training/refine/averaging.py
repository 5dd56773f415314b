"""An exponential moving average of the refined weights: the model refinement saves.

Few corrected images under random transforms make a noisy gradient, and the held-out score of the weights after any
one step swings by several points from one step to the next (benchmarks/bench_refine.py, 10 corrected images:
25.9, 22.4, 27.7, 23.1 fg mIoU after 300, 450, 600, 750 steps). The average of the last few hundred steps' weights
keeps what they agree on and is what a person gets, whichever step a Stop or the time budget lands on.
"""
from __future__ import annotations

from typing import Sequence

import torch


class WeightAverage:
    """EMA of ``params`` with ``decay``; early on the decay is ``(1 + n) / (10 + n)`` after n updates, so a short
    run is not dominated by the starting weights."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"The weight average's decay must be in [0, 1), not {decay}.")
        self.params = list(params)
        self.decay = decay
        self.updates = 0
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Make the averaged weights the model's (at the end of a run)."""
        for param, average in zip(self.params, self.shadow):
            param.copy_(average)

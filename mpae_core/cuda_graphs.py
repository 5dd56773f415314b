"""CUDA graph replay for fixed-shape inference.

At the batch sizes an annotator uses (1-16 images), a ViT forward on a modern GPU is bound by kernel launches, not
arithmetic: eager PyTorch spends more time launching the PartFormer's small kernels than running them. Capturing the
whole forward once per input shape and replaying it removes that cost. Shapes are few (the batch size and the last
partial batch), so one graph per shape is cheap.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

logger = logging.getLogger(__name__)


class GraphedFunction:
    """Calls ``fn(x)`` through a CUDA graph captured for each distinct input shape; plain calls elsewhere.

    The returned tensor is a static buffer that the next call overwrites: consume or copy it first.
    A capture that fails (an op that cannot be captured) falls back to eager calls for that shape.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, enabled: bool = True, warmup: int = 2) -> None:
        self.fn = fn
        self.enabled = enabled
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.enabled and x.is_cuda):
            return self.fn(x)
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        entry = self._graphs[key]
        if entry is None:
            return self.fn(x)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None:
        static_in = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        try:
            with torch.cuda.stream(side):  # warm-up runs (lazy init, autotuning) must happen off the capture
                for _ in range(self.warmup):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.fn(static_in)
        except RuntimeError as exc:
            logger.warning("CUDA graph capture failed for input %s (%s); running eagerly.", tuple(x.shape), exc)
            torch.cuda.synchronize(x.device)
            return None
        return graph, static_in, static_out

    def clear(self) -> None:
        """Drop the captured graphs and their memory pools (e.g. before moving the model)."""
        self._graphs.clear()

"""Shared pieces of the two small pixel ViTs (PartFormer, restoration network): sin-cos tables and init."""
from __future__ import annotations

import torch
from torch import nn


def init_linear_and_norm_(root: nn.Module, *, conv: bool = False) -> None:
    """Xavier-uniform Linear (and, with ``conv``, Conv2d) weights, zero biases, LayerNorm 1/0, as the reference."""
    layer_types = (nn.Linear, nn.Conv2d) if conv else (nn.Linear,)
    for module in root.modules():
        if isinstance(module, layer_types):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid_size: int) -> torch.Tensor:
    """[grid², dim] table, row-major over the grid; first half encodes the column, second half the row.

    Computed in float64 and rounded once to float32, as the reference does.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a dimension divisible by 4, got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    table = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)
    return table.float()

"""Batching for dataset items, including the evaluation extras that PyTorch's default collate cannot stack.

Tensors of one shape are stacked, numbers and strings batched as ``default_collate`` does; the raw COCO
'annotations' (a different number of dicts per image) and tensors whose shapes differ stay per-item lists.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import default_collate

#: keys whose values are never stacked: one entry per image
PER_ITEM_KEYS = frozenset({"annotations"})


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch item dicts from any dataset of this package, train or eval."""
    if not batch:
        raise ValueError("collate got an empty batch.")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        ragged = (all(isinstance(v, torch.Tensor) for v in values)
                  and len({tuple(v.shape) for v in values}) > 1)
        out[key] = values if key in PER_ITEM_KEYS or ragged else default_collate(values)
    return out

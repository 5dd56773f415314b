"""Datasets for ``python -m training.run``: the four benchmarks in their real formats and any image folder.

Use :func:`build_dataset` and batch with :func:`collate` (needed for PartImageNet's eval 'annotations').
Items are dicts: 'image' [3, S, S] (ImageNet-normalised), 'index', 'path', labels, and in evaluation
(``train=False``) the targets in the S×S squashed frame; see each class's docstring.
"""
from __future__ import annotations

import os
from typing import Any

from .base import DatasetEntryError, DatasetFormatError, DatasetLayoutError, ImageDataset
from .collate import collate
from .datasets import (CUBDataset, CelebADataset, GTMaskFn, ImageFolderDataset, PartImageNetDataset)
from .transforms import AugmentConfig, eval_transform, squash_points, train_transform

DATASET_NAMES = ("cub", "celeba", "partimagenet_ood", "partimagenet_seg", "folder")

__all__ = ["AugmentConfig", "CUBDataset", "CelebADataset", "DATASET_NAMES", "DatasetEntryError", "DatasetFormatError",
           "DatasetLayoutError", "GTMaskFn", "ImageDataset", "ImageFolderDataset", "PartImageNetDataset",
           "build_dataset", "collate", "eval_transform", "squash_points", "train_transform"]


def build_dataset(name: str, root: str | os.PathLike, split: str | None, image_size: int, train: bool,
                  **kw: Any) -> ImageDataset:
    """The dataset ``name`` at ``root``; ``kw`` goes to its class (``augment``, ``gt_mask_fn``, ``recursive``, ...).

    ``split`` is 'train' or 'test' ('mafl_train' too for CelebA); the folder dataset has no splits and ignores it.
    """
    key = name.strip().lower()
    if key == "cub":
        return CUBDataset(root, split or "train", image_size, train, **kw)
    if key == "celeba":
        return CelebADataset(root, split or "train", image_size, train, **kw)
    if key in ("partimagenet_ood", "partimagenet_seg"):
        return PartImageNetDataset(root, key.rsplit("_", 1)[1], split or "train", image_size, train, **kw)
    if key == "folder":
        return ImageFolderDataset(root, image_size, train, **kw)
    raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}.")

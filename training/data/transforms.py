"""Image transforms of the reference recipe (docs/mpae-reference.md §2).

Train: Resize(S) on the shorter side (bilinear, antialias) → RandomHorizontalFlip → RandomAffine (nearest, fill 0)
→ RandomCrop(S) → ToTensor → ImageNet Normalize.  The reference's ``ColorJitter()`` has default arguments and does
nothing, so it is left out.  Eval (the reference's "test transform"): Resize((S, S)) squash (antialias) → ToTensor
→ Normalize, the same pixels as ``mpae_core.inference.preprocess``.  Random steps draw from torch's global RNG, so
``torch.manual_seed`` (and a seeded DataLoader ``generator``, which seeds its workers) makes them repeatable.
ToTensor + Normalize is ``mpae_core.inference.normalise`` (x / 255, − mean, / std), bit for bit torchvision's v1
``ToTensor``/``Normalize`` that the reference uses; v2's ``ToDtype(scale=True)`` multiplies by 1/255 instead and
differs in the last bit on about 40 % of the values.

Keypoints never go through the random geometry: only evaluation uses them, and evaluation uses the squash, where a
point (x, y) of a W×H image lands at (x·S/W, y·S/H) (:func:`squash_points`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from mpae_core.inference import normalise

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class AugmentConfig:
    """Train augmentation parameters; the defaults are the reference's (flip 0.5, ±15°, 5 % shift, ±5 % scale).

    ``enabled=False`` trains on the eval transform (squash, no randomness).
    """

    flip: float = 0.5  # probability of a horizontal flip
    degrees: float = 15.0  # rotation drawn from [-degrees, degrees]
    translate: tuple[float, float] = (0.05, 0.05)  # max shift as a fraction of width, height
    scale_range: tuple[float, float] = (0.95, 1.05)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"AugmentConfig.flip is a probability in [0, 1], got {self.flip}.")
        if self.degrees < 0:
            raise ValueError(f"AugmentConfig.degrees must be >= 0, got {self.degrees}.")
        if len(self.translate) != 2 or not all(0.0 <= t <= 1.0 for t in self.translate):
            raise ValueError(f"AugmentConfig.translate is two fractions in [0, 1], got {self.translate}.")
        low, high = self.scale_range
        if not 0.0 < low <= high:
            raise ValueError("AugmentConfig.scale_range must be (low, high) with 0 < low <= high, "
                             f"got {self.scale_range}.")


def to_normalised_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → [3, H, W] ImageNet-normalised float32, bit for bit the reference's ToTensor + Normalize."""
    return normalise(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1))


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")


def eval_transform(image_size: int) -> Transform:
    """Evaluation transform: squash to S×S (bilinear, antialias), then normalise."""
    _check_size(image_size)
    return v2.Compose([v2.Resize((image_size, image_size), interpolation=InterpolationMode.BILINEAR, antialias=True),
                       to_normalised_tensor])


def train_transform(image_size: int, augment: AugmentConfig | None = None) -> Transform:
    """The reference's train augmentation at S = ``image_size`` (the eval transform when ``augment.enabled`` is off)."""
    cfg = augment or AugmentConfig()
    if not cfg.enabled:
        return eval_transform(image_size)
    _check_size(image_size)
    return v2.Compose([
        v2.Resize(image_size, interpolation=InterpolationMode.BILINEAR, antialias=True),
        v2.RandomHorizontalFlip(cfg.flip),
        v2.RandomAffine(degrees=cfg.degrees, translate=cfg.translate, scale=cfg.scale_range,
                        interpolation=InterpolationMode.NEAREST, fill=0),
        v2.RandomCrop(image_size),
        to_normalised_tensor,
    ])


def squash_points(points: np.ndarray, width: int, height: int, image_size: int, *,
                  divide_first: bool = False) -> np.ndarray:
    """[..., 2] pixel (x, y) in a width×height image → the same points in the S×S squashed frame, float64.

    In float64 and in the reference loader's order of operations, (x·S)/W (CUB) or, with ``divide_first``, x/W·S
    (CelebA), because a point that lands exactly between two cells of the 128×128 map is read by rounding: the last
    bit decides which part it gets.
    """
    p = np.asarray(points, dtype=np.float64)
    frame = np.array([width, height], dtype=np.float64)
    return p / frame * image_size if divide_first else p * image_size / frame

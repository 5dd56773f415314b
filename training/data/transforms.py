"""Image transforms of the reference recipe (docs/mpae-reference.md §2).

Train: Resize(S) on the shorter side (bilinear, antialias) → RandomHorizontalFlip → RandomAffine (nearest, fill 0)
→ RandomCrop(S) → ToTensor → ImageNet Normalize.  The reference's ``ColorJitter()`` has default arguments and does
nothing, so it is left out.  Eval (the reference's "test transform"): Resize((S, S)) squash (antialias) → ToTensor
→ Normalize, the same pixels as ``mpae_core.inference.preprocess``.  Random steps draw from torch's global RNG, so
``torch.manual_seed`` (and a seeded DataLoader ``generator``, which seeds its workers) makes them repeatable.

Keypoints never go through the random geometry: only evaluation uses them, and evaluation uses the squash, where a
point (x, y) of a W×H image lands at (x·S/W, y·S/H) (:func:`squash_points`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from mpae_core.inference import IMAGENET_MEAN, IMAGENET_STD

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


def _normalised_tensor() -> list[v2.Transform]:
    """ToTensor + ImageNet Normalize, returning a plain tensor (not a tv_tensors.Image)."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)), v2.ToPureTensor()]


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")


def eval_transform(image_size: int) -> Transform:
    """Evaluation transform: squash to S×S (bilinear, antialias), then normalise."""
    _check_size(image_size)
    return v2.Compose([v2.Resize((image_size, image_size), interpolation=InterpolationMode.BILINEAR, antialias=True),
                       *_normalised_tensor()])


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
        *_normalised_tensor(),
    ])


def squash_points(points: np.ndarray, width: int, height: int, image_size: int) -> np.ndarray:
    """[..., 2] pixel (x, y) in a width×height image → the same points in the S×S squashed frame."""
    scale = np.array([image_size / width, image_size / height], dtype=np.float32)
    return np.asarray(points, dtype=np.float32) * scale


def squash_bilinear(image: Image.Image, size: int) -> Image.Image:
    """Squash to size×size with plain bilinear sampling and no antialias, like ``cv2.resize(INTER_LINEAR)``.

    The CelebA reference squashes every image to 224×224 this way before its transform (reference §2); Pillow's
    bilinear would average over the whole footprint when shrinking, which cv2 does not.
    """
    if image.size == (size, size):
        return image
    array = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.interpolate(array, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    pixels = out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)

"""Transformed views of the corrected images: what makes a few corrections teach the other images.

A handful of corrected images is a handful of colour combinations, poses and sizes. Fitted as they are, the
PartFormer learns exactly those: agreement with the corrections climbs past 93 % while the held-out images barely
move (benchmarks/bench_refine.py before this: +5 fg mIoU with 3 corrected images, +7 with 10). So in every step each
corrected image in the batch is shown under a fresh random transform, its targets moved with it, and the frozen
backbone encodes the transformed pixels (the feature cache cannot hold them; it is only ``corrected_per_step``
images a step, a small part of the step's cost next to the PartFormer's forward and backward passes):

* geometry: rotation within ±``rotation_deg``, scale within ×1/``scale``..×``scale``, shift within ±``shift`` of the
  side; pixels are sampled bilinearly and targets nearest, both with reflection at the borders, so every pixel
  keeps a target (the mirror views come from the cache, as without augmentation);
* colour: the three channels in a random order, each inverted with probability ``invert``, then a random gain per
  channel (±``gain``), contrast (±``contrast``) and brightness (±``brightness``). A part is its shape and its place
  in the object, not its colour: the same wing comes in every colour in the synthetic set, and a person who paints
  one brown sparrow's wing means the wing of the next, grey, bird too.

Measured on bench_refine (start model 7.4 held-out fg mIoU; 300 steps, same seeds): 3 corrected images 12.9 without
augmentation, 21.9 with colour and geometry; 10 images 16.2 with geometry alone, 25.9 with both. Neither the
default inference nor training is touched: the transforms live only in refinement's batches of corrected images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MODES = ("none", "geometry", "colour", "colour+geometry")


@dataclass
class AugmentConfig:
    """Strengths of the random transforms (see the module docstring); the defaults are the benchmarked ones."""

    mode: str = "colour+geometry"
    rotation_deg: float = 30.0
    scale: float = 1.35
    shift: float = 0.25
    invert: float = 0.3
    gain: float = 0.3
    contrast: float = 0.3
    brightness: float = 0.15

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"Unknown augmentation {self.mode!r}; choose one of {', '.join(MODES)}.")


def _uniform(count: int, generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Uniform in [-1, 1), [count, *shape], from the CPU generator (reproducible on any device)."""
    return torch.rand(count, *shape, generator=generator) * 2 - 1


def geometric(pixels: torch.Tensor, targets: torch.Tensor, cfg: AugmentConfig,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Float [B, 3, S, S] in [0, 1] and int [B, S, S] targets under one random similarity transform per image."""
    count = pixels.shape[0]
    angle = _uniform(count, generator) * math.radians(cfg.rotation_deg)
    zoom = torch.exp(_uniform(count, generator) * math.log(cfg.scale))
    shift = _uniform(count, generator, 2) * cfg.shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1).to(pixels.device)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    moved_targets = F.grid_sample(targets[:, None].float(), grid, mode="nearest", padding_mode="reflection",
                                  align_corners=False)[:, 0]
    return moved, moved_targets.round().to(targets.dtype)


def colour(pixels: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Float [B, 3, S, S] in [0, 1] with channels permuted, some inverted, and gain/contrast/brightness jittered."""
    count = pixels.shape[0]
    order = torch.stack([torch.randperm(3, generator=generator) for _ in range(count)]).to(pixels.device)
    x = pixels.gather(1, order[:, :, None, None].expand_as(pixels))
    inverted = (torch.rand(count, 3, 1, 1, generator=generator) < cfg.invert).to(x)
    x = inverted * (1 - x) + (1 - inverted) * x
    gain = (1 + _uniform(count, generator, 3, 1, 1) * cfg.gain).to(x)
    contrast = (1 + _uniform(count, generator, 1, 1, 1) * cfg.contrast).to(x)
    brightness = (_uniform(count, generator, 1, 1, 1) * cfg.brightness).to(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean) * gain + brightness


def augment(pixels: torch.Tensor, targets: torch.Tensor, cfg: AugmentConfig,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [B, 3, S, S] model inputs and their [B, S, S] targets → transformed uint8 inputs and targets."""
    if cfg.mode == "none" or pixels.shape[0] == 0:
        return pixels, targets
    x = pixels.float() / 255.0
    if "geometry" in cfg.mode:
        x, targets = geometric(x, targets, cfg, generator)
    if "colour" in cfg.mode:
        x = colour(x, cfg, generator)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), targets

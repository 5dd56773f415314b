"""Pillow's bilinear resize of uint8 images, bit for bit, as torch operations on any device.

The model's input is ``PIL.Image.resize((S, S), BILINEAR)`` (the reference's test transform). On a GPU machine that
resize is a third of the CPU time of the batch pipeline, so it runs on the device instead; computing exactly what
Pillow computes keeps the predictions identical whichever side resizes an image.

Pillow resamples in two separable passes, each rounding to uint8. A pass's weights come from the triangle filter
stretched by the scale factor (antialiasing when shrinking), normalised per output pixel and stored as 22-bit fixed
point; a pixel is ``clip((2**21 + sum(value * weight)) >> 22)``. Those integer sums are exact here too (int64), so
the result does not depend on the device. The order of the passes does change the result: Pillow runs the
horizontal pass first, except that from Pillow 13 it runs the vertical one first when the height shrinks by more
than twice as many pixels as the width (``ImagingResampleInner``). :func:`matches_installed_pillow` checks this
module against the Pillow that is installed, so a future change there turns device resizing off instead of
changing predictions.
"""
from __future__ import annotations

import functools
import logging
import math

import numpy as np
import PIL
import torch
from PIL import Image

logger = logging.getLogger(__name__)

PRECISION_BITS = 22  # Pillow's fixed-point weights for 8-bit images: 32 bits - 8 for the value - 2 for overshoot


def _triangle(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


@functools.lru_cache(maxsize=64)
def pillow_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """([out, taps] source indices, [out, taps] int64 fixed-point weights) of one bilinear pass from ``in_size``
    to ``out_size`` samples, computed in the same double-precision steps, in the same order, as Pillow.

    Unused taps (past an output's window) get weight 0 and a valid index, so every row has the same tap count.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the triangle's support is 1, stretched when shrinking
    taps = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_size, taps), dtype=np.int64)
    weight = np.zeros((out_size, taps), dtype=np.int64)
    step = 1.0 / filterscale  # Pillow multiplies by the reciprocal (rounded once), not divides
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        raw = [_triangle((x + first - center + 0.5) * step) for x in range(count)]
        total = 0.0
        for w in raw:
            total += w  # summed in order, as Pillow does
        for x, w in enumerate(raw):
            k = w / total if total != 0.0 else w
            weight[out, x] = int(k * (1 << PRECISION_BITS) + (0.5 if k >= 0 else -0.5))
        index[out] = np.minimum(first + np.arange(taps), in_size - 1)
    return index, weight


@functools.lru_cache(maxsize=64)
def _taps_on(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``pillow_taps`` kept on the device: a batch of one camera's photos should not upload them every time."""
    index, weight = pillow_taps(in_size, out_size)
    return torch.as_tensor(index, device=device), torch.as_tensor(weight, device=device)


def _pass(images: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """One fixed-point pass along ``dim`` (-1: width, -2: height) of an integer tensor → uint8-valued int64."""
    index_t, weight_t = _taps_on(images.shape[dim], out_size, images.device)
    shape = [1] * images.dim()
    shape[dim] = out_size
    total = torch.full((), 1 << (PRECISION_BITS - 1), dtype=torch.int64, device=images.device)
    for tap in range(index_t.shape[1]):
        total = total + images.index_select(dim, index_t[:, tap]).long() * weight_t[:, tap].view(shape)
    return (total >> PRECISION_BITS).clamp_(0, 255)


def _pillow_major() -> int:
    return int(PIL.__version__.split(".")[0])


def vertical_first(in_size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Whether Pillow runs the vertical pass first for this (H, W) → (h, w) resize."""
    shrink_rows, shrink_cols = in_size[0] - out_size[0], in_size[1] - out_size[1]
    return _pillow_major() >= 13 and shrink_rows > 0 and shrink_rows > 2 * shrink_cols


def resize_like_pillow(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [..., H, W] images (channels first) → uint8 [..., h, w], equal to Pillow's ``resize((w, h),
    BILINEAR)`` of each channel. Runs where the tensor is."""
    if images.dtype != torch.uint8:
        raise TypeError(f"resize_like_pillow takes uint8 images, got {images.dtype}.")
    height, width = size
    passes = [(width, -1), (height, -2)]
    if vertical_first(tuple(images.shape[-2:]), size):
        passes.reverse()
    out = images
    for length, dim in passes:
        if length != images.shape[dim]:
            out = _pass(out, length, dim)
    return out.to(torch.uint8) if out is not images else images.clone()


# (H, W) → (h, w) probes covering both pass orders, shrinking and enlarging, a 1-pixel side and a size kept
_PROBES = (((48, 64), (22, 22)), ((64, 48), (22, 22)), ((23, 21), (22, 22)), ((30, 7), (22, 22)), ((9, 40), (22, 22)),
           ((1, 35), (22, 22)), ((22, 50), (22, 22)), ((90, 20), (40, 18)))


@functools.lru_cache(maxsize=1)
def matches_installed_pillow() -> bool:
    """True when this module gives exactly what the installed Pillow's bilinear resize gives on random probes
    (a few milliseconds, once per process)."""
    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in _PROBES:
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(pixels).resize((ow, oh), Image.BILINEAR))
        got = resize_like_pillow(torch.from_numpy(pixels).permute(2, 0, 1), (oh, ow)).permute(1, 2, 0).numpy()
        if not np.array_equal(got, expected):
            logger.warning("Pillow %s resizes %dx%d to %dx%d differently from mpae_core.resize; images will be "
                           "resized on the CPU.", PIL.__version__, w, h, ow, oh)
            return False
    return True

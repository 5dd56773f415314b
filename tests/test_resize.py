"""mpae_core.resize reproduces Pillow's bilinear resize bit for bit (what lets a GPU resize the model input)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mpae_core.resize as resize
from mpae_core.resize import matches_installed_pillow, pillow_taps, resize_like_pillow

SIZES = [((480, 640), (224, 224)), ((640, 480), (224, 224)), ((100, 80), (224, 224)), ((37, 53), (28, 28)),
         ((1, 300), (14, 14)), ((225, 223), (224, 224)), ((300, 100), (224, 224)), ((17, 999), (224, 224)),
         ((224, 224), (224, 224)), ((224, 500), (224, 224)), ((1200, 900), (448, 448)), ((5, 3), (64, 40))]


def _pillow(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), Image.BILINEAR))


@pytest.mark.parametrize("in_size, out_size", SIZES)
def test_rgb_resize_equals_pillow_exactly(in_size, out_size):
    pixels = np.random.default_rng(sum(in_size)).integers(0, 256, size=(*in_size, 3), dtype=np.uint8)
    ours = resize_like_pillow(torch.from_numpy(pixels).permute(2, 0, 1), out_size).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, _pillow(pixels, out_size))


def test_batched_and_single_channel_images():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(3, 61, 47), dtype=np.uint8)  # three grayscale images of one size
    ours = resize_like_pillow(torch.from_numpy(gray), (28, 28)).numpy()
    for image, resized in zip(gray, ours):
        np.testing.assert_array_equal(resized, _pillow(image, (28, 28)))


def test_pass_order_matters_and_follows_pillow(monkeypatch):
    """For a resize where the height shrinks and the width grows, the two orders give different pixels; the
    one chosen is Pillow's (the exactness tests above would fail otherwise)."""
    pixels = np.random.default_rng(2).integers(0, 256, size=(225, 223, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(2, 0, 1)
    ours = resize_like_pillow(images, (224, 224))
    monkeypatch.setattr(resize, "vertical_first", lambda *a: not resize._pillow_major() >= 13)
    assert not torch.equal(resize_like_pillow(images, (224, 224)), ours)


def test_taps_sum_to_one_in_fixed_point():
    for in_size, out_size in [(640, 224), (480, 224), (100, 224), (7, 3)]:
        index, weight = pillow_taps(in_size, out_size)
        assert index.min() >= 0 and index.max() < in_size
        assert np.abs(weight.sum(axis=1) - (1 << resize.PRECISION_BITS)).max() <= weight.shape[1]


def test_matches_the_installed_pillow_and_rejects_floats():
    assert matches_installed_pillow()
    with pytest.raises(TypeError, match="uint8"):
        resize_like_pillow(torch.zeros(3, 4, 4), (2, 2))

"""The mpae_core pieces that let the app show an image without image-sized work: a screen-sized preview decode, the
confidence at chosen pixels only, and label maps built in row bands."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mpae_core.images import ImageLoadError, load_image, load_preview
from mpae_core.inference import PartPrediction, confidence_grid, label_map_at


def _photo(path, size=(1600, 1200), orientation: int | None = None):
    """A JPEG with a red block at the stored top-left corner (so orientation shows) on a smooth background."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    pixels[: height // 4, : width // 4] = (255, 0, 0)
    exif = None
    if orientation is not None:
        tags = Image.Exif()
        tags[0x0112] = orientation
        exif = tags.tobytes()
    Image.fromarray(pixels).save(path, quality=92, **({"exif": exif} if exif else {}))
    return path


def test_preview_fits_the_box_and_reports_the_full_size(tmp_path):
    path = _photo(tmp_path / "big.jpg")
    preview, full = load_preview(path, (400, 400))
    assert full == (1600, 1200)
    assert preview.mode == "RGB" and preview.size == (400, 300)
    reference = np.asarray(load_image(path).resize((400, 300), Image.BILINEAR), dtype=np.int16)
    assert np.abs(np.asarray(preview, dtype=np.int16) - reference).mean() < 4  # the same picture, scaled


def test_preview_never_enlarges_and_applies_exif_orientation(tmp_path):
    small = _photo(tmp_path / "small.jpg", size=(64, 48))
    preview, full = load_preview(small, (1000, 1000))
    assert preview.size == (64, 48) and full == (64, 48)
    rotated = _photo(tmp_path / "rotated.jpg", orientation=6)  # stored 1600x1200, shown 1200x1600
    preview, full = load_preview(rotated, (300, 400))
    assert full == (1200, 1600) and preview.size == (300, 400)
    red = np.asarray(preview)[: 400 // 8, -300 // 8 :]  # the stored top-left corner is now the top-right
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60


def test_preview_of_a_broken_file_is_one_clear_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        load_preview(broken, (100, 100))


def _smooth_logits(q: int = 7, h: int = 12, w: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, q, 3, 4, generator=generator) * 4
    return torch.nn.functional.interpolate(coarse, (h, w), mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("size", [(96, 128), (301, 199), (12, 16)])
def test_confidence_grid_equals_the_full_confidence_map(size):
    logits = _smooth_logits()
    full = PartPrediction.from_logits(logits, size).confidence_map()
    np.testing.assert_allclose(confidence_grid(logits, size), full, atol=2e-6)
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(size[0], 7, replace=False))
    cols = np.array([0, size[1] - 1, size[1] // 2])
    np.testing.assert_allclose(confidence_grid(logits.numpy(), size, rows, cols), full[np.ix_(rows, cols)], atol=2e-6)


def test_confidence_grid_in_small_bands_is_the_same(monkeypatch):
    import mpae_core.inference as inference

    logits = _smooth_logits(seed=3)
    whole = confidence_grid(logits, (200, 150))
    monkeypatch.setattr(inference, "BAND_BYTES", 4096)
    np.testing.assert_array_equal(confidence_grid(logits, (200, 150)), whole)


def test_label_map_rows_are_bands_of_the_whole_map():
    logits = _smooth_logits(seed=5)
    whole = label_map_at(logits, (250, 180))
    bands = [label_map_at(logits, (250, 180), rows=slice(start, start + 64)) for start in range(0, 250, 64)]
    np.testing.assert_array_equal(np.concatenate(bands), whole)
    assert label_map_at(logits, (250, 180), rows=slice(10, 10)).shape == (0, 180)

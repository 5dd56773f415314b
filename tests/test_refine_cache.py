"""The feature cache of refinement: the frozen backbone runs once per image and view, until the image changes."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_model
from mpae_core.images import ImageLoadError, load_image
from mpae_core.inference import preprocess
from training.refine.features import FeatureCache

SIZE = 56


@pytest.fixture(scope="module")
def model():
    return tiny_model(image_size=SIZE, group_size=2).eval()


def write_image(path, seed: int) -> None:
    pixels = (np.random.default_rng(seed).random((30, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def test_tokens_are_the_backbones_and_are_computed_once(model, tmp_path):
    write_image(tmp_path / "a.png", 0)
    cache = FeatureCache(model.backbone, model.cfg, tmp_path / "cache")
    first = cache.get([("a.png", tmp_path / "a.png", 0)])[0]
    with torch.no_grad():
        expected = model.backbone(preprocess(load_image(tmp_path / "a.png"), SIZE)[None])[0]
    torch.testing.assert_close(first.tokens.float(), expected, atol=2e-2, rtol=2e-3)  # stored as float16
    again = cache.get([("a.png", tmp_path / "a.png", 0)])[0]
    assert again is first and cache.encoded == 1

    fresh = FeatureCache(model.backbone, model.cfg, tmp_path / "cache")  # another run: read from disk
    from_disk = fresh.get([("a.png", tmp_path / "a.png", 0)])[0]
    assert fresh.encoded == 0 and fresh.read_from_disk == 1
    assert torch.equal(from_disk.tokens, first.tokens) and torch.equal(from_disk.pixels, first.pixels)


def test_the_mirror_view_is_the_mirrored_image(model, tmp_path):
    write_image(tmp_path / "a.png", 1)
    cache = FeatureCache(model.backbone, model.cfg)
    plain, mirror = cache.get([("a.png", tmp_path / "a.png", 0), ("a.png", tmp_path / "a.png", 1)])
    assert torch.equal(mirror.pixels, plain.pixels.flip(-1))
    assert not torch.allclose(mirror.tokens.float(), plain.tokens.float().flip(-1))  # a ViT does not mirror
    assert cache.encoded == 2


def test_a_changed_image_is_encoded_again(model, tmp_path):
    path = tmp_path / "a.png"
    write_image(path, 2)
    cache = FeatureCache(model.backbone, model.cfg, tmp_path / "cache")
    old = cache.get([("a.png", path, 0)])[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same pixels, new version
    cache.get([("a.png", path, 0)])
    assert cache.encoded == 2
    write_image(path, 3)  # replaced by another picture
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    new = FeatureCache(model.backbone, model.cfg, tmp_path / "cache").get([("a.png", path, 0)])[0]
    assert not torch.equal(new.pixels, old.pixels)  # the disk entry of the old file was not used


def test_another_backbone_never_reads_the_entries(model, tmp_path):
    write_image(tmp_path / "a.png", 4)
    FeatureCache(model.backbone, model.cfg, tmp_path / "cache").get([("a.png", tmp_path / "a.png", 0)])
    other = tiny_model(seed=1, image_size=SIZE, group_size=2)
    cache = FeatureCache(other.backbone, other.cfg, tmp_path / "cache")
    cache.get([("a.png", tmp_path / "a.png", 0)])
    assert cache.encoded == 1 and cache.read_from_disk == 0
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one folder per backbone identity


def test_memory_stays_bounded_and_a_damaged_entry_is_recomputed(model, tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", 10 + i)
    items = [(f"{i}.png", tmp_path / f"{i}.png", 0) for i in range(4)]
    one = FeatureCache(model.backbone, model.cfg).get(items[:1])[0].nbytes
    cache = FeatureCache(model.backbone, model.cfg, tmp_path / "cache", memory_bytes=2 * one)
    cache.get(items)
    assert cache.memory_held <= 2 * one
    entry = next((tmp_path / "cache").rglob("0.png.0.npz"))
    entry.write_bytes(b"not a zip file")
    fresh = FeatureCache(model.backbone, model.cfg, tmp_path / "cache")
    fresh.get(items[:1])
    assert fresh.encoded == 1


def test_a_vanished_image_raises_the_loaders_error(model, tmp_path):
    cache = FeatureCache(model.backbone, model.cfg)
    with pytest.raises(ImageLoadError, match="does not exist"):
        cache.get([("gone.png", tmp_path / "gone.png", 0)])

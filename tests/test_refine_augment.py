"""Refinement's transformed views of the corrected images: targets move with the pixels, colours change but never
the targets, the same seed gives the same views, and the backbone sees exactly the transformed pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mpae_core.inference import imagenet_stats
from refine_helpers import predicted_project
from training.refine import RefineConfig, Refiner, open_session
from training.refine.augment import AugmentConfig, augment
from training.refine.targets import NO_TARGET

S = 48
PALETTE = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)


def labelled_images(count: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose colour *is* the label (block shapes at several places), and those labels."""
    rng = np.random.default_rng(1)
    targets = np.zeros((count, S, S), dtype=np.int16)
    for i in range(count):
        for label in (1, 2, 3):
            y, x = rng.integers(4, S - 20, size=2)
            targets[i, y : y + 14, x : x + 12] = label
    targets = torch.from_numpy(targets)
    return PALETTE[targets.long()].permute(0, 3, 1, 2).contiguous(), targets


def test_geometry_moves_the_targets_with_the_pixels():
    pixels, targets = labelled_images()
    moved, moved_targets = augment(pixels, targets, AugmentConfig(mode="geometry"), torch.Generator().manual_seed(0))
    assert moved.dtype == torch.uint8 and moved_targets.dtype == targets.dtype
    assert not torch.equal(moved_targets, targets)  # the images did move
    assert set(moved_targets.unique().tolist()) <= {0, 1, 2, 3}  # reflection: every pixel keeps a real target
    colour_says = (moved.long()[:, None] - PALETTE.long()[None, :, :, None, None]).abs().sum(2).argmin(1)
    assert (colour_says == moved_targets).float().mean() > 0.95  # only pixels on an edge may differ


def test_colour_changes_pixels_but_never_targets_and_is_reproducible():
    pixels, targets = labelled_images()
    cfg = AugmentConfig(mode="colour")
    first = augment(pixels, targets, cfg, torch.Generator().manual_seed(3))
    again = augment(pixels, targets, cfg, torch.Generator().manual_seed(3))
    other = augment(pixels, targets, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(first[1], targets)
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], pixels)
    for image, labels in zip(first[0], targets):  # a region stays one colour: a part keeps its extent
        for label in labels.unique():
            region = image[:, labels == label]
            assert (region.float().std(dim=1) < 1.0).all()


def test_none_is_the_identity_and_a_bad_mode_is_refused():
    pixels, targets = labelled_images(2)
    same = augment(pixels, targets, AugmentConfig(mode="none"), torch.Generator())
    assert same[0] is pixels and same[1] is targets
    with pytest.raises(ValueError, match="Unknown augmentation 'rotate'"):
        AugmentConfig(mode="rotate")


@pytest.mark.parametrize("mode", ["none", "colour+geometry"])
def test_the_batch_holds_the_backbone_tokens_of_what_the_partformer_sees(tmp_path, mode):
    project = predicted_project(tmp_path, count=4)
    project.edits("img_0.png").brush(20, 18, 8, 1)
    project.mark_reviewed("img_1.png")
    project.save()
    cfg = RefineConfig(steps=1, batch_size=4, corrected_per_step=2, augment=mode, disk_cache=False)
    refiner = Refiner(open_session(project.images_folder), tmp_path / "run", cfg, device="cpu")
    pixels, tokens, targets = refiner._batch()
    mean, std = imagenet_stats()
    raw = ((pixels * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    torch.testing.assert_close(tokens.float(), refiner.cache.tokens_of(raw).float(), atol=2e-3, rtol=2e-3)
    assert targets.shape == (2, *pixels.shape[-2:]) and bool((targets != NO_TARGET).any())
    corrected = refiner.session.corrected
    cached = refiner.cache.get([(c.relpath, c.path, view) for c in corrected for view in (0, 1)])
    matches_a_cached_view = [any(torch.equal(row, view.pixels) for view in cached) for row in raw[:2]]
    assert matches_a_cached_view == [mode == "none"] * 2

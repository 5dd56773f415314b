"""Hand-computed cases for each loss term (the reference fixture covers the general case)."""
from __future__ import annotations

import math

import pytest
import torch

from mpae_core import losses


def _one_hot_maps(labels: torch.Tensor, q: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, q).permute(0, 3, 1, 2).float()


def test_foreground_presence_is_zero_when_every_part_fills_a_3x3_block():
    labels = torch.full((2, 8, 8), 2)  # background everywhere (K=2, Q=3)
    labels[0, :3, :3] = 0
    labels[1, 4:7, 4:7] = 1
    probs = _one_hot_maps(labels, 3)
    # each image holds one part at full strength, each part appears in the group: (1-1)+(1-1)
    assert losses.foreground_presence_loss(probs[:, :2], group_size=2).item() == pytest.approx(0.0)
    # groups of one: each group misses one of the two parts -> (1 - 0.5) + 0 per group
    assert losses.foreground_presence_loss(probs[:, :2], group_size=1).item() == pytest.approx(0.5)


def test_background_presence_uses_distance_to_centre():
    probs = torch.zeros(1, 2, 5, 5)
    probs[:, 1] = 1.0  # background everywhere: pooled 3x3 map is all ones, max distance weight is 1 at a corner
    assert losses.background_presence_loss(probs).item() == pytest.approx(0.0, abs=1e-6)
    probs[:, 1] = 0.5
    assert losses.background_presence_loss(probs).item() == pytest.approx(-math.log(0.5), rel=1e-6)


def test_total_variation_counts_label_boundaries():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :, 2:] = 1  # one vertical edge, 4 rows long, in two channels
    probs = _one_hot_maps(labels, 2)
    assert losses.total_variation_loss(probs).item() == pytest.approx(2 * 4 / 16)


def test_entropy_reference_and_paper_variants():
    probs = torch.full((2, 4, 3, 3), 0.25)
    ref = losses.entropy_loss(probs)
    assert ref.item() == pytest.approx(math.log(4), rel=1e-6)
    assert losses.entropy_loss(probs, "paper").item() == pytest.approx(9 * math.log(4) / 4, rel=1e-6)


def test_semantic_loss_prefers_matching_descriptors():
    torch.manual_seed(0)
    b, k, c = 2, 3, 8
    means = torch.randn(b, k, c)
    probs = torch.ones(b, k, 4, 4) / (k + 1)
    aligned = losses.semantic_loss(probs, means.clone(), means)
    shuffled = losses.semantic_loss(probs, means[:, [1, 2, 0]].clone(), means)
    assert aligned.item() < shuffled.item()
    # absent regions contribute zero to the reference mean
    absent = probs.clone()
    absent[:, 0] = 0
    assert losses.semantic_loss(absent, means, means).item() < aligned.item()


def test_semantic_paper_variant_differs_and_survives_all_absent():
    torch.manual_seed(1)
    means, descriptors = torch.randn(2, 3, 8), torch.randn(2, 3, 8, requires_grad=True)
    probs = torch.rand(2, 3, 4, 4)
    ref = losses.semantic_loss(probs, descriptors, means)
    paper = losses.semantic_loss(probs, descriptors, means, variant="paper")
    assert not torch.isclose(ref, paper)
    none_present = losses.semantic_loss(torch.zeros(2, 3, 4, 4), descriptors, means, variant="paper")
    none_present.backward()
    assert none_present.item() == 0.0 and torch.isfinite(descriptors.grad).all()


def test_constraint_losses_are_fp32_under_autocast():
    torch.manual_seed(2)
    logits = torch.randn(4, 5, 6, 6, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = losses.constraint_losses(logits.softmax(1), torch.randn(4, 5, 8).bfloat16(),
                                         torch.randn(4, 8, 6, 6).bfloat16(), group_size=2)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())

"""Refinement targets: a person's label map expressed in model slots, and the supervised term on it (issue 12)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mpae_core.annotation import AnnotationProject, PartTable
from mpae_core.annotation.labels import IGNORE_LABEL, UNSET, USER_LABEL_BASE
from mpae_core.inference import PartPrediction
from training.refine.objective import agreement, supervised_loss
from training.refine.targets import (
    NO_TARGET,
    SlotGroups,
    corrected_label_values,
    corrected_targets,
    is_corrected,
    sample_to_grid,
)

K = 5


def table() -> PartTable:
    """Slot 2 merged into slot 1, slot 3 exported as background, the rest plain."""
    parts = PartTable.default(K)
    parts.merge(2, 1)
    parts.set_as_background(3)
    return parts


def test_label_values_map_to_slot_groups():
    groups = SlotGroups.from_parts(table())
    assert groups.members == ((0,), (1, 2), (3,), (4,), (5,))  # roots in slot order, background (channel K) last
    labels = np.array([[0, 1, 2, 3], [4, 5, USER_LABEL_BASE, USER_LABEL_BASE + 7], [IGNORE_LABEL, UNSET, 0, 3]],
                      dtype=np.uint16)
    g = groups.targets(labels)
    background = groups.background
    assert g[0].tolist() == [background, 0, 1, 1]  # slots 1 and 2 (values 2, 3) are one merged target
    assert g[1].tolist() == [2, 3, NO_TARGET, NO_TARGET]  # slot 3 exported as background is still slot 3; user
    # labels (no slot): none
    assert g[2].tolist() == [NO_TARGET, NO_TARGET, background, 1]  # don't-care and unedited: no loss


def test_a_value_beyond_the_model_slots_is_refused():
    groups = SlotGroups.from_parts(PartTable.default(K))
    with pytest.raises(ValueError, match="only 5 slots"):
        groups.targets(np.array([[K + 1]], dtype=np.uint16))


def test_supervised_loss_is_cross_entropy_on_the_group_probability():
    groups = SlotGroups.from_parts(table())
    logits = torch.randn(1, K + 1, 2, 2)
    targets = torch.tensor([[[1, groups.background], [0, NO_TARGET]]], dtype=torch.int16)
    p = logits.softmax(dim=1)[0]
    expected = -(math.log(p[1, 0, 0] + p[2, 0, 0]) + math.log(p[K, 0, 1]) + math.log(p[0, 1, 0])) / 3
    assert float(supervised_loss(logits, targets, groups)) == pytest.approx(expected, rel=1e-5)


def test_the_balanced_loss_averages_over_labels_not_pixels():
    groups = SlotGroups.from_parts(PartTable.default(K))
    logits = torch.randn(1, K + 1, 1, 4)
    targets = torch.tensor([[[groups.background, groups.background, groups.background, 0]]], dtype=torch.int16)
    nll = -logits.log_softmax(dim=1)[0, :, 0]
    per_label = (nll[K, :3].mean() + nll[0, 3]) / 2
    assert float(supervised_loss(logits, targets, groups, balanced=True)) == pytest.approx(float(per_label), rel=1e-5)
    per_pixel = (nll[K, :3].sum() + nll[0, 3]) / 4
    assert float(supervised_loss(logits, targets, groups)) == pytest.approx(float(per_pixel), rel=1e-5)


def test_supervised_loss_upsamples_the_logits_to_the_targets():
    groups = SlotGroups.from_parts(PartTable.default(K))
    logits = torch.zeros(1, K + 1, 2, 2, requires_grad=True)
    targets = torch.full((1, 8, 8), NO_TARGET, dtype=torch.int16)
    targets[0, :4, :4] = 0
    loss = supervised_loss(logits, targets, groups)
    assert float(loss.detach()) == pytest.approx(math.log(K + 1))
    loss.backward()
    assert logits.grad[0, 0, 0, 0] < 0 and logits.grad[0, 0, 1, 1] < 0  # bilinear weights reach every grid cell
    assert float(supervised_loss(logits, torch.full_like(targets, NO_TARGET), groups).detach()) == 0.0


def test_agreement_counts_a_pixel_of_a_merged_label_on_any_member():
    groups = SlotGroups.from_parts(table())
    logits = torch.full((1, K + 1, 1, 3), -5.0)
    logits[0, 2, 0, 0] = logits[0, 1, 0, 1] = logits[0, 0, 0, 2] = 5.0  # slot 2, slot 1, slot 0
    targets = torch.tensor([[[1, 1, 1]]], dtype=torch.int16)  # all: the merged group of slots 1 and 2
    assert agreement(logits, targets, groups) == (2, 3)


def test_sample_to_grid_takes_the_pixel_under_each_centre():
    labels = np.arange(6 * 4).reshape(6, 4)
    assert sample_to_grid(labels, 2).tolist() == [[5, 7], [17, 19]]  # rows 1, 4; columns 1, 3
    assert sample_to_grid(labels, 8).shape == (8, 8)


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("edited.png", "reviewed.png", "plain.png", "edited_reviewed.png"):
        Image.new("RGB", (20, 16), (10, 200, 40)).save(folder / name)
    project = AnnotationProject.create(folder, parts=table())
    for i, rel in enumerate(project.relpaths()):
        logits = torch.full((K + 1, 4, 4), -4.0)
        logits[i % K] = 4.0  # the whole image predicted as slot i % K
        project.set_prediction(rel, PartPrediction.from_logits(logits, (16, 20)))
    project.edits("edited.png").brush(4, 4, 2, 5)  # slot 4
    project.mark_reviewed("reviewed.png")
    project.edits("edited_reviewed.png").brush(15, 10, 2, 0)
    project.mark_reviewed("edited_reviewed.png")
    return project


def test_which_pixels_a_person_corrected(project):
    records = {r.relpath: r for r in project.records()}
    assert [rel for rel, r in records.items() if is_corrected(r)] == ["edited.png", "edited_reviewed.png",
                                                                        "reviewed.png"]
    edited = corrected_label_values(project, records["edited.png"])
    assert np.count_nonzero(edited != UNSET) == project.edits("edited.png").edited_pixels  # only what was painted
    reviewed = corrected_label_values(project, records["reviewed.png"])
    assert (reviewed == project.label_map("reviewed.png")).all() and not (reviewed == UNSET).any()  # all confirmed

    groups = SlotGroups.from_parts(project.parts)
    edited_targets = corrected_targets(project, records["edited.png"], groups, 16)
    assert set(np.unique(edited_targets)) == {NO_TARGET, 3}  # slot 4's group; unedited pixels: no target
    both = corrected_targets(project, records["edited_reviewed.png"], groups, 16)
    assert NO_TARGET not in both and groups.background in both  # the painted background and the confirmed rest
    predicted_slot = project.label_map("edited_reviewed.png")[0, 0] - 1
    assert both[0, 0] == groups.value_to_group[predicted_slot + 1]

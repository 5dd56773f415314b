"""Edit layer: brush, stroke, erase, fill over the prediction, and undo/redo that stores only changed boxes."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.fill import flood_region
from mpae_core.annotation.labels import IGNORE_LABEL, UNSET


def prediction(height: int = 40, width: int = 60) -> np.ndarray:
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[5:20, 10:30] = 1
    labels[25:35, 5:55] = 2
    return labels


def reference_fill(labels: np.ndarray, x: int, y: int) -> np.ndarray:
    """Plain BFS, 4-connectivity: the region flood_region must find."""
    region = np.zeros(labels.shape, dtype=bool)
    value = labels[y, x]
    queue = deque([(y, x)])
    region[y, x] = True
    while queue:
        r, c = queue.popleft()
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < labels.shape[0] and 0 <= cc < labels.shape[1] and not region[rr, cc] \
                    and labels[rr, cc] == value:
                region[rr, cc] = True
                queue.append((rr, cc))
    return region


@pytest.mark.parametrize("seed", range(6))
def test_flood_region_equals_a_plain_bfs(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=(23, 31)).astype(np.uint16)
    for _ in range(10):
        x, y = int(rng.integers(0, 31)), int(rng.integers(0, 23))
        box, inside = flood_region(labels, x, y)
        full = np.zeros(labels.shape, dtype=bool)
        full[box] = inside
        np.testing.assert_array_equal(full, reference_fill(labels, x, y))


def test_flood_region_is_4_connected_not_8():
    labels = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    box, inside = flood_region(labels, 0, 0)
    assert inside.sum() == 1
    with pytest.raises(ValueError, match="outside"):
        flood_region(labels, 2, 0)


def test_brush_paints_a_disc_and_undo_redo_restore_it():
    pred = prediction()
    layer = EditLayer(pred.shape, num_parts=3)
    changed = layer.brush(30, 20, 3, 3)
    composed = layer.composed(pred)
    yy, xx = np.mgrid[:40, :60]
    disc = (xx - 30) ** 2 + (yy - 20) ** 2 <= 9
    assert changed == disc.sum() == layer.edited_pixels
    np.testing.assert_array_equal(composed, np.where(disc, 3, pred))
    assert layer.undo() and not layer.has_edits
    np.testing.assert_array_equal(layer.composed(pred), pred)
    assert layer.redo()
    np.testing.assert_array_equal(layer.composed(pred), composed)
    assert not layer.redo()


def test_stroke_is_the_brush_dragged_along_a_segment():
    layer = EditLayer((50, 300))
    layer.stroke(10, 25, 290, 25, 2, 1)  # longer than one piece: several boxes, one undo step
    painted = layer.data != UNSET
    yy, xx = np.mgrid[:50, :300]
    nearest_x = np.clip(xx, 10, 290)  # distance to a horizontal segment
    capsule = (xx - nearest_x) ** 2 + (yy - 25) ** 2 <= 4
    np.testing.assert_array_equal(painted, capsule)
    assert painted[23:28, 10:291].all() and painted.sum() == 5 * 281 + 2 * (1 + 3)
    assert layer.undo() and not layer.has_edits and not layer.can_undo


def test_erase_to_background_and_to_prediction():
    pred = prediction()
    layer = EditLayer(pred.shape)
    layer.erase(20, 10, 2)  # inside part 1
    assert layer.composed(pred)[10, 20] == 0 and layer.data[10, 20] == 0
    layer.brush(40, 30, 2, IGNORE_LABEL)
    assert layer.composed(pred)[30, 40] == IGNORE_LABEL
    layer.restore(20, 10, 5)  # back to the model's answer
    assert layer.composed(pred)[10, 20] == 1 and layer.data[10, 20] == UNSET
    assert layer.undo()
    assert layer.composed(pred)[10, 20] == 0
    assert layer.undo() and layer.undo()
    assert not layer.has_edits


def test_fill_uses_the_composed_map_and_undoes():
    pred = prediction()
    layer = EditLayer(pred.shape)
    layer.stroke(20, 0, 20, 39, 1, 3)  # a wall of label 3 splits the background in two
    before = layer.composed(pred)
    changed = layer.fill(0, 0, 2, pred)
    after = layer.composed(pred)
    expected_region = reference_fill(before, 0, 0)
    assert changed == expected_region.sum()
    np.testing.assert_array_equal(after, np.where(expected_region, 2, before))
    assert after[0, 59] == 0  # the other side of the wall stayed background
    assert layer.undo()
    np.testing.assert_array_equal(layer.composed(pred), before)
    assert layer.redo()
    np.testing.assert_array_equal(layer.composed(pred), after)


def test_group_makes_one_undo_step_and_new_edits_clear_redo():
    layer = EditLayer((30, 30))
    with layer.group():
        layer.brush(5, 5, 2, 1)
        layer.brush(20, 20, 2, 2)
    layer.brush(15, 15, 1, 1)
    assert layer.undo() and layer.undo()
    assert not layer.has_edits and not layer.can_undo
    assert layer.redo()
    layer.brush(0, 0, 1, 1)
    assert not layer.can_redo


def test_history_stores_changed_boxes_not_whole_masks():
    layer = EditLayer((3000, 4000))
    for i in range(200):
        layer.brush(100 + 15 * i, 1500, 5, 1)
    # 200 strokes of 11×11 pixels: a few tens of kilobytes, where whole masks would be 200 × 24 MB
    assert layer.history_bytes < 200 * 11 * 11 * 2 + 1
    big = EditLayer((3000, 4000))
    big.fill(0, 0, 1, np.zeros((3000, 4000), np.uint8))  # one full-image change is kept compressed
    assert big.history_bytes < 1_000_000


def test_fill_finishes_on_a_large_map():
    pred = np.zeros((3000, 4000), dtype=np.uint8)
    yy, xx = np.ogrid[:3000, :4000]
    pred[(yy - 1500) ** 2 + (xx - 2000) ** 2 < 1200**2] = 1
    pred[::50, :] = 2  # 60 horizontal lines cut the disc into bands
    pred[:, 3000:3010] = 2
    layer = EditLayer(pred.shape)
    changed = layer.fill(100, 25, 3, pred)  # the background band between lines 0 and 50, left of x=3000
    assert changed == 49 * 3000 - int(((yy[1:50] - 1500) ** 2 + (xx[:, :3000] - 2000) ** 2 < 1200**2).sum())
    changed = layer.fill(2000, 1525, 1, pred)  # already label 1: pins the band of the disc
    assert changed > 0 and layer.composed(pred)[1525, 2000] == 1


def test_invalid_input_is_refused():
    layer = EditLayer((10, 10), num_parts=2)
    with pytest.raises(ValueError, match="Label value 3 does not exist"):
        layer.brush(1, 1, 1, 3)
    with pytest.raises(ValueError, match="radius >= 0"):
        layer.brush(1, 1, -1, 1)
    with pytest.raises(ValueError, match="prediction is 11×10"):
        layer.composed(np.zeros((10, 11), np.uint8))
    assert layer.brush(-50, -50, 3, 1) == 0 and not layer.can_undo  # off the image: nothing, no empty undo step
    with pytest.raises(ValueError, match="model has only 2"):
        EditLayer((2, 2), np.full((2, 2), 5, np.uint16), num_parts=2)


def test_on_change_and_version_follow_every_change():
    layer = EditLayer((10, 10))
    seen = []
    layer.on_change = lambda l: seen.append(l.version)
    layer.brush(5, 5, 1, 1)
    layer.undo()
    layer.redo()
    assert seen == [1, 2, 3]


def test_changed_box_covers_each_change_undo_and_redo():
    """A view redraws only changed_box after a change, undo or redo, so that box must hold every touched pixel."""
    layer = EditLayer((40, 60))
    assert layer.changed_box is None
    with layer.group():
        layer.brush(10, 10, 2, 1)
        before = layer.data.copy()
        layer.brush(40, 30, 3, 2)
        rows, cols = layer.changed_box  # each change inside a group reports its own box
    outside = np.ones(layer.size, bool)
    outside[rows, cols] = False
    assert (layer.data != before).any() and not outside[layer.data != before].any()
    painted = layer.data.copy()
    layer.undo()
    rows, cols = layer.changed_box
    assert (rows.start, cols.start) <= (8, 8) and rows.stop >= 34 and cols.stop >= 44  # both brushes of the step
    outside = np.ones(layer.size, bool)
    outside[rows, cols] = False
    assert not outside[layer.data != painted].any()
    layer.redo()
    assert layer.changed_box == (rows, cols)
    layer.fill(50, 2, IGNORE_LABEL, prediction())
    rows, cols = layer.changed_box
    assert (layer.data[rows, cols] == IGNORE_LABEL).any() and (layer.data == IGNORE_LABEL).sum() == (
        layer.data[rows, cols] == IGNORE_LABEL).sum()

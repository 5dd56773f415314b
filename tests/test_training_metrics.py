"""training.metrics: NMI/ARI against hand-computed values and sklearn, pooled accumulation, keypoint sampling,
PartImageNet ground truth and NME."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from training.metrics import (
    ClusteringAccumulator,
    LandmarkSet,
    ari,
    ari_from_contingency,
    contingency_table,
    nme_cub,
    nme_mafl,
    nmi,
    nmi_from_contingency,
    part_activity,
    partimagenet_gt_mask,
    resize_nearest,
    sample_keypoint_labels,
    soft_centroids,
)


def _random_labelings(seed: int, n: int, k_gt: int, k_pred: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated random labelings, so scores are neither ~0 nor ~100."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, k_gt, size=n)
    pred = np.where(rng.random(n) < 0.6, gt % k_pred, rng.integers(0, k_pred, size=n))
    return gt, pred


# ---------------------------------------------------------------------------------------------------------------------
# NMI / ARI


def test_ari_hand_computed_pair_counts():
    # gt {0,1}{2,3}, pred {0,1}{2}{3}: tp=2, fp=0, fn=2, tn=8 (ordered pairs) -> 2*16/(4*10 + 2*8) = 4/7.
    assert ari([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(100 * 4 / 7, abs=1e-12)
    assert ari([0, 0, 1, 2], [0, 0, 1, 1]) == pytest.approx(100 * 4 / 7, abs=1e-12)
    assert ari([0, 0, 1, 1], [1, 1, 0, 0]) == 100.0  # relabelled but identical partition
    assert ari([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(0.0, abs=1e-12)


def test_nmi_hand_computed():
    # gt {0,1}{2,3}, pred {0,1,2}{3}.
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_gt = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = 100 * mi / ((h_gt + h_pred) / 2)
    assert nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected, abs=1e-10)
    assert nmi_from_contingency([[2, 0], [1, 1]]) == pytest.approx(expected, abs=1e-10)


def test_degenerate_cases_follow_sklearn():
    one = np.zeros(5, dtype=np.int64)
    split = np.array([0, 1, 0, 1, 2])
    assert ari(one, one) == 100.0 and nmi_from_contingency(contingency_table(one, one)) == 100.0
    assert ari([], []) == 100.0 and nmi_from_contingency(np.zeros((0, 0), np.int64)) == 100.0
    assert ari([3], [7]) == 100.0
    assert nmi_from_contingency(contingency_table(one, split)) == 0.0 == 100 * normalized_mutual_info_score(one, split)
    assert ari(one, split) == pytest.approx(100 * adjusted_rand_score(one, split), abs=1e-12)
    # Independent labelings: MI = 0 exactly.
    assert nmi_from_contingency([[1, 1], [1, 1]]) == 0.0


@pytest.mark.parametrize("seed,n,k_gt,k_pred", [(0, 50, 3, 4), (1, 1000, 15, 9), (2, 7, 2, 2), (3, 5000, 41, 51)])
def test_ari_and_nmi_match_sklearn_on_random_labelings(seed, n, k_gt, k_pred):
    gt, pred = _random_labelings(seed, n, k_gt, k_pred)
    assert ari(gt, pred) == pytest.approx(100 * adjusted_rand_score(gt, pred), abs=1e-9)
    assert nmi(gt, pred) == pytest.approx(100 * normalized_mutual_info_score(gt, pred), abs=1e-12)
    assert nmi_from_contingency(contingency_table(gt, pred)) == pytest.approx(nmi(gt, pred), abs=1e-9)


def test_arbitrary_label_values_are_accepted():
    gt, pred = _random_labelings(4, 300, 5, 6)
    gt_str = np.array(["abcde"[i] for i in gt])
    pred_big = pred * 1_000_003 - 7  # negative and beyond the dense-table range
    assert ari(gt_str, pred_big) == pytest.approx(100 * adjusted_rand_score(gt, pred), abs=1e-9)
    assert nmi(torch.from_numpy(gt), torch.from_numpy(pred)) == pytest.approx(nmi(gt, pred), abs=1e-12)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes"):
        ari(np.zeros(4, int), np.zeros(5, int))


def test_accumulator_pooled_over_batches_equals_one_shot_sklearn():
    rng = np.random.default_rng(5)
    acc = ClusteringAccumulator()
    all_gt, all_pred = [], []
    for b in range(6):
        # Label ranges grow over batches (the table must grow), shapes differ, half the batches are tensors.
        k_gt, k_pred = 3 + 2 * b, 2 + 3 * b
        shape = (int(rng.integers(1, 4)), 16, 16)
        gt = rng.integers(0, k_gt, size=shape)
        pred = np.where(rng.random(shape) < 0.5, gt % k_pred, rng.integers(0, k_pred, size=shape))
        if b % 2:
            acc.update(torch.from_numpy(gt), torch.from_numpy(pred).to(torch.int32))
        else:
            acc.update(gt.astype(np.uint8), pred)
        all_gt.append(gt.ravel())
        all_pred.append(pred.ravel())
    gt, pred = np.concatenate(all_gt), np.concatenate(all_pred)
    assert acc.num_samples == gt.size
    assert acc.nmi() == pytest.approx(100 * normalized_mutual_info_score(gt, pred), abs=1e-9)
    assert acc.ari() == pytest.approx(100 * adjusted_rand_score(gt, pred), abs=1e-9)
    assert acc.compute() == {"nmi": acc.nmi(), "ari": acc.ari()}


def test_accumulator_merge_equals_single_accumulator():
    gt, pred = _random_labelings(6, 2000, 8, 5)
    whole, a, b = ClusteringAccumulator(), ClusteringAccumulator(), ClusteringAccumulator()
    whole.update(gt, pred)
    a.update(gt[:700], pred[:700])
    b.update(gt[700:] % 4, pred[700:])  # b's table is smaller than a's: merge must align by label
    b_counts = b.counts
    whole2 = ClusteringAccumulator()
    whole2.update(np.concatenate([gt[:700], gt[700:] % 4]), pred)
    a.merge(b)
    np.testing.assert_array_equal(a.counts, whole2.counts)
    np.testing.assert_array_equal(ClusteringAccumulator.from_counts(b_counts).counts, b_counts)


@pytest.mark.parametrize("gt,pred,match", [
    (np.array([0, -1]), np.array([0, 1]), "non-negative"),
    (np.array([0.0, 1.0]), np.array([0, 1]), "non-negative integers"),
    (np.array([0, 1]), np.array([0, 1, 2]), "shapes"),
])
def test_accumulator_rejects_bad_labels(gt, pred, match):
    with pytest.raises(ValueError, match=match):
        ClusteringAccumulator().update(gt, pred)


def _ari_hubert_arabie(counts: np.ndarray) -> Fraction:
    """Independent exact reference: the combinatorial (Hubert-Arabie) ARI with Python integers and fractions."""
    c = [[int(v) for v in row] for row in counts]
    comb2 = lambda x: x * (x - 1) // 2  # noqa: E731
    n = sum(map(sum, c))
    index = sum(comb2(v) for row in c for v in row)
    a = sum(comb2(sum(row)) for row in c)
    b = sum(comb2(sum(col)) for col in zip(*c))
    expected = Fraction(a * b, comb2(n))
    return (index - expected) / (Fraction(a + b, 2) - expected)


def test_ari_is_exact_for_a_huge_contingency():
    # 1.4e10 samples: n² ≈ 2e20 overflows int64, a float64 n² loses the low digits that tp·tn − fn·fp depends on.
    counts = np.array([[3_000_000_007, 1_000_000_003, 5], [2_000_000_011, 4_000_000_001, 0],
                       [7, 0, 4_000_000_019]], dtype=np.int64)
    expected = float(_ari_hubert_arabie(counts)) * 100
    assert ari_from_contingency(counts) == pytest.approx(expected, rel=1e-12)
    acc = ClusteringAccumulator.from_counts(counts)
    assert acc.num_samples == int(counts.sum())
    assert acc.ari() == pytest.approx(expected, rel=1e-12)
    # NMI depends only on proportions: the 1e9-scaled table gives sklearn's NMI of the small one.
    small = np.array([[3, 1], [2, 4]])
    gt = np.repeat([0, 0, 1, 1], small.ravel())
    pred = np.repeat([0, 1, 0, 1], small.ravel())
    assert nmi_from_contingency(small * 1_000_000_000) == pytest.approx(
        100 * normalized_mutual_info_score(gt, pred), abs=1e-9)


def test_ari_from_contingency_matches_sklearn_on_small_tables():
    rng = np.random.default_rng(7)
    for _ in range(5):
        counts = rng.integers(0, 6, size=(4, 5))
        i, j = np.nonzero(counts)
        gt = np.repeat(i, counts[i, j])
        pred = np.repeat(j, counts[i, j])
        assert ari_from_contingency(counts) == pytest.approx(100 * adjusted_rand_score(gt, pred), abs=1e-9)
    with pytest.raises(ValueError, match="negative"):
        ari_from_contingency([[1, -1]])


# ---------------------------------------------------------------------------------------------------------------------
# Keypoints


def _hand_probs() -> torch.Tensor:
    """[1, 3, 4, 4]: channel 0 and 1 foreground, 2 background. Cell (row 0, col 2) is background-first but part 1
    beats part 0 there; cell (row 3, col 1) is part 0."""
    p = torch.zeros(1, 3, 4, 4)
    p[0, 2] = 0.5
    p[0, 0, 3, 1] = 0.9
    p[0, 1, 0, 2] = 0.3
    p[0, 0, 0, 2] = 0.2
    return p


def test_keypoint_sampling_nearest_lookup_and_visibility():
    probs = _hand_probs()
    # Input 8×8, map 4×4: each map cell covers 2×2 input pixels.
    kps = torch.tensor([[[5.0, 1.0], [3.0, 7.5], [0.5, 0.5]]])
    out = sample_keypoint_labels(probs, kps, 8)
    np.testing.assert_array_equal(out.gt, [0, 1, 2])
    np.testing.assert_array_equal(out.pred, [2, 0, 2])  # background wins at (0,2) and (0,0)
    np.testing.assert_array_equal(out.pred_fg, [1, 0, 0])  # among the parts: 1 at (0,2), 0 at (3,1), tie -> 0
    hidden = sample_keypoint_labels(probs, kps, 8, visible=torch.tensor([[1.0, 0.3, 0.7]]))  # 0.3 is hidden
    np.testing.assert_array_equal(hidden.gt, [0, 2])
    np.testing.assert_array_equal(hidden.pred, [2, 2])
    bool_vis = sample_keypoint_labels(probs, kps.numpy(), (8, 8), visible=np.array([[False, True, False]]))
    np.testing.assert_array_equal(bool_vis.gt, [1])
    np.testing.assert_array_equal(bool_vis.pred_fg, [0])


def test_keypoint_sampling_equals_direct_indexing_on_a_128_map():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(2, 9, 128, 128, generator=gen).softmax(dim=1)
    s = 448  # CUB input: 3.5 input pixels per map cell
    cols = torch.randint(0, 128, (2, 15), generator=gen)
    rows = torch.randint(0, 128, (2, 15), generator=gen)
    # Anywhere inside the cell, not just its centre (align_corners=True would move points near a cell's edge).
    off = 0.05 + 0.9 * torch.rand(2, 15, 2, generator=gen)
    kps = torch.stack(((cols + off[..., 0]) * s / 128, (rows + off[..., 1]) * s / 128), dim=-1)
    out = sample_keypoint_labels(probs, kps, s)
    b = torch.arange(2)[:, None].expand(-1, 15)
    at = probs.permute(0, 2, 3, 1)[b, rows, cols]  # [2, 15, Q]
    np.testing.assert_array_equal(out.pred, at.argmax(-1).reshape(-1).numpy())
    np.testing.assert_array_equal(out.pred_fg, at[..., :-1].argmax(-1).reshape(-1).numpy())
    np.testing.assert_array_equal(out.gt, np.tile(np.arange(15), 2))


def test_keypoint_sampling_rejects_bad_shapes():
    with pytest.raises(ValueError, match="keypoints"):
        sample_keypoint_labels(_hand_probs(), torch.zeros(2, 3, 2), 8)
    with pytest.raises(ValueError, match="visibility"):
        sample_keypoint_labels(_hand_probs(), torch.zeros(1, 3, 2), 8, visible=torch.ones(1, 2))


# ---------------------------------------------------------------------------------------------------------------------
# PartImageNet ground truth


def _rle_ann(mask: np.ndarray, cat: int, **extra) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ann = {"segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
           "category_id": cat, "area": int(mask.sum()), "iscrowd": 0, "bbox": [0, 0, 1, 1]}
    ann.update(extra)
    return ann


def test_partimagenet_gt_overlaps_ties_background_and_ignored_annotations():
    h, w, cats = 6, 8, 4
    a = np.zeros((h, w), bool); a[0:3, 0:4] = True  # noqa: E702
    b = np.zeros((h, w), bool); b[1:4, 2:6] = True  # noqa: E702
    c = np.zeros((h, w), bool); c[2, 2:4] = True  # noqa: E702
    everything = np.ones((h, w), bool)
    anns = [
        _rle_ann(a, 2),
        _rle_ann(b, 1),
        _rle_ann(c, 2),  # a second instance of category 2: count 2 beats category 1 there
        _rle_ann(everything, 0, iscrowd=1),  # crowd: ignored
        _rle_ann(everything, 0, area=0),  # empty area: ignored
    ]
    # Uncompressed RLE (counts as a list) for category 3 at row 5, cols 6-7.
    d = np.zeros((h, w), np.uint8); d[5, 6:8] = 1  # noqa: E702
    flat = d.ravel(order="F")
    runs, value, count = [], 0, 0
    for v in flat:
        if v != value:
            runs.append(count); value, count = v, 0  # noqa: E702
        count += 1
    runs.append(count)
    anns.append({"segmentation": {"size": [h, w], "counts": runs}, "category_id": 3, "area": 2, "iscrowd": 0})
    expected = np.full((h, w), cats, np.int64)
    expected[b] = 1
    expected[a] = 2
    expected[a & b] = 1  # 1 vs 1 count: the tie goes to the lowest id
    expected[c] = 2  # inside a & b, but category 2 has two instances there
    expected[5, 6:8] = 3
    got = partimagenet_gt_mask(anns, h, w, cats, out_size=None)
    np.testing.assert_array_equal(got, expected)


def test_four_number_polygon_becomes_its_bbox_rectangle():
    h, w = 10, 12
    rect = [2.0, 3.0, 2.0, 8.0, 9.0, 8.0, 9.0, 3.0]
    four = {"segmentation": [[2.0, 3.0, 9.0, 8.0]], "bbox": [2.0, 3.0, 7.0, 5.0], "category_id": 0, "area": 35,
            "iscrowd": 0}
    full = dict(four, segmentation=[rect])
    got = partimagenet_gt_mask([four], h, w, 1, out_size=None)
    np.testing.assert_array_equal(got, partimagenet_gt_mask([full], h, w, 1, out_size=None))
    assert (got == 0).sum() >= 30  # a real rectangle, not pycocotools' reading of the list as an [x, y, w, h] box
    assert got[5, 5] == 0 and got[0, 0] == 1


def test_partimagenet_gt_is_resized_to_128_with_opencv_nearest():
    h, w = 256, 384
    labels = (np.arange(h)[:, None] * 1000 + np.arange(w)[None, :])
    out = resize_nearest(labels, 128)
    np.testing.assert_array_equal(out, labels[::2, ::3])
    # Non-integer ratio: 5 -> 3 samples floor(d * 5/3) = 0, 1, 3 (PIL's centre sampling would give 0, 2, 4).
    np.testing.assert_array_equal(resize_nearest(np.arange(5)[None, :].repeat(5, 0), (3, 5))[0], [0, 1, 3])
    mask = np.zeros((h, w), bool); mask[:128, 192:] = True  # noqa: E702
    gt = partimagenet_gt_mask([_rle_ann(mask, 1)], h, w, 3)
    assert gt.shape == (128, 128)
    assert (gt[:64, 64:] == 1).all() and (gt[64:, :] == 3).all() and (gt[:, :64] == 3).all()


def test_partimagenet_gt_rejects_unknown_category():
    with pytest.raises(ValueError, match="category_id 5"):
        partimagenet_gt_mask([_rle_ann(np.ones((2, 2), bool), 5)], 2, 2, 3)


# ---------------------------------------------------------------------------------------------------------------------
# NME


def test_soft_centroids_and_activity():
    p = torch.zeros(1, 3, 4, 8)
    p[0, 0, 1, 3] = 1.0  # part 0 at (x=3, y=1)
    p[0, 1, 0, 0] = 0.4
    p[0, 1, 2, 6] = 0.4  # part 1: midpoint (3, 1) of (0, 0) and (6, 2)
    p[0, 2] = 1.0  # background: must be ignored
    c = soft_centroids(p)
    np.testing.assert_allclose(c.numpy(), [[[3.0, 1.0], [3.0, 1.0]]], atol=1e-6)
    np.testing.assert_allclose(soft_centroids(p, frame_size=(32, 8)).numpy(), [[[12.0, 2.0], [12.0, 2.0]]], atol=1e-6)
    assert part_activity(p).tolist() == [[True, False]]


def _linear_landmarks(rng: np.random.Generator, n: int, k: int, n_lm: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids [n, k, 2] and landmarks [n, n_lm, 2] that are an exact affine function of them."""
    cent = rng.uniform(0, 128, size=(n, k, 2))
    a = rng.normal(size=(2 * k, 2 * n_lm))
    lm = cent.reshape(n, -1) @ a + rng.normal(size=2 * n_lm) * 10
    return cent, lm.reshape(n, n_lm, 2)


def test_nme_mafl_is_zero_for_a_linear_relation_and_large_otherwise():
    rng = np.random.default_rng(8)
    cent, lm = _linear_landmarks(rng, 300, 4, 5)
    assert nme_mafl(cent[:200], lm[:200], cent[200:], lm[200:]) < 1e-6
    # Every test landmark of an image moved by the same vector of 0.1 inter-ocular distance: NME = 10 exactly.
    eye = np.linalg.norm(lm[200:, 0] - lm[200:, 1], axis=-1)
    angle = rng.uniform(0, 2 * np.pi, size=100)
    shift = 0.1 * eye[:, None] * np.stack((np.cos(angle), np.sin(angle)), axis=-1)
    assert nme_mafl(cent[:200], lm[:200], cent[200:], lm[200:] + shift[:, None]) == pytest.approx(10.0, abs=1e-6)
    noise = rng.uniform(0, 128, size=lm.shape)
    assert nme_mafl(cent[:200], noise[:200], cent[200:], noise[200:]) > 10
    # A part that never moves makes XᵀX singular: the ridge fallback still gives a finite, small error.
    still = cent.copy()
    still[:, 0] = 64.0
    lm_still = still.reshape(300, -1) @ rng.normal(size=(8, 10))
    err = nme_mafl(torch.from_numpy(still[:200]), lm_still[:200].reshape(200, 5, 2), still[200:],
                   lm_still[200:].reshape(100, 5, 2))
    assert np.isfinite(err) and err < 5


def _bbox_frame(rng: np.random.Generator, norm: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return norm * boxes[:, None, 2:] + boxes[:, None, :2]


def test_nme_cub_bbox_normalised_regression_is_zero_for_a_linear_relation():
    rng = np.random.default_rng(9)
    n, k, n_lm = 400, 3, 4
    cent_n = rng.uniform(0, 1, size=(n, k, 2))
    a = rng.normal(size=(2 * 2, 2 * n_lm))  # landmarks depend on parts 0 and 1 only
    lm_n = (cent_n[:, :2].reshape(n, -1) @ a + rng.normal(size=2 * n_lm)).reshape(n, n_lm, 2)
    boxes = np.concatenate([rng.uniform(0, 50, (n, 2)), rng.uniform(50, 200, (n, 2))], axis=1)
    cent, lm = _bbox_frame(rng, cent_n, boxes), _bbox_frame(rng, lm_n, boxes)
    visible = rng.random((n, n_lm)) > 0.2
    lm[~visible] = 1e6  # invisible landmarks must be ignored entirely
    active = np.ones((n, k), bool)
    active[rng.random(n) < 0.3, 2] = False  # part 2 carries no information: switching it off changes nothing

    def split(s: slice) -> LandmarkSet:
        return LandmarkSet(cent[s], lm[s], visible[s], boxes[s], active[s])

    assert nme_cub(split(slice(0, 300)), split(slice(300, n))) < 1e-6
    # Visible test landmarks moved by (0.03, 0.04) bbox widths/heights: error 0.05 of the bbox -> NME 5.
    moved = lm[300:] + np.array([0.03, 0.04]) * boxes[300:, None, 2:]
    shifted = LandmarkSet(cent[300:], moved, visible[300:], boxes[300:], active[300:])
    assert nme_cub(split(slice(0, 300)), shifted) == pytest.approx(5.0, abs=1e-6)
    # Switching off part 0 (which the landmarks need) in the test split must hurt.
    off = active.copy()
    off[300:, 0] = False
    bad = LandmarkSet(cent[300:], lm[300:], visible[300:], boxes[300:], off[300:])
    assert nme_cub(split(slice(0, 300)), bad) > 1


def test_nme_cub_needs_training_points_for_visible_test_landmarks():
    rng = np.random.default_rng(10)
    cent = rng.uniform(0, 1, (10, 2, 2))
    lm = rng.uniform(0, 1, (10, 2, 2))
    boxes = np.tile([0.0, 0.0, 1.0, 1.0], (10, 1))
    vis_train = np.array([[True, False]] * 10)
    with pytest.raises(ValueError, match="landmark 1"):
        nme_cub(LandmarkSet(cent, lm, vis_train, boxes), LandmarkSet(cent, lm, np.ones((10, 2), bool), boxes))

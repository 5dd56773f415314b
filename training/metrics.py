"""Evaluation metrics of the MPAE protocol: NMI/ARI, keypoint sampling, PartImageNet ground truth, NME.

What follows the reference (docs/mpae-reference.md §4) and why:

- NMI is sklearn's ``normalized_mutual_info_score`` (arithmetic average); ARI is the pair-confusion form the reference
  uses for PartImageNet. Both are reported ×100, background included on both sides.
- The reference pools every pixel (or keypoint) of the test set into one long array. ``ClusteringAccumulator`` keeps
  only the contingency table instead, so billions of pixels cost a few kB, and computes both scores from it in exact
  integer (ARI) or float64-log (NMI) arithmetic: nothing overflows, unlike an int64 n² product would.
- Probability maps are ``[B, Q, H, W]`` in model channel order, **background last** (channel Q-1), as the reference.
  Predicted labels are channel indices (background = Q-1); foreground-only labels are indices into the first K = Q-1.
- PartImageNet ground truth labels are category ids 0..C-1 and C for unlabelled pixels (the 0.1 background channel).
- NME is **not in the MPAE repository** (reference §4.4): ``nme_mafl`` follows the author's previous repository
  (UnsupervisedPart, MAFL protocol), ``nme_cub`` follows PDiscoFormer's bbox-normalised keypoint regression.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Dense contingency tables are indexed by the label values themselves; this bounds their size.
MAX_LABEL = 1 << 16


# ---------------------------------------------------------------------------------------------------------------------
# NMI / ARI


def _as_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor (any device) or sequence."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _flat_pair(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both labelings flattened, after checking they label the same samples."""
    g, p = _as_numpy(gt), _as_numpy(pred)
    if g.shape != p.shape:
        raise ValueError(f"ground truth and prediction label different samples: shapes {g.shape} and {p.shape}.")
    return g.reshape(-1), p.reshape(-1)


def _small_nonneg_int(a: np.ndarray) -> bool:
    """True when ``a`` can index a dense table directly (integer, 0 <= a < MAX_LABEL)."""
    if a.dtype == bool:
        return True
    if not np.issubdtype(a.dtype, np.integer):
        return False
    return a.size == 0 or (int(a.min()) >= 0 and int(a.max()) < MAX_LABEL)


def _dense_counts(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Contingency [max(g)+1, max(p)+1] of two non-negative integer label arrays, via one bincount."""
    if g.size == 0:
        return np.zeros((0, 0), dtype=np.int64)
    g = g.astype(np.int64, copy=False)
    p = p.astype(np.int64, copy=False)
    rows, cols = int(g.max()) + 1, int(p.max()) + 1
    counts = np.bincount(g * cols + p, minlength=rows * cols)
    return counts.reshape(rows, cols).astype(np.int64, copy=False)


def contingency_table(gt: Any, pred: Any) -> np.ndarray:
    """int64 counts n_ij of samples with gt label i and predicted label j (rows: gt classes, cols: clusters).

    Small non-negative integer labels index the table directly (empty rows/columns may occur and are harmless);
    any other labels (negative, large, strings) are first mapped to 0..n-1 with ``np.unique``.
    """
    g, p = _flat_pair(gt, pred)
    if not _small_nonneg_int(g):
        g = np.unique(g, return_inverse=True)[1].reshape(-1)
    if not _small_nonneg_int(p):
        p = np.unique(p, return_inverse=True)[1].reshape(-1)
    return _dense_counts(g, p)


def _exact_counts(counts: Any) -> np.ndarray:
    """The table as int64 after checking it is 2-D, integral and non-negative."""
    c = _as_numpy(counts)
    if c.ndim != 2:
        raise ValueError(f"a contingency table must be 2-D, got shape {c.shape}.")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or not np.all(c == np.rint(c)):
            raise ValueError("a contingency table must hold whole-number counts.")
        c = np.rint(c)
    c = c.astype(np.int64, copy=False)
    if c.size and int(c.min()) < 0:
        raise ValueError("a contingency table cannot hold negative counts.")
    return c


def ari_from_contingency(counts: Any) -> float:
    """Adjusted Rand index ×100 from a contingency table, in exact integer arithmetic.

    Pair-confusion form of the reference (validate_function.py:13-19, same as sklearn):
    ARI = 2(tp·tn − fn·fp) / ((tp+fn)(fn+tn) + (tp+fp)(fp+tn)); 100 when fn = fp = 0 (sklearn's special case,
    which covers identical partitions, a single sample and empty input). Python integers keep every product exact,
    so tables with billions of samples cannot overflow.
    """
    c = _exact_counts(counts).astype(object)  # Python ints: n² ~ 1e19 and products ~ 1e38 stay exact
    n = int(c.sum()) if c.size else 0
    sum_sq = int((c * c).sum()) if c.size else 0
    rows_sq = int((c.sum(axis=1) ** 2).sum()) if c.size else 0
    cols_sq = int((c.sum(axis=0) ** 2).sum()) if c.size else 0
    tp = sum_sq - n
    fp = cols_sq - sum_sq  # pairs together in the prediction, apart in the ground truth
    fn = rows_sq - sum_sq  # pairs together in the ground truth, apart in the prediction
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 100.0
    return 100.0 * (2 * (tp * tn - fn * fp)) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _entropy_of_sizes(sizes: np.ndarray, n: float) -> float:
    """Natural-log entropy of a labeling given its (non-zero) class sizes."""
    p = sizes / n
    return float(-np.sum(p * (np.log(sizes) - np.log(n))))


def nmi_from_contingency(counts: Any) -> float:
    """NMI ×100 = MI / mean(H(gt), H(pred)) from a contingency table, matching sklearn's arithmetic-average NMI.

    Same special cases as sklearn: 100 when both labelings have one class (or none), 0 when the MI is 0. Logs are
    taken of each count separately, so no int64 product a_i·b_j can overflow on billions of pixels.
    """
    c = _exact_counts(counts)
    c = c[c.sum(axis=1) > 0][:, c.sum(axis=0) > 0]  # classes/clusters that actually occur
    rows, cols = c.shape
    if (rows == cols == 1) or (rows == cols == 0):
        return 100.0
    if rows == 1 or cols == 1:
        return 0.0
    cf = c.astype(np.float64)
    a, b = cf.sum(axis=1), cf.sum(axis=0)
    n = float(a.sum())
    i, j = np.nonzero(c)
    v = cf[i, j]
    terms = (v / n) * (np.log(v) + np.log(n) - np.log(a[i]) - np.log(b[j]))
    terms = np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms)
    mi = max(float(terms.sum()), 0.0)
    if mi == 0.0:
        return 0.0
    normalizer = (_entropy_of_sizes(a, n) + _entropy_of_sizes(b, n)) / 2.0
    return 100.0 * mi / normalizer


def nmi(gt: Any, pred: Any) -> float:
    """sklearn's ``normalized_mutual_info_score`` (arithmetic average) ×100, as the reference reports it.

    For pooled pixel sets use ``ClusteringAccumulator``: sklearn multiplies class sizes in int64 internally.
    """
    from sklearn.metrics import normalized_mutual_info_score

    g, p = _flat_pair(gt, pred)
    return 100.0 * float(normalized_mutual_info_score(g, p, average_method="arithmetic"))


def ari(gt: Any, pred: Any) -> float:
    """Adjusted Rand index ×100 via a contingency table: no n² memory, no overflow, equal to sklearn's ARI."""
    return ari_from_contingency(contingency_table(gt, pred))


class ClusteringAccumulator:
    """Pools (gt, pred) labelings over a whole test set as a contingency table, then gives pooled NMI and ARI.

    Labels must be non-negative integers below ``MAX_LABEL`` (channel indices, keypoint indices, category ids): a
    label means the same class in every batch. For DistributedDataParallel, gather each rank's ``counts`` (e.g. with
    ``torch.distributed.all_gather_object``) and ``merge`` them on one rank.
    """

    def __init__(self) -> None:
        self._counts = np.zeros((0, 0), dtype=np.int64)

    @classmethod
    def from_counts(cls, counts: Any) -> "ClusteringAccumulator":
        """An accumulator holding an existing contingency table (rows gt, columns pred)."""
        acc = cls()
        acc.merge(counts)
        return acc

    @property
    def counts(self) -> np.ndarray:
        """A copy of the int64 contingency table, rows indexed by gt label and columns by predicted label."""
        return self._counts.copy()

    @property
    def num_samples(self) -> int:
        """Samples (pixels or keypoints) pooled so far."""
        return int(self._counts.sum())

    def _grow(self, rows: int, cols: int) -> None:
        """Enlarge the table to at least rows × cols, keeping its counts."""
        r0, c0 = self._counts.shape
        if rows <= r0 and cols <= c0:
            return
        grown = np.zeros((max(rows, r0), max(cols, c0)), dtype=np.int64)
        grown[:r0, :c0] = self._counts
        self._counts = grown

    def update(self, gt: Any, pred: Any) -> None:
        """Add one batch of paired labels (any equal shapes; numpy arrays or tensors on any device)."""
        g, p = _flat_pair(gt, pred)
        for name, a in (("ground-truth", g), ("predicted", p)):
            if not _small_nonneg_int(a):
                raise ValueError(
                    f"{name} labels must be non-negative integers below {MAX_LABEL}, got dtype {a.dtype} "
                    f"with range [{a.min() if a.size else None}, {a.max() if a.size else None}]."
                )
        self.merge(_dense_counts(g, p))

    def merge(self, other: "ClusteringAccumulator | np.ndarray") -> None:
        """Add another accumulator's (or a raw table's) counts, e.g. from another rank."""
        c = other._counts if isinstance(other, ClusteringAccumulator) else _exact_counts(other)
        self._grow(*c.shape)
        self._counts[: c.shape[0], : c.shape[1]] += c

    def nmi(self) -> float:
        """Pooled NMI ×100 (sklearn's arithmetic-average definition)."""
        return nmi_from_contingency(self._counts)

    def ari(self) -> float:
        """Pooled ARI ×100 (exact pair-confusion form)."""
        return ari_from_contingency(self._counts)

    def compute(self) -> dict[str, float]:
        """``{"nmi": ..., "ari": ...}`` in percent."""
        return {"nmi": self.nmi(), "ari": self.ari()}


# ---------------------------------------------------------------------------------------------------------------------
# Keypoint protocol (reference §4.1, §4.2)


@dataclass(frozen=True)
class KeypointLabels:
    """Labels at the kept keypoints, flattened over the batch in (image, keypoint) order."""

    gt: np.ndarray  # keypoint index 0..P-1
    pred: np.ndarray  # argmax over all Q channels (background = Q-1): the reported NMI/ARI
    pred_fg: np.ndarray  # argmax over the K foreground channels: FG_NMI / FG_ARI


def _size_wh(size: int | Sequence[int]) -> tuple[float, float]:
    """(W, H) from an int S or a (W, H) pair."""
    if isinstance(size, (int, np.integer)):
        return float(size), float(size)
    w, h = size
    return float(w), float(h)


def sample_keypoint_labels(
    probs: torch.Tensor,
    keypoints: Any,
    input_size: int | Sequence[int],
    visible: Any | None = None,
) -> KeypointLabels:
    """Part labels at keypoints by nearest lookup in the probability map, as the reference's CUB/CelebA evaluation.

    ``probs`` [B, Q, H, W] (background last, usually 128×128); ``keypoints`` [B, P, 2] as (x, y) in the input-image
    pixel frame of size ``input_size`` (S or (W, H)); ``visible`` [B, P] bool or flags (> 0.5 kept), None keeps all.
    Coordinates become x/S·2−1 in float64, then float32, as the reference computes them (its keypoints are float64),
    and ``grid_sample(mode='nearest', align_corners=False)`` reads the map; a point outside the image reads zeros
    (reference behaviour) and so gets label 0.
    """
    if probs.ndim != 4:
        raise ValueError(f"probability maps must be [B, Q, H, W], got shape {tuple(probs.shape)}.")
    b, q = probs.shape[:2]
    if q < 2:
        raise ValueError(f"probability maps need K foreground channels plus background, got Q = {q}.")
    kp = torch.as_tensor(_as_numpy(keypoints), dtype=torch.float64)  # on the CPU: MPS has no float64
    if kp.ndim != 3 or kp.shape[0] != b or kp.shape[2] != 2:
        raise ValueError(f"keypoints must be [B={b}, P, 2] (x, y), got shape {tuple(kp.shape)}.")
    w, h = _size_wh(input_size)
    grid = torch.stack((kp[..., 0] / w * 2 - 1, kp[..., 1] / h * 2 - 1), dim=-1).unsqueeze(2)  # [B, P, 1, 2]
    grid = grid.to(device=probs.device, dtype=torch.float32)
    sampled = F.grid_sample(probs.float(), grid, mode="nearest", align_corners=False).squeeze(-1)  # [B, Q, P]
    pred = sampled.argmax(dim=1)
    pred_fg = sampled[:, :-1].argmax(dim=1)
    gt = torch.arange(kp.shape[1], device=probs.device).expand(b, -1)
    if visible is None:
        keep = torch.ones_like(gt, dtype=torch.bool)
    else:
        vis = torch.as_tensor(_as_numpy(visible), device=probs.device)
        if vis.shape != gt.shape:
            raise ValueError(f"visibility must be [B, P] = {tuple(gt.shape)}, got shape {tuple(vis.shape)}.")
        keep = vis if vis.dtype == torch.bool else vis.float() > 0.5
    return KeypointLabels(
        gt=gt[keep].cpu().numpy().astype(np.int64),
        pred=pred[keep].cpu().numpy().astype(np.int64),
        pred_fg=pred_fg[keep].cpu().numpy().astype(np.int64),
    )


# ---------------------------------------------------------------------------------------------------------------------
# PartImageNet ground truth (reference §4.3)


def _segmentation_rle(ann: Mapping[str, Any], height: int, width: int) -> Any:
    """One RLE for a COCO annotation (polygons, uncompressed or compressed RLE).

    A 4-number polygon is replaced by the rectangle of the annotation's ``bbox`` (x, y, w, h), as the reference's
    loaders do: pycocotools would otherwise read the whole polygon list as boxes.
    """
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    if isinstance(seg, list):
        polys = []
        for poly in seg:
            if len(poly) == 4:
                x, y, w, h = (float(v) for v in ann["bbox"])
                poly = [x, y, x, y + h, x + w, y + h, x + w, y]
            polys.append([float(v) for v in poly])
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        return mask_utils.frPyObjects(seg, height, width)
    if isinstance(seg, dict):
        counts = seg["counts"]
        return {"size": seg["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    raise ValueError(f"annotation {ann.get('id')} has a segmentation that is neither polygons nor RLE.")


def decode_rle(rle: Any) -> np.ndarray:
    """``pycocotools.mask.decode`` without its harmless numpy-2 DeprecationWarning (``__array__`` copy keyword)."""
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        return mask_utils.decode(rle)


def annotation_mask(ann: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """[H, W] uint8 0/1 mask of one COCO annotation (with the 4-number polygon fix)."""
    rle = _segmentation_rle(ann, height, width)
    if rle is None:
        return np.zeros((height, width), dtype=np.uint8)
    m = decode_rle(rle)
    if m.shape != (height, width):
        raise ValueError(f"annotation {ann.get('id')} has a {m.shape} mask but its image is {(height, width)}.")
    return m


def resize_nearest(labels: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Nearest resize of a label map to S×S or (W, H), sampling like ``cv2.resize(..., INTER_NEAREST)``.

    OpenCV picks src = min(floor(dst · (1 / (out/in))), in−1) per axis (no half-pixel offset, unlike PIL's NEAREST).
    """
    out_w, out_h = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    in_h, in_w = labels.shape[:2]
    xs = np.minimum(np.floor(np.arange(out_w) * (1.0 / (out_w / in_w))).astype(np.int64), in_w - 1)
    ys = np.minimum(np.floor(np.arange(out_h) * (1.0 / (out_h / in_h))).astype(np.int64), in_h - 1)
    return labels[ys[:, None], xs[None, :]]


def partimagenet_gt_mask(
    annotations: Iterable[Mapping[str, Any]],
    height: int,
    width: int,
    num_categories: int,
    out_size: int | Sequence[int] | None = 128,
) -> np.ndarray:
    """PartImageNet ground-truth label map, as the reference builds it (PartImageOOD.py / PartImageSeg.py).

    Every non-crowd annotation with area > 0 adds its mask into channel ``category_id``; a constant 0.1 background
    channel is appended and the argmax taken. So overlaps go to the highest count, ties to the lowest id, and
    unlabelled pixels get label ``num_categories``. The map is then squashed to ``out_size`` (128×128) with nearest
    (OpenCV's sampling); ``out_size=None`` keeps the image resolution. Returns int64.
    """
    per_category: dict[int, np.ndarray] = {}
    for ann in annotations:
        if ann.get("iscrowd", 0) or ann.get("area", 1) <= 0:
            continue
        cat = int(ann["category_id"])
        if not 0 <= cat < num_categories:
            raise ValueError(f"annotation {ann.get('id')} has category_id {cat} outside 0..{num_categories - 1}.")
        mask = annotation_mask(ann, height, width).astype(np.uint16)
        per_category[cat] = per_category[cat] + mask if cat in per_category else mask
    labels = np.full((height, width), num_categories, dtype=np.int64)
    if per_category:
        # Only the categories present get a channel, in ascending id so argmax ties go to the lowest id. Integer
        # counts against the 0.1 background: any covered pixel beats it, an uncovered one does not.
        cats = sorted(per_category)
        stack = np.stack([per_category[c] for c in cats])
        covered = stack.max(axis=0) > 0
        labels[covered] = np.asarray(cats, dtype=np.int64)[stack.argmax(axis=0)[covered]]
    return labels if out_size is None else resize_nearest(labels, out_size)


# ---------------------------------------------------------------------------------------------------------------------
# NME (reference §4.4; not part of the MPAE repository)


def soft_centroids(probs: torch.Tensor, frame_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """[B, K, 2] soft centroids (x, y) = Σ P·coord / Σ P of the K foreground maps (background, the last channel, is
    dropped), in map pixel indices 0..W−1; ``frame_size`` (S or (W, H)) rescales them by S / map size (PDiscoFormer's
    map → input convention). A map with zero mass gets (0, 0).
    """
    if probs.ndim != 4:
        raise ValueError(f"probability maps must be [B, Q, H, W], got shape {tuple(probs.shape)}.")
    fg = probs[:, :-1].float()
    h, w = fg.shape[-2:]
    mass = fg.sum(dim=(2, 3)).clamp_min(torch.finfo(torch.float32).tiny)
    xs = torch.arange(w, device=fg.device, dtype=torch.float32)
    ys = torch.arange(h, device=fg.device, dtype=torch.float32)
    cx = (fg.sum(dim=2) * xs).sum(dim=-1) / mass
    cy = (fg.sum(dim=3) * ys).sum(dim=-1) / mass
    if frame_size is not None:
        fw, fh = _size_wh(frame_size)
        cx, cy = cx * (fw / w), cy * (fh / h)
    return torch.stack((cx, cy), dim=-1)


def part_activity(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """[B, K] bool: a foreground part is active when its map exceeds ``threshold`` somewhere (PDiscoFormer)."""
    return probs[:, :-1].amax(dim=(2, 3)) > threshold


def _standardize(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of sklearn's StandardScaler (population std, 1 where the std is 0)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    return scaler.mean_, scaler.scale_


def _least_squares_no_intercept(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """β = (XᵀX)⁻¹XᵀY, or (XᵀX + I)⁻¹XᵀY when XᵀX is singular (UnsupervisedPart's fallback)."""
    xtx, xty = x.T @ x, x.T @ y
    try:
        beta = np.linalg.solve(xtx, xty)
        if np.all(np.isfinite(beta)):
            return beta
    except np.linalg.LinAlgError:
        pass
    logger.info("NME regression: XᵀX is singular, using the ridge (+I) fallback")
    return np.linalg.solve(xtx + np.eye(xtx.shape[0]), xty)


def _as_points(x: Any, name: str) -> np.ndarray:
    """float64 [N, M, 2] from a numpy array or tensor."""
    a = _as_numpy(x).astype(np.float64)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} must be [N, M, 2] (x, y) points, got shape {a.shape}.")
    return a


def nme_mafl(
    train_centroids: Any,
    train_landmarks: Any,
    test_centroids: Any,
    test_landmarks: Any,
    eye_indices: tuple[int, int] = (0, 1),
) -> float:
    """CelebA/MAFL NME ×100, the protocol of the author's previous repository (UnsupervisedPart; not in MPAE).

    Centroids [N, K, 2] → landmarks [N, L, 2]: both standardised with scalers fitted on train, a linear map without
    intercept fitted by least squares (ridge +I when singular), test predictions un-standardised, then the mean over
    images and landmarks of ‖pred − gt‖ / ‖gt[eye0] − gt[eye1]‖. Coordinates in any frame (the scaling removes it).
    """
    xtr, ytr = _as_points(train_centroids, "train centroids"), _as_points(train_landmarks, "train landmarks")
    xte, yte = _as_points(test_centroids, "test centroids"), _as_points(test_landmarks, "test landmarks")
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise ValueError("centroids and landmarks must have one row per image in each split.")
    n_lm = ytr.shape[1]
    xtr, ytr, xte = xtr.reshape(len(xtr), -1), ytr.reshape(len(ytr), -1), xte.reshape(len(xte), -1)
    x_mean, x_scale = _standardize(xtr)
    y_mean, y_scale = _standardize(ytr)
    beta = _least_squares_no_intercept((xtr - x_mean) / x_scale, (ytr - y_mean) / y_scale)
    pred = (((xte - x_mean) / x_scale) @ beta * y_scale + y_mean).reshape(len(xte), n_lm, 2)
    eye = np.linalg.norm(yte[:, eye_indices[0]] - yte[:, eye_indices[1]], axis=-1)
    if np.any(eye <= 0):
        raise ValueError("a test image has coincident eye landmarks, so its inter-ocular distance is zero.")
    err = np.linalg.norm(pred - yte, axis=-1) / eye[:, None]
    return 100.0 * float(err.mean())


@dataclass(frozen=True)
class LandmarkSet:
    """One split for ``nme_cub``: everything in the same pixel frame (the input image's)."""

    centroids: Any  # [N, K, 2] (x, y) part centroids, e.g. soft_centroids(probs, frame_size=S)
    landmarks: Any  # [N, L, 2] (x, y) annotated keypoints
    visible: Any  # [N, L] visibility flags (> 0.5 or True = visible)
    bboxes: Any  # [N, 4] object boxes (x, y, w, h)
    active: Any | None = None  # [N, K] bool part activity (part_activity(probs)); None = all active


def _normalized_split(s: LandmarkSet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centroids [N, 2K], landmarks [N, L, 2] both bbox-normalised, visible [N, L], active [N, 2K])."""
    c, lm = _as_points(s.centroids, "centroids"), _as_points(s.landmarks, "landmarks")
    box = _as_numpy(s.bboxes).astype(np.float64)
    n, k = c.shape[:2]
    if lm.shape[0] != n or box.shape != (n, 4):
        raise ValueError(f"a landmark split needs one row per image: centroids {c.shape}, landmarks {lm.shape}, "
                         f"bboxes {box.shape}.")
    xy, wh = box[:, None, :2], box[:, None, 2:]
    vis = _as_numpy(s.visible)
    vis = vis if vis.dtype == bool else vis.astype(np.float64) > 0.5
    act = np.ones((n, k), bool) if s.active is None else _as_numpy(s.active).astype(bool)
    return ((c - xy) / wh).reshape(n, -1), (lm - xy) / wh, vis, np.repeat(act, 2, axis=1)


def nme_cub(train: LandmarkSet, test: LandmarkSet) -> float:
    """CUB keypoint-regression error ×100, PDiscoFormer's protocol (eval_kpr; not in the MPAE repository).

    Centroids and keypoints are normalised by the GT bbox, (coord − xy)/wh. Per landmark: scalers and a
    ``LinearRegression(fit_intercept=False)`` are fitted on the train images where it is visible, with standardised
    centroids of inactive parts set to 0; test predictions are un-standardised. Result: mean L2 distance over all
    visible test (image, landmark) pairs.
    """
    from sklearn.linear_model import LinearRegression

    xtr, ytr, vtr, atr = _normalized_split(train)
    xte, yte, vte, ate = _normalized_split(test)
    total, count = 0.0, 0
    for i in range(ytr.shape[1]):
        sel_tr, sel_te = vtr[:, i], vte[:, i]
        if not sel_te.any():
            continue
        if not sel_tr.any():
            raise ValueError(f"landmark {i} is visible in test images but in no training image, so it cannot be "
                             "fitted.")
        x_mean, x_scale = _standardize(xtr[sel_tr])
        y_mean, y_scale = _standardize(ytr[sel_tr, i])
        fit_x = np.where(atr[sel_tr], (xtr[sel_tr] - x_mean) / x_scale, 0.0)
        reg = LinearRegression(fit_intercept=False).fit(fit_x, (ytr[sel_tr, i] - y_mean) / y_scale)
        test_x = np.where(ate[sel_te], (xte[sel_te] - x_mean) / x_scale, 0.0)
        pred = reg.predict(test_x) * y_scale + y_mean
        total += float(np.linalg.norm(pred - yte[sel_te, i], axis=-1).sum())
        count += int(sel_te.sum())
    if count == 0:
        raise ValueError("no visible test landmark: the CUB NME is undefined.")
    return 100.0 * total / count

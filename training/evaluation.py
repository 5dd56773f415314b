"""The paper's evaluation protocols (docs/mpae-reference.md §4) on any MPAE model.

* Keypoint datasets (CUB, CelebA/MAFL): probabilities at 128×128, nearest lookup at every (visible) keypoint, NMI and
  ARI of keypoint index vs. predicted slot pooled over the test set. ``nmi``/``ari`` take the argmax over all Q
  slots (background included, the reference's reported numbers); ``fg_nmi``/``fg_ari`` over the K parts only.
  ``nme`` comes from a linear regression fitted on the train split (MAFL protocol for CelebA, PDiscoFormer's
  bbox-normalised protocol for CUB; neither is in the MPAE repository, see training/metrics.py).
* Pixel datasets (PartImageNet OOD/Seg, synthetic): ground truth by the 0.1-background argmax at 128×128, NMI and ARI
  over every pixel of the test set (background included on both sides); ``fg_*`` uses the argmax over the K parts.
All values are in %.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mpae_core.model import MPAE
from mpae_core.worker_signals import ignore_stop_signals, worker_batches

from .data import build_dataset, collate
from .data.base import DatasetLayoutError
from .metrics import (
    ClusteringAccumulator,
    LandmarkSet,
    nme_cub,
    nme_mafl,
    part_activity,
    partimagenet_gt_mask,
    sample_keypoint_labels,
    soft_centroids,
)

logger = logging.getLogger(__name__)

MAP_SIZE = (128, 128)  # the reference evaluates every dataset on 128×128 maps
KEYPOINT_DATASETS = ("cub", "celeba")
PIXEL_DATASETS = ("partimagenet_ood", "partimagenet_seg", "synthetic")
EVAL_DATASETS = KEYPOINT_DATASETS + PIXEL_DATASETS


@dataclass
class EvalOptions:
    batch_size: int = 16
    num_workers: int = 2
    nme: bool = True  # fit the NME regression on the train split (runs the model over it)
    progress: bool = True


def _batches(model: MPAE, dataset: Dataset, options: EvalOptions, what: str) -> Iterator[tuple[dict, torch.Tensor]]:
    """(batch, probabilities [B, Q, 128, 128] on the CPU) over a dataset, in order."""
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False, num_workers=options.num_workers,
                        collate_fn=collate, worker_init_fn=ignore_stop_signals)
    device = next(model.parameters()).device
    batches = worker_batches(loader)
    shown = batches
    if options.progress:
        from tqdm import tqdm

        shown = tqdm(batches, desc=what, unit="batch", total=len(loader), dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for batch in shown:
                probs = model.predict_probs(batch["image"].to(device), output_size=MAP_SIZE).float().cpu()
                yield batch, probs
    finally:
        batches.close()  # the workers stop now, also when the caller stops early or fails


def _keypoint_pass(model: MPAE, dataset: Dataset, options: EvalOptions, what: str,
                   clustering: bool) -> tuple[dict[str, float], LandmarkSet]:
    size = model.cfg.image_size
    everything, foreground = ClusteringAccumulator(), ClusteringAccumulator()
    centroids, landmarks, visible, boxes, active = [], [], [], [], []
    for batch, probs in _batches(model, dataset, options, what):
        if clustering:
            labels = sample_keypoint_labels(probs, batch["keypoints"], size, batch["visible"])
            everything.update(labels.gt, labels.pred)
            foreground.update(labels.gt, labels.pred_fg)
        centroids.append(soft_centroids(probs, frame_size=size).numpy())
        landmarks.append(np.asarray(batch["keypoints"]))
        visible.append(np.asarray(batch["visible"]))
        active.append(part_activity(probs).numpy())
        if "bbox" in batch:
            boxes.append(np.asarray(batch["bbox"]))
    metrics = {}
    if clustering:
        metrics = {"nmi": everything.nmi(), "ari": everything.ari(),
                   "fg_nmi": foreground.nmi(), "fg_ari": foreground.ari()}
    marks = LandmarkSet(np.concatenate(centroids), np.concatenate(landmarks), np.concatenate(visible),
                        np.concatenate(boxes) if boxes else None, np.concatenate(active))
    return metrics, marks


def evaluate_keypoints(model: MPAE, name: str, root: str, options: EvalOptions) -> dict[str, float]:
    size = model.cfg.image_size
    test = build_dataset(name, root, "test", size, train=False)
    metrics, test_marks = _keypoint_pass(model, test, options, f"{name} test", clustering=True)
    if not options.nme:
        return metrics
    train_split = "mafl_train" if name == "celeba" else "train"
    try:
        train = build_dataset(name, root, train_split, size, train=False)
    except DatasetLayoutError as exc:
        logger.warning("No NME: %s", exc)
        return metrics
    _, train_marks = _keypoint_pass(model, train, options, f"{name} {train_split} (NME fit)", clustering=False)
    if name == "celeba":
        metrics["nme"] = nme_mafl(train_marks.centroids, train_marks.landmarks,
                                  test_marks.centroids, test_marks.landmarks)
    else:
        metrics["nme"] = nme_cub(train_marks, test_marks)
    return metrics


def evaluate_pixels(model: MPAE, name: str, root: str, options: EvalOptions) -> dict[str, float]:
    variant = "ood" if name == "partimagenet_ood" else "seg"  # the synthetic set uses the Seg layout
    probe = build_dataset(f"partimagenet_{variant}", root, "test", model.cfg.image_size, train=False)
    gt_fn = functools.partial(partimagenet_gt_mask, num_categories=len(probe.categories), out_size=MAP_SIZE[0])
    test = build_dataset(f"partimagenet_{variant}", root, "test", model.cfg.image_size, train=False,
                         gt_mask_fn=gt_fn)
    everything, foreground = ClusteringAccumulator(), ClusteringAccumulator()
    k = model.cfg.num_parts
    for batch, probs in _batches(model, test, options, f"{name} test"):
        gt = batch["gt_mask"]  # [B, 128, 128]: every mask is resized to the map size, so they stack
        everything.update(gt, probs.argmax(dim=1))
        foreground.update(gt, probs[:, :k].argmax(dim=1))
    return {"nmi": everything.nmi(), "ari": everything.ari(), "fg_nmi": foreground.nmi(), "fg_ari": foreground.ari()}


def evaluate(model: MPAE, name: str, root: str, options: EvalOptions | None = None) -> dict[str, Any]:
    """All metrics of one benchmark's test protocol, in %, for a model in eval mode."""
    options = options or EvalOptions()
    if name not in EVAL_DATASETS:
        raise ValueError(f"Unknown evaluation dataset {name!r}; choose one of {', '.join(EVAL_DATASETS)}.")
    was_training = model.training
    model.eval()
    try:
        if name in KEYPOINT_DATASETS:
            return evaluate_keypoints(model, name, root, options)
        return evaluate_pixels(model, name, root, options)
    finally:
        model.train(was_training)

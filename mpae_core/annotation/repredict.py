"""Re-predict the images nobody corrected with a new model, never touching what a person edited or reviewed.

"Unreviewed" images are the project's :meth:`~AnnotationProject.untouched_relpaths`: predicted, with no edit and no
review. Edited and reviewed images are left exactly as they are, prediction included, because a person's
corrections and confirmations sit on top of that prediction (an edited image's unedited pixels show it); they are
skipped even when a caller lists them. The summary says how much the new model changed, for the app's "Re-predict
N unreviewed images" report.

Qt-free and single-threaded: the app runs it in a worker with its own Predictor on a writable project, and the
project's owner thread saves it afterwards.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ..images import ImageLoadError, load_image
from ..inference import PartPrediction, Predictor
from .project import AnnotationProject

logger = logging.getLogger(__name__)

#: Changed pixels are counted on label maps at most this many pixels on the longer side (the app's summary).
SUMMARY_SIDE = 512


@dataclass
class RepredictSummary:
    images: int = 0  # images predicted again
    changed_images: int = 0  # whose label map changed
    changed_fraction: float = 0.0  # mean fraction of pixels that changed, over the re-predicted images
    failed: dict[str, str] = field(default_factory=dict)  # relpath → why it could not be read
    relpaths: list[str] = field(default_factory=list)
    model: str | None = None  # fingerprint of the model that predicted them


def _summary_size(size: tuple[int, int]) -> tuple[int, int]:
    height, width = size
    scale = min(1.0, SUMMARY_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def repredict(project: AnnotationProject, predictor: Predictor, relpaths: Iterable[str] | None = None, *,
              model: str | None = None, batch_size: int = 8,
              progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> RepredictSummary:
    """Predict ``relpaths`` (default: ``project.untouched_relpaths()``) again with ``predictor`` and store them.

    Images with a person's work (edits or a review, now, when this runs) are skipped even if listed; a listed
    image that was never predicted is predicted. ``model`` is the predicting model's fingerprint
    (``mpae_core.checkpoint.model_fingerprint``), recorded per image in the index. ``cancelled`` is polled between
    batches; what was stored before a cancel stays stored. The caller saves the project.
    """
    wanted = project.untouched_relpaths() if relpaths is None else list(relpaths)
    todo = [rel for rel in wanted if not project.record(rel).has_work]
    summary = RepredictSummary(model=model)
    changed_total = 0.0
    for start in range(0, len(todo), max(1, batch_size)):
        if cancelled is not None and cancelled():
            break
        chunk, images = [], []
        for rel in todo[start : start + batch_size]:
            try:
                images.append(load_image(project.image_path(rel)))
                chunk.append(rel)
            except ImageLoadError as exc:
                project.set_error(rel, str(exc))
                summary.failed[rel] = str(exc)
        for rel, prediction in zip(chunk, predictor.predict(images, batch_size=batch_size) if images else []):
            changed = changed_fraction(project.prediction(rel), prediction)
            project.set_prediction(rel, prediction, model=model)
            summary.images += 1
            summary.relpaths.append(rel)
            summary.changed_images += changed > 0
            changed_total += changed
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    summary.changed_fraction = changed_total / summary.images if summary.images else 0.0
    return summary


def changed_fraction(old: PartPrediction | None, new: PartPrediction) -> float:
    """Fraction of pixels whose label differs, on maps at most SUMMARY_SIDE px (1.0 for an image never predicted).
    Image-sized work: the app calls it off the GUI thread."""
    if old is None:
        return 1.0
    size = _summary_size(new.image_size)
    return float(np.mean(old.label_map(size) != new.label_map(size)))

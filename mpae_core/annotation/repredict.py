"""Re-predict the images nobody corrected with a new model, never touching what a person edited or reviewed.

"Unreviewed" images are the ones whose masks are still entirely the model's: predicted (or new, or failed before)
and with no edit. Edited and reviewed images are left exactly as they are, prediction included, because a
person's corrections and confirmations sit on top of that prediction (an edited image's unedited pixels show it).
The summary says how much the new model changed, for the app's "Re-predict N unreviewed images" report.

Qt-free and single-threaded: the app runs it in a worker with its own Predictor, and the project's owner thread
saves the project afterwards.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ..images import ImageLoadError, load_image
from ..inference import PartPrediction, Predictor
from .project import AnnotationProject, ImageRecord, ImageStatus

logger = logging.getLogger(__name__)

#: Statuses whose masks are the model's alone (an image with edits is never among them, whatever its status).
REPREDICTABLE = (ImageStatus.PREDICTED, ImageStatus.NEW, ImageStatus.ERROR)
#: Changed pixels are counted on label maps at most this many pixels on the longer side (the app's summary).
SUMMARY_SIDE = 512


@dataclass
class RepredictSummary:
    images: int = 0  # images predicted again
    changed_images: int = 0  # whose label map changed
    changed_fraction: float = 0.0  # mean fraction of pixels that changed, over the re-predicted images
    failed: dict[str, str] = field(default_factory=dict)  # relpath → why it could not be read
    relpaths: list[str] = field(default_factory=list)
    model: str | None = None  # the model that predicted them


def can_repredict(record: ImageRecord) -> bool:
    """True for an image whose mask no person has touched: not reviewed and without edits."""
    return record.status in REPREDICTABLE and not record.has_edits


def repredictable(project: AnnotationProject) -> list[str]:
    """The images re-prediction would change (the app's "Re-predict N unreviewed images")."""
    return [r.relpath for r in project.records() if can_repredict(r)]


def _summary_size(size: tuple[int, int]) -> tuple[int, int]:
    height, width = size
    scale = min(1.0, SUMMARY_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def repredict(project: AnnotationProject, predictor: Predictor, relpaths: Iterable[str] | None = None, *,
              model_id: str | None = None, batch_size: int = 8,
              progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> RepredictSummary:
    """Predict ``relpaths`` (default: every re-predictable image) again with ``predictor`` and store the results.

    Images that are edited or reviewed (now, when this runs) are skipped even if listed. ``model_id`` names the
    model that predicted them, for the project index. ``cancelled`` is polled between batches; what was stored
    before a cancel stays stored. The caller saves the project.
    """
    wanted = repredictable(project) if relpaths is None else list(relpaths)
    todo = [rel for rel in wanted if can_repredict(project.record(rel))]
    summary = RepredictSummary(model=model_id)
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
            changed = _changed_fraction(project.prediction(rel), prediction)
            project.set_prediction(rel, prediction)  # the index records ``model_id`` here once it takes one
            summary.images += 1
            summary.relpaths.append(rel)
            summary.changed_images += changed > 0
            changed_total += changed
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    summary.changed_fraction = changed_total / summary.images if summary.images else 0.0
    return summary


def _changed_fraction(old: PartPrediction | None, new: PartPrediction) -> float:
    """Fraction of pixels whose label differs, on maps at most SUMMARY_SIDE px (1.0 for an image never predicted)."""
    if old is None:
        return 1.0
    size = _summary_size(new.image_size)
    return float(np.mean(old.label_map(size) != new.label_map(size)))

"""Showing an image without freezing the window: decoding, label maps and overlays run on worker threads in two
stages, and their results reach the canvas only while they still belong to the image on screen.

Stage 1, a screen-sized preview: the photo decoded at reduced scale (JPEG draft) and the model's labels at preview
size (about 0.1 s for a 12 MP photo). Stage 2, full resolution: the photo as an RGB32 QImage the canvas draws as is,
the label map (built in bands, abandoned between bands once the person has moved on) composed with their edits, and
its overlay. The confidence map is never computed whole for showing: the heat map asks for the preview's pixels and
the overlay's bands, hover for one pixel (:func:`mpae_core.inference.confidence_grid`).

Stepping to the next image cancels the jobs of the last one (stale results are dropped, never drawn); a prediction
that arrives for the shown image re-runs only the label stages, keeping the photo and every stroke.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, QTimer, Signal
from PySide6.QtGui import QImage

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.labels import UNSET
from mpae_core.annotation.parts import PartTable
from mpae_core.images import ImageLoadError, load_image, load_preview
from mpae_core.inference import PartPrediction, confidence_grid, label_map_at

from .background import BackgroundRunner, CancelCheck, wait_until
from .canvas import ImageCanvas
from .canvas_overlay import array_confidence, fit_size, preview_samples
from .overlay import ConfidenceSource, OverlayStyle, colour_lut, pil_to_rgb32, render_overlay_image

logger = logging.getLogger(__name__)

PHOTO, LABELS = "photo", "labels"
BAND_PIXELS = 2**21  # a full-resolution label map is built in steps of this many pixels (cancel points between)
STAGE2_DELAY_MS = 100  # the full resolution starts this long after the preview landed, if the image is still shown


# ----- work done on the pool (no widgets, no project) -------------------------------------------------------------
def decode_preview(path: Path, box: tuple[int, int]) -> tuple[QImage, tuple[int, int], bool]:
    """(preview, full (height, width), whether the preview already is the full resolution)."""
    image, (width, height) = load_preview(path, box)
    return pil_to_rgb32(image), (height, width), image.size == (width, height)


def preview_labels(logits: torch.Tensor, size: tuple[int, int], preview: tuple[int, int], layer: EditLayer | None,
                   parts: PartTable | None, style: OverlayStyle,
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, QImage | None]:
    """(the model's labels at ``preview`` size, the confidence of the pixels the preview shows if the heat map needs
    it, the labels with the edits of ``layer`` on top, their overlay)."""
    base = label_map_at(logits, preview)
    rows, cols = preview_samples(size[0], preview[0]), preview_samples(size[1], preview[1])
    confidence = confidence_grid(logits, size, rows, cols) if style.heatmap else None
    composed = base.astype(np.uint16) if layer is None else layer.composed_at(rows, cols, base)
    overlay = None
    if parts is not None:
        source = None if confidence is None else array_confidence(confidence)
        overlay = render_overlay_image(composed, parts, style, source, lut=colour_lut(parts, style))
    return base, confidence, composed, overlay


def full_labels(logits: torch.Tensor, size: tuple[int, int], edits: np.ndarray | None, parts: PartTable | None,
                style: OverlayStyle, confidence: ConfidenceSource, check: CancelCheck,
                ) -> tuple[np.ndarray, np.ndarray, QImage | None]:
    """(model labels, labels composed with ``edits``, their overlay) at full resolution, in cancellable bands."""
    height, width = size
    prediction = np.empty(size, dtype=np.uint8 if logits.shape[0] <= 256 else np.uint16)
    step = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height, step):
        check()
        prediction[top : top + step] = label_map_at(logits, size, rows=slice(top, top + step))
    check()
    composed = prediction.astype(np.uint16)
    if edits is not None:
        np.copyto(composed, edits, where=edits != UNSET)
    overlay = None
    if parts is not None:
        source = confidence if style.heatmap else None
        overlay = render_overlay_image(composed, parts, style, source, lut=colour_lut(parts, style), check=check)
    return prediction, composed, overlay


# ----- the controller (GUI thread) ---------------------------------------------------------------------------------
class ImageDisplay(QObject):
    """Loads what the canvas shows for one image at a time, preview first; results of other images are dropped."""

    previewShown = Signal(str)  # relpath: the screen-sized photo and labels are on screen
    ready = Signal(str)  # relpath: the full resolution is on screen
    photoFailed = Signal(str, str)  # relpath, one sentence (the file cannot be read as an image)
    failed = Signal(str)  # an unexpected error while preparing the display (logged; the window says it)

    def __init__(self, canvas: ImageCanvas, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self._stage1 = BackgroundRunner(self, threads=2)  # previews: never queued behind stage 2
        # full resolution: photo and labels in parallel only where a core is left for the GUI thread besides them
        self._stage2 = BackgroundRunner(self, threads=max(1, min(2, QThread.idealThreadCount() - 2)))
        self._relpath: str | None = None
        self._path: Path | None = None
        self._tokens = {PHOTO: 0, LABELS: 0}  # a delayed stage-2 start checks it still belongs to the current image
        self._waiting: set[str] = set()  # stages of the current image not yet on screen
        self._announced = False

    @property
    def relpath(self) -> str | None:
        return self._relpath

    def show(self, relpath: str, path: Path, prediction: PartPrediction | None, layer: EditLayer | None) -> None:
        """Start showing an image (its photo at ``path``, its prediction and edit layer); returns at once."""
        self._cancel(PHOTO)
        self._relpath, self._path = relpath, path
        self._waiting = {"photo", "photo full"}
        self._announced = False
        self.canvas.begin_image(layer)
        box = self.canvas.preview_box()
        self._stage1.submit(PHOTO, lambda check: decode_preview(path, box), self._photo_preview,
                            functools.partial(self._photo_failed, relpath), priority=1)
        self.show_labels(prediction, layer)

    def show_labels(self, prediction: PartPrediction | None, layer: EditLayer | None) -> None:
        """(Re)compute the shown image's labels, e.g. when its prediction arrives; the photo stays."""
        self._cancel(LABELS)
        self._waiting -= {"labels", "labels full"}
        if prediction is None:
            self._progress()
            return
        logits, size = prediction.logits, (int(prediction.image_size[0]), int(prediction.image_size[1]))
        confidence: ConfidenceSource = functools.partial(confidence_grid, logits, size)
        preview = fit_size(size, self.canvas.preview_box())
        self._waiting |= {"labels", "labels full"}  # without a smaller preview, the full labels are stage 1
        self.canvas.expect_labels(layer)
        edits = layer.data if layer is not None and layer.has_edits else None  # read in place: strokes are replayed
        parts = None if self.canvas.parts() is None else self.canvas.parts().copy()  # type: ignore[union-attr]
        style, key = self.canvas.style(), self.canvas.overlay_key()

        def full_stage(runner: BackgroundRunner) -> None:
            runner.submit(LABELS, lambda check: full_labels(logits, size, edits, parts, style, confidence, check),
                          functools.partial(self._labels_full, confidence, key), self._job_failed)

        if preview == size:
            full_stage(self._stage1)
            return
        self._stage1.submit(LABELS, lambda check: preview_labels(logits, size, preview, layer, parts, style),
                            functools.partial(self._labels_preview, size, confidence, key, full_stage),
                            self._job_failed)

    def clear(self) -> None:
        """Forget the shown image (its pending results are dropped)."""
        self._cancel(PHOTO)
        self._cancel(LABELS)
        self._relpath, self._waiting = None, set()

    def busy(self) -> bool:
        """Whether anything of the shown image is still on its way (including a canvas re-render)."""
        return bool(self._waiting) or self.canvas.busy()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Process events until the shown image is complete (tests, benchmarks, screenshots); False on timeout."""
        return wait_until(lambda: not self.busy(), timeout_ms)

    def shutdown(self) -> None:
        self.clear()
        self._stage1.shutdown()
        self._stage2.shutdown()

    def _cancel(self, group: str) -> None:
        self._tokens[group] += 1
        self._stage1.cancel(group)
        self._stage2.cancel(group)

    def _later(self, group: str, start) -> None:
        """Start a stage-2 job of ``group`` after STAGE2_DELAY_MS unless the person moved on meanwhile: holding
        "D" shows one preview after another without starting (and abandoning) a full-resolution decode for each."""
        token = self._tokens[group]
        QTimer.singleShot(STAGE2_DELAY_MS, self, lambda: self._tokens[group] == token and start(self._stage2))

    # ----- results ------------------------------------------------------------------------------------------------
    def _photo_preview(self, result: tuple[QImage, tuple[int, int], bool]) -> None:
        image, size, complete = result
        self.canvas.set_photo_preview(None if complete else image, size)
        if complete:
            self._photo_full(image)
        else:
            self._waiting.discard("photo")
            path, relpath = self._path, self._relpath
            self._later(PHOTO, lambda runner: runner.submit(
                PHOTO, lambda check: pil_to_rgb32(load_image(path), check), self._photo_full,
                functools.partial(self._photo_failed, relpath)))
        self._progress()

    def _photo_full(self, image: QImage) -> None:
        self.canvas.set_photo_full(image)
        self._waiting -= {"photo", "photo full"}
        self._progress()

    def _photo_failed(self, relpath: str, exc: Exception) -> None:
        self.canvas.set_photo_preview(None, None)
        self._waiting -= {"photo", "photo full"}
        if isinstance(exc, ImageLoadError):
            self.photoFailed.emit(relpath, str(exc))
        else:
            self._job_failed(exc)
        self._progress()

    def _labels_preview(self, size: tuple[int, int], confidence: ConfidenceSource, key: tuple, full_stage,
                        result: tuple[np.ndarray, np.ndarray | None, np.ndarray, QImage | None]) -> None:
        base, preview_confidence, composed, overlay = result
        self.canvas.set_label_preview(base, size, confidence, preview_confidence, composed, overlay, key)
        self._waiting.discard("labels")
        self._later(LABELS, full_stage)  # only now: stage 2 never competes with stage 1
        self._progress()

    def _labels_full(self, confidence: ConfidenceSource, key: tuple,
                     result: tuple[np.ndarray, np.ndarray, QImage | None]) -> None:
        prediction, composed, overlay = result
        self.canvas.set_labels(prediction, composed, confidence, overlay, key)
        self._waiting -= {"labels", "labels full"}
        self._progress()

    def _job_failed(self, exc: Exception) -> None:
        logger.error("Preparing the display of %s failed: %s", self._relpath, exc)
        self._waiting -= {"labels", "labels full"}
        self.failed.emit(f"Cannot show {self._relpath}: {exc}")
        self._progress()

    def _progress(self) -> None:
        if self._relpath is None:
            return
        if not self._announced and not self._waiting & {"photo", "labels"}:
            self._announced = True
            self.previewShown.emit(self._relpath)
        if not self._waiting:
            self.ready.emit(self._relpath)

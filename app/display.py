"""Showing an image without freezing the window: decoding, label maps and overlays run on worker threads in two
stages, and their results reach the canvas only while they still belong to the image on screen.

Stage 1, a screen-sized preview: the photo decoded at reduced scale (JPEG draft) and the model's labels at preview
size (about 0.1 s for a 12 MP photo). Stage 2, full resolution: the photo as an RGB32 QImage the canvas draws as is,
the label map (built in bands, abandoned between bands once the person has moved on) composed with their edits, and
its overlay. The confidence map is never computed whole for showing: the heat map asks for the preview's pixels and
the overlay's bands, hover for one pixel (:func:`mpae_core.inference.confidence_grid`).

Stepping to the next image cancels the jobs of the last one (stale results are dropped, never drawn); a prediction
that arrives for the shown image re-runs only the label stages, keeping the photo and every stroke.

An image without a prediction shows background under the person's edits, at the size of its photo (known once the
preview is decoded, ``sizeKnown``); its edits can be painted like any other's. A stored edit layer is read on a
worker too (a 12 MP layer is a ~0.1 s PNG decode) and handed to the project on the GUI thread before the labels are
composed with it.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, QTimer, Signal
from PySide6.QtGui import QImage

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.labels import UNSET
from mpae_core.annotation.parts import PartTable
from mpae_core.errors import MPAEError
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


@dataclass(frozen=True)
class LabelSource:
    """What the shown image's labels are made of; the window builds it from the project on the GUI thread."""

    prediction: PartPrediction | None = None  # the model's answer; None: background under the person's edits
    layer: EditLayer | None = None  # the person's edit layer, when it is at hand
    load_layer: Callable[[], EditLayer] | None = None  # else: reads it from disk on a worker (no project state) ...
    install: Callable[[EditLayer], EditLayer] | None = None  # ... and gives it to the project on the GUI thread
    size: tuple[int, int] | None = None  # (height, width) without a prediction; None: the photo's, once decoded

    @property
    def shape(self) -> tuple[int, int] | None:
        """(height, width) of the labels, None while an image without prediction waits for its photo's size."""
        if self.prediction is not None:
            return int(self.prediction.image_size[0]), int(self.prediction.image_size[1])
        return self.size


# ----- work done on the pool (no widgets, no project) -------------------------------------------------------------
def decode_preview(path: Path, box: tuple[int, int]) -> tuple[QImage, tuple[int, int], bool]:
    """(preview, full (height, width), whether the preview already is the full resolution)."""
    image, (width, height) = load_preview(path, box)
    return pil_to_rgb32(image), (height, width), image.size == (width, height)


def preview_labels(logits: torch.Tensor | None, size: tuple[int, int], preview: tuple[int, int],
                   layer: EditLayer | None, parts: PartTable | None, style: OverlayStyle,
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, QImage | None]:
    """(the model's labels at ``preview`` size — background without ``logits`` —, the confidence of the pixels the
    preview shows if the heat map needs it, the labels with the edits of ``layer`` on top, their overlay)."""
    base = np.zeros(preview, dtype=np.uint8) if logits is None else label_map_at(logits, preview)
    rows, cols = preview_samples(size[0], preview[0]), preview_samples(size[1], preview[1])
    confidence = confidence_grid(logits, size, rows, cols) if style.heatmap and logits is not None else None
    composed = base.astype(np.uint16) if layer is None else layer.composed_at(rows, cols, base)
    overlay = None
    if parts is not None:
        source = None if confidence is None else array_confidence(confidence)
        overlay = render_overlay_image(composed, parts, style, source, lut=colour_lut(parts, style))
    return base, confidence, composed, overlay


def full_labels(logits: torch.Tensor | None, size: tuple[int, int], edits: np.ndarray | None,
                parts: PartTable | None, style: OverlayStyle, confidence: ConfidenceSource | None, check: CancelCheck,
                ) -> tuple[np.ndarray, np.ndarray, QImage | None]:
    """(model labels — background without ``logits`` —, labels composed with ``edits``, their overlay) at full
    resolution, in cancellable bands."""
    height, width = size
    if logits is None:
        prediction = np.zeros(size, dtype=np.uint8)
    else:
        prediction = np.empty(size, dtype=np.uint8 if logits.shape[0] <= 256 else np.uint16)
    step = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height if logits is not None else 0, step):
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
    sizeKnown = Signal(str, object)  # relpath, (height, width): labels without prediction wait for this
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
        self._labels: LabelSource | None = None  # what the shown labels are made of
        self._photo_size: tuple[int, int] | None = None  # the shown photo's (height, width), once decoded

    @property
    def relpath(self) -> str | None:
        return self._relpath

    def show(self, relpath: str, path: Path, labels: LabelSource | None) -> None:
        """Start showing an image: its photo at ``path`` and ``labels`` (None: no labels); returns at once."""
        self._cancel(PHOTO)
        self._relpath, self._path, self._photo_size = relpath, path, None
        self._waiting = {"photo", "photo full"}
        self._announced = False
        self.canvas.begin_image(None if labels is None else labels.layer)
        box = self.canvas.preview_box()
        self._stage1.submit(PHOTO, lambda check: decode_preview(path, box), self._photo_preview,
                            functools.partial(self._photo_failed, relpath), priority=1)
        self.show_labels(labels)

    def show_labels(self, labels: LabelSource | None) -> None:
        """(Re)compute the shown image's labels, e.g. when its prediction arrives; the photo stays. Labels without
        a size wait for the photo's (``sizeKnown``, then call again with it); a layer to load is read first."""
        self._cancel(LABELS)
        self._waiting -= {"labels", "labels full"}
        self._labels = labels
        if labels is None:
            self._progress()
            return
        self._waiting |= {"labels", "labels full"}
        if labels.shape is None:
            if self._photo_size is not None and self._relpath is not None:
                self.sizeKnown.emit(self._relpath, self._photo_size)
            return
        if labels.load_layer is not None:
            self._stage1.submit(LABELS, lambda check, read=labels.load_layer: read(),
                                functools.partial(self._layer_loaded, labels),
                                functools.partial(self._layer_failed, labels), priority=1)
            return
        self._start_labels(labels.prediction, labels.layer, labels.shape)

    def _layer_loaded(self, labels: LabelSource, layer: EditLayer) -> None:
        """A stored edit layer was read: the project takes it (GUI thread), then the labels are composed with it."""
        try:
            layer = labels.install(layer) if labels.install is not None else layer
        except MPAEError as exc:
            self._layer_failed(labels, exc)
            return
        self._start_labels(labels.prediction, layer, labels.shape)  # type: ignore[arg-type]

    def _layer_failed(self, labels: LabelSource, exc: Exception) -> None:
        """The edits cannot be read: say why, and show the prediction without them (nothing can be painted, so the
        file stays as it is for the person to look at)."""
        logger.error("Reading the edits of %s failed: %s", self._relpath, exc)
        self.failed.emit(f"Cannot show the edits of {self._relpath}: {exc}")
        self._start_labels(labels.prediction, None, labels.shape)  # type: ignore[arg-type]

    def _start_labels(self, prediction: PartPrediction | None, layer: EditLayer | None, size: tuple[int, int]) -> None:
        logits = None if prediction is None else prediction.logits
        confidence = None if logits is None else functools.partial(confidence_grid, logits, size)
        preview = fit_size(size, self.canvas.preview_box())
        self.canvas.expect_labels(layer)  # without a smaller preview (below), the full labels are stage 1
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
        self._relpath, self._waiting, self._labels, self._photo_size = None, set(), None, None

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
        self._photo_size = size
        self.canvas.set_photo_preview(None if complete else image, size)
        if self._labels is not None and self._labels.shape is None and self._relpath is not None:
            self.sizeKnown.emit(self._relpath, size)  # the window answers with show_labels(labels of that size)
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
        if self._labels is not None and self._labels.shape is None:  # labels without a size: none to show
            self._waiting -= {"labels", "labels full"}
        if isinstance(exc, ImageLoadError):
            self.photoFailed.emit(relpath, str(exc))
        else:
            self._job_failed(exc)
        self._progress()

    def _labels_preview(self, size: tuple[int, int], confidence: ConfidenceSource | None, key: tuple, full_stage,
                        result: tuple[np.ndarray, np.ndarray | None, np.ndarray, QImage | None]) -> None:
        base, preview_confidence, composed, overlay = result
        self.canvas.set_label_preview(base, size, confidence, preview_confidence, composed, overlay, key)
        self._waiting.discard("labels")
        self._later(LABELS, full_stage)  # only now: stage 2 never competes with stage 1
        self._progress()

    def _labels_full(self, confidence: ConfidenceSource | None, key: tuple,
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

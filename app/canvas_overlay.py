"""The canvas's part overlay: composed labels at full resolution (once known) and at preview resolution, drawn into a
:class:`LevelImageItem`.

What is drawn never waits for image-sized work on the GUI thread: a painted box re-renders inline (both levels), the
preview level (screen-sized) re-renders inline when the style or the part table changes, and a whole full-resolution
overlay larger than :data:`INLINE_PIXELS` renders on a worker while the previous one stays on screen; boxes painted
meanwhile are drawn again when it lands, so a stroke is never lost under a late render.

Preview pixel (i, j) shows full-resolution pixel (rows[i], cols[j]) (the pixel under its centre). Its label is the
model's label map computed at preview size where the person has not painted, and their edit where they have, so the
preview follows every stroke even before the full-resolution labels exist.
"""
from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QImage

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL
from mpae_core.annotation.parts import PartTable

from .background import BackgroundRunner
from .label_keys import label_number, painted_value
from .level_item import FULL, PREVIEW, LevelImageItem
from .overlay import (Box, ConfidenceSource, OverlayStyle, colour_lut, render_overlay, render_overlay_image,
                      render_region, rgba_to_qimage)

logger = logging.getLogger(__name__)

#: Whole overlays up to this many pixels render inline on the GUI thread (a few milliseconds); larger ones on a worker.
INLINE_PIXELS = 512 * 512
OverlayKey = tuple


def preview_samples(full: int, preview: int) -> np.ndarray:
    """The full-resolution index each of ``preview`` pixels shows (the pixel under its centre)."""
    return np.minimum(((np.arange(preview) + 0.5) * (full / preview)).astype(np.intp), full - 1)


def fit_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of ``size`` (height, width) scaled to fit ``box`` (width, height), never enlarged."""
    height, width = size
    scale = min(box[0] / max(width, 1), box[1] / max(height, 1), 1.0)
    return max(1, round(height * scale)), max(1, round(width * scale))


def array_confidence(confidence: np.ndarray) -> ConfidenceSource:
    """A ConfidenceSource over a whole confidence map (the synchronous canvas API, small images)."""
    return lambda rows, cols: confidence[np.ix_(rows, cols)]


class CanvasOverlay(QObject):
    """Labels, style and part table of the shown image, and their rendering into the overlay item's two levels."""

    def __init__(self, item: LevelImageItem, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.item = item
        self.parts: PartTable | None = None
        self.style = OverlayStyle()
        self.labels: np.ndarray | None = None  # [H, W] uint16 composed labels, owned (painting updates them)
        self.confidence: ConfidenceSource | None = None
        self.preview: np.ndarray | None = None  # [h, w] uint16 composed preview labels
        self.preview_confidence: np.ndarray | None = None
        self._preview_base: np.ndarray | None = None  # the model's labels at preview size (None: sample self.labels)
        self._rows = self._cols = np.zeros(0, dtype=np.intp)
        self._size: tuple[int, int] | None = None
        self._lut_key: OverlayKey | None = None
        self._lut: np.ndarray | None = None
        self._runner = BackgroundRunner(self, threads=1)
        self._dirty: list[Box] | None = None  # boxes painted while a whole render is out

    # ----- state --------------------------------------------------------------------------------------------------
    def key(self) -> OverlayKey:
        """What a rendered overlay depends on besides the labels (compare before installing one made elsewhere)."""
        return (id(self.parts), None if self.parts is None else self.parts.version, self.style)

    def lut(self) -> np.ndarray:
        key = self.key()
        if key != self._lut_key:
            self._lut = colour_lut(self.parts, self.style)  # type: ignore[arg-type]
            self._lut_key = key
        return self._lut  # type: ignore[return-value]

    def size(self) -> tuple[int, int] | None:
        """(height, width) of the full-resolution labels, known from the preview already."""
        return self._size

    def busy(self) -> bool:
        return self._runner.busy()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self._runner.wait(timeout_ms)

    def shutdown(self) -> None:
        self._runner.shutdown()

    def clear(self) -> None:
        self._runner.cancel("render")
        self._runner.cancel("preview")
        self._dirty = None
        self.labels = self.preview = self.preview_confidence = self._preview_base = None
        self.confidence = None
        self._size = None
        self.item.clear()

    def describe_pixel(self, x: int, y: int) -> str:
        """"x 120, y 45 · 3 part_03 · 87 %": the label shown there with its number (after merges; a user label with
        its Shift key) and the model's confidence."""
        text = f"x {x}, y {y}"
        if self._size is None or not (0 <= y < self._size[0] and 0 <= x < self._size[1]):
            return text
        value = self.label_at(x, y)
        if value is None:
            return text
        if value == BACKGROUND:
            name = "background"
        elif value == IGNORE_LABEL:
            name = "don't care"
        elif self.parts is not None and self.parts.has_value(value):
            name = f"{label_number(painted_value(self.parts, value))} {self.parts.value_name(value)}"
            if self.parts.value_is_background(value):
                name += " (exported as background)"
        else:
            name = f"label {value}"
        text += f" · {name}"
        if self.confidence is not None:
            confidence = self.confidence(np.array([y]), np.array([x]))  # one pixel, never a whole map
            text += f" · {round(float(confidence[0, 0]) * 100)} %"
        return text

    def label_at(self, x: int, y: int) -> int | None:
        """The label value shown at full-resolution pixel (x, y): exact once known, from the preview before."""
        if self.labels is not None:
            return int(self.labels[y, x])
        if self.preview is not None and self._size is not None:
            i = min(int(y * self.preview.shape[0] / self._size[0]), self.preview.shape[0] - 1)
            j = min(int(x * self.preview.shape[1] / self._size[1]), self.preview.shape[1] - 1)
            return int(self.preview[i, j])
        return None

    # ----- content ------------------------------------------------------------------------------------------------
    def set_preview(self, base: np.ndarray, size: tuple[int, int], layer: EditLayer | None,
                    confidence: ConfidenceSource | None, preview_confidence: np.ndarray | None = None,
                    composed: np.ndarray | None = None, overlay: QImage | None = None,
                    key: OverlayKey | None = None) -> None:
        """The model's labels at preview size for an image of ``size``; the person's edits in ``layer`` go on top.
        A worker may pass them ``composed`` already, with their ``overlay`` rendered for ``key``."""
        self._size = (int(size[0]), int(size[1]))
        self.item.set_size(self._size[1], self._size[0])
        self._preview_base = np.asarray(base)
        self._rows = preview_samples(self._size[0], base.shape[0])
        self._cols = preview_samples(self._size[1], base.shape[1])
        self.confidence = confidence
        self.preview_confidence = preview_confidence
        self.preview = composed if composed is not None else self._compose_preview(slice(None), slice(None), layer)
        if overlay is not None and key == self.key():
            self.item.set_level(PREVIEW, overlay)
        else:
            self._render_preview()

    def set_full(self, labels: np.ndarray, preview_box: tuple[int, int], overlay: QImage | None = None,
                 key: OverlayKey | None = None) -> None:
        """Full-resolution composed labels (owned from now on), with their overlay when a worker already rendered
        it for ``key``; without a preview yet, one is sampled from them for ``preview_box``."""
        self.labels = labels
        self._size = labels.shape
        self.item.set_size(labels.shape[1], labels.shape[0])
        if self._preview_base is None:
            height, width = fit_size(labels.shape, preview_box)
            if (height, width) != labels.shape:
                self._rows = preview_samples(labels.shape[0], height)
                self._cols = preview_samples(labels.shape[1], width)
                self.preview = self._compose_preview(slice(None), slice(None), None)
            else:
                self.preview = None
            self._render_preview()
        if overlay is not None:
            self._runner.cancel("render")
            self._dirty = None
            self.item.set_level(FULL, overlay)
            if key == self.key():
                return
        self.refresh_full()

    # ----- rendering ----------------------------------------------------------------------------------------------
    def refresh(self, layer: EditLayer | None = None) -> None:
        """Re-render both levels (after a style or part table change); with ``layer``, recompose the preview from
        it first (the caller has recomposed ``labels``)."""
        if layer is not None and self.preview is not None:
            self.preview = self._compose_preview(slice(None), slice(None), layer)
        self._render_preview()
        self.refresh_full()

    def refresh_full(self) -> None:
        """Re-render the full-resolution level: inline when small, else on the worker (the old one stays shown)."""
        labels = self.labels
        if labels is None or self.parts is None:
            self.item.set_level(FULL, None)
            return
        self._runner.cancel("render")
        source = self.confidence if self.style.heatmap else None
        if labels.size <= INLINE_PIXELS:
            self._dirty = None
            self.item.set_level(FULL, render_overlay_image(labels, self.parts, self.style, source, lut=self.lut()))
            return
        self._dirty = []
        parts, style, lut = self.parts.copy(), self.style, self.lut()
        self._runner.submit("render", lambda check: render_overlay_image(labels, parts, style, source, lut=lut,
                                                                         check=check), self._full_rendered,
                            self._render_failed)

    def _full_rendered(self, image: QImage) -> None:
        self.item.set_level(FULL, image)
        dirty, self._dirty = self._dirty or [], None
        for box in dirty:
            self._render_full_box(box)

    def _render_failed(self, exc: Exception) -> None:
        logger.error("Rendering the overlay failed: %s", exc)
        self._dirty = None

    def _render_preview(self) -> None:
        if self.preview is None or self.parts is None:
            self.item.set_level(PREVIEW, None)
            return
        if self.style.heatmap and self.preview_confidence is None and self.confidence is not None:
            self._start_preview_confidence()
        conf = self.preview_confidence if self.style.heatmap else None
        pixels = render_overlay(self.preview, self.parts, self.style, conf, lut=self.lut())
        self.item.set_level(PREVIEW, rgba_to_qimage(pixels))

    def _start_preview_confidence(self) -> None:
        """The heat map needs the preview's confidence: computed on the worker, then the preview re-renders."""
        source, rows, cols = self.confidence, self._rows, self._cols
        if self._runner.busy("preview"):
            return

        def landed(confidence: np.ndarray) -> None:
            self.preview_confidence = confidence
            self._render_preview()

        self._runner.submit("preview", lambda check: source(rows, cols), landed, priority=1)

    def refresh_box(self, box: Box, layer: EditLayer | None) -> None:
        """The labels of ``box`` changed (a stroke, fill, undo): redraw that box on both levels."""
        rows, cols = box
        if self.preview is not None:
            i0, i1 = np.searchsorted(self._rows, [rows.start, rows.stop])
            j0, j1 = np.searchsorted(self._cols, [cols.start, cols.stop])
            if i1 > i0 and j1 > j0:
                self.preview[i0:i1, j0:j1] = self._compose_preview(slice(i0, i1), slice(j0, j1), layer)
                if self.parts is not None:
                    conf = self.preview_confidence
                    source = None if conf is None else array_confidence(conf)
                    pixels = render_region(self.preview, self.parts, self.style, source,
                                           (slice(i0, i1), slice(j0, j1)), lut=self.lut())
                    self.item.paste(PREVIEW, int(j0), int(i0), rgba_to_qimage(pixels))
        if self.labels is not None:
            if self._dirty is not None:
                self._dirty.append(box)
            self._render_full_box(box)

    def _render_full_box(self, box: Box) -> None:
        if self.labels is None or self.parts is None or self.item.level(FULL).isNull():
            return
        rows, cols = box
        y0, y1, _ = rows.indices(self.labels.shape[0])
        x0, x1, _ = cols.indices(self.labels.shape[1])
        if y1 <= y0 or x1 <= x0:
            return
        pixels = render_region(self.labels, self.parts, self.style, self.confidence,
                               (slice(y0, y1), slice(x0, x1)), lut=self.lut())
        self.item.paste(FULL, x0, y0, rgba_to_qimage(pixels))

    def _compose_preview(self, rows: slice, cols: slice, layer: EditLayer | None) -> np.ndarray:
        """Composed preview labels of a preview box: the model's where unpainted, the person's edits on top."""
        if self._preview_base is None:
            return self.labels[np.ix_(self._rows[rows], self._cols[cols])].astype(np.uint16)  # type: ignore[index]
        base = self._preview_base[rows, cols]
        return base.astype(np.uint16) if layer is None else layer.composed_at(self._rows[rows], self._cols[cols], base)

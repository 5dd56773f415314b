"""The image view: a photo with its part overlay, zoom and pan, and brush / eraser / fill straight into an EditLayer.

The canvas only shows and forwards: pixels come from :mod:`app.overlay`, edits go to
:class:`mpae_core.annotation.edits.EditLayer` (which owns undo), and the window decides what to load. One scene unit
is one image pixel, with the image's top-left corner at the scene origin, so view → scene → pixel is one transform.

Content arrives whole (``set_image``/``set_annotation``: small images, tests) or in stages from the window's
:class:`app.display.ImageDisplay`: a screen-sized preview of the photo and labels first, the full resolution later.
Strokes go to the edit layer as soon as the preview is there (the full-resolution labels catch up with them when they
land); a fill, which needs the full labels, waits for them under a busy cursor. A click that cannot paint says why
(``paintRefused``); the fill tool fills once, then the previous tool is back (``toolChanged``), and a fill over more
than half the image asks first (``confirm_fill``).
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPen,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsScene, QGraphicsView, QWidget

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.parts import PartTable

from .canvas_overlay import CanvasOverlay, OverlayKey, array_confidence
from .canvas_paint import PaintingMixin
from .level_item import FULL, PREVIEW, LevelImageItem
from .overlay import Box, ConfidenceSource, OverlayStyle

logger = logging.getLogger(__name__)

TOOLS = ("pan", "brush", "eraser", "fill")
MIN_ZOOM, MAX_ZOOM = 0.01, 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch (120 units of angleDelta)
BACKGROUND_COLOR = QColor(40, 40, 40)


class ImageCanvas(PaintingMixin, QGraphicsView):
    """Zoomable, pannable view of one image and its label overlay; paints into the image's EditLayer."""

    hovered = Signal(str)
    zoomChanged = Signal(float)
    edited = Signal()
    paintRefused = Signal(str)  # why a click of a paint tool painted nothing (a clause, e.g. "it is still loading")
    toolChanged = Signal(str)  # the canvas changed its tool itself (back from a one-shot fill)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._photo_item = LevelImageItem(QImage.Format.Format_RGB32, crisp_when_magnified=False)
        self._photo_item.setZValue(0)
        self._overlay_item = LevelImageItem(QImage.Format.Format_ARGB32_Premultiplied, crisp_when_magnified=True)
        self._overlay_item.setZValue(1)
        self._overlay = CanvasOverlay(self._overlay_item, self)
        self._cursor_items = (QGraphicsEllipseItem(), QGraphicsEllipseItem())
        for width, colour, item in zip((3.0, 1.0), (QColor(0, 0, 0, 160), QColor(255, 255, 255)), self._cursor_items):
            pen = QPen(colour, width)
            pen.setCosmetic(True)  # the same thickness at any zoom while the circle itself scales
            item.setPen(pen)
            item.setZValue(2)
            item.setVisible(False)
        for item in (self._photo_item, self._overlay_item, *self._cursor_items):
            self._scene.addItem(item)

        self.setBackgroundBrush(BACKGROUND_COLOR)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)

        self._image_size: tuple[int, int] | None = None  # (height, width) of the photo
        self._layer: EditLayer | None = None
        self._prediction: np.ndarray | None = None  # full-resolution model labels (what "erase" returns to)
        self._replacing = False  # the next image is on its way; the old one is still drawn but inert
        self._shown_size: tuple[int, int] | None = None
        self._labels_dirty: list[Box] | None = None  # boxes painted while full-resolution labels are computed
        self._pending_fill: tuple[int, int, int] | None = None  # (x, y, label) waiting for the full labels

        self._tool = "pan"
        self._tool_before_fill = "pan"
        #: Asked before a fill covers more than LARGE_FILL of the image: (fraction, label) → fill? None: never asks.
        self.confirm_fill: Callable[[float, int], bool] | None = None
        self._brush_radius = 8
        self._active_label = 1
        self._fit_mode = True
        self._space_held = False
        self._pan_from: QPointF | None = None
        self._stroke: contextlib.ExitStack | None = None
        self._stroke_last: tuple[float, float] | None = None
        self._stroke_changed = 0
        self._hover_text = ""
        self._update_cursor()
        self._style_brush_cursor()

    # ----- content, whole (small images, tests) -------------------------------------------------------------------
    def set_image(self, image: QImage | None) -> None:
        """Show ``image`` at full resolution (None clears); refits when the size changes or the view was fitted."""
        size = None if image is None or image.isNull() else (image.height(), image.width())
        self.set_photo_preview(None, size)
        if size is not None:
            self.set_photo_full(image)  # type: ignore[arg-type]

    def set_annotation(self, labels: np.ndarray | None,
                       confidence: np.ndarray | ConfidenceSource | None = None) -> None:
        """Show the composed label map (prediction + edits) and optionally the confidence: a map of the same shape,
        or a :data:`ConfidenceSource` that computes any pixels' confidence on demand."""
        self._take_over()
        self._finish_stroke()
        self._overlay.clear()
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 2:
                raise ValueError(f"A label map must be [H, W], got shape {labels.shape}.")
            if isinstance(confidence, np.ndarray) or (confidence is not None and not callable(confidence)):
                if np.shape(confidence) != labels.shape:
                    logger.warning("Confidence map %s does not match the label map %s; ignoring it",
                                   np.shape(confidence), labels.shape)
                    confidence = None
                else:
                    confidence = array_confidence(np.asarray(confidence))
            if self._image_size is not None and labels.shape != self._image_size:
                logger.warning("Label map %s does not match the image %s", labels.shape, self._image_size)
            self._overlay.confidence = confidence
            self._overlay.set_full(labels.astype(np.uint16, copy=True), self.preview_box())  # owned: painted in place
        self._content_changed()

    # ----- content, in stages (the window's ImageDisplay) ---------------------------------------------------------
    def preview_box(self) -> tuple[int, int]:
        """(width, height) in device pixels that a preview fills at "fit" (what a preview decode aims for)."""
        ratio = self.devicePixelRatioF()
        size = self.viewport().size()
        return max(1, round(size.width() * ratio)), max(1, round(size.height() * ratio))

    def begin_image(self, layer: EditLayer | None) -> None:
        """Another image is on its way: the shown one stays until the first part of the new one arrives, and nothing
        can be painted or hovered meanwhile. Painting then goes to ``layer``."""
        self._finish_stroke()
        self._replacing = True
        self._fit_mode = True  # a new image starts fitted, unless the person zooms before it arrives
        self._layer, self._prediction = layer, None
        self._labels_dirty = None
        self._cancel_pending_fill()
        self._set_hover("")

    def expect_labels(self, layer: EditLayer | None) -> None:
        """The shown image's labels are being (re)computed: strokes from now on are replayed onto them."""
        self._layer = layer
        self._labels_dirty = []

    def set_photo_preview(self, image: QImage | None, size: tuple[int, int] | None) -> None:
        """A new photo of ``size`` (height, width), for now as a screen-sized ``image`` (None: no photo, or none
        yet)."""
        self._take_over()
        self._image_size = size
        self._photo_item.set_level(FULL, None)
        self._photo_item.set_level(PREVIEW, image)
        self._photo_item.set_size(*(size[::-1] if size is not None else (0, 0)))
        self._content_changed()

    def set_photo_full(self, image: QImage) -> None:
        """The full-resolution photo (RGB32 from a worker; other formats are converted)."""
        self._photo_item.set_level(FULL, image)

    def set_label_preview(self, base: np.ndarray, size: tuple[int, int], confidence: ConfidenceSource | None,
                          preview_confidence: np.ndarray | None = None, composed: np.ndarray | None = None,
                          overlay: QImage | None = None, key: OverlayKey | None = None) -> None:
        """The model's labels at preview size for labels of ``size`` (and, from a worker, the same with the edits on
        top and their overlay rendered for ``key``); strokes are possible from now on."""
        self._take_over()
        self._overlay.set_preview(base, size, self._layer, confidence, preview_confidence, composed, overlay, key)
        self._content_changed()

    def set_labels(self, prediction: np.ndarray, composed: np.ndarray, confidence: ConfidenceSource | None,
                   overlay: QImage | None = None, key: OverlayKey | None = None) -> None:
        """The full-resolution model labels and composed labels (owned from now on), with their overlay if a worker
        rendered it for ``key``; strokes made since ``expect_labels`` are replayed, a waiting fill runs."""
        self._take_over()
        self._prediction = prediction
        if self._layer is not None and prediction.shape != self._layer.size:
            logger.warning("Prediction %s does not match the edit layer %s; painting is off",
                           prediction.shape, self._layer.size)
            self._layer = None
        self._overlay.confidence = confidence
        self._overlay.set_full(composed, self.preview_box(), overlay, key)
        dirty, self._labels_dirty = self._labels_dirty or [], None
        for box in dirty:
            self.recompose(box)
        self._content_changed()
        if self._pending_fill is not None:
            x, y, label = self._pending_fill
            self._cancel_pending_fill()
            self._apply_fill(x, y, label)

    def overlay_key(self) -> OverlayKey:
        """What an overlay rendered elsewhere must have been rendered for (part table and style)."""
        return self._overlay.key()

    def overlay_image(self) -> QImage:
        """The full-resolution overlay as drawn (premultiplied ARGB32; null when not there). A large one re-renders
        on a worker after a change: ``wait_for_overlay()`` first."""
        return self._overlay_item.level(FULL)

    def busy(self) -> bool:
        """Whether a whole-overlay render or a fill is still waiting for its result."""
        return self._overlay.busy() or self._pending_fill is not None

    def wait_for_overlay(self, timeout_ms: int = 30_000) -> bool:
        return self._overlay.wait(timeout_ms)

    def shutdown(self) -> None:
        """Stop background renders (before the widget goes away)."""
        self._overlay.shutdown()

    def labels(self) -> np.ndarray | None:
        """The current image's composed full-resolution labels (read-only by contract; None until they are known)."""
        return None if self._replacing else self._overlay.labels

    def set_parts(self, parts: PartTable | None) -> None:
        """The part table that names and colours label values; call again (or refresh_overlay) after it changes."""
        self._overlay.parts = parts
        self.refresh_overlay()

    def parts(self) -> PartTable | None:
        return self._overlay.parts

    def set_style(self, style: OverlayStyle) -> None:
        self._overlay.style = style
        self.refresh_overlay()

    def style(self) -> OverlayStyle:  # type: ignore[override]  # QWidget.style() is Qt's widget style
        """The overlay style (shadows QWidget.style(): use QApplication.style() for Qt's)."""
        return self._overlay.style

    def refresh_overlay(self, box: Box | None = None) -> None:
        """Re-render the overlay, all of it (a large one on a worker) or only ``box`` (rows, cols)."""
        if box is None:
            self._overlay.refresh()
        else:
            self._overlay.refresh_box(box, self._layer)

    def _take_over(self) -> None:
        """The first part of a new image arrived: drop everything of the old one."""
        if self._replacing:
            self._replacing = False
            self._photo_item.clear()
            self._overlay.clear()
            self._image_size = None

    def _content_changed(self) -> None:
        """Scene rect for the current content; refit when its size changed or the view was fitted."""
        rect = self._content_rect()
        size = (round(rect.height()), round(rect.width()))
        previous, self._shown_size = self._shown_size, size
        self._update_scene_rect()
        if not rect.isEmpty() and (self._fit_mode or size != previous):
            self.zoom_fit()

    def _content_rect(self) -> QRectF:
        """The image (or, without one, the label map) in scene units."""
        if self._image_size is not None:
            height, width = self._image_size
        elif self._overlay.size() is not None:
            height, width = self._overlay.size()  # type: ignore[misc]
        else:
            height, width = 0, 0
        return QRectF(0, 0, width, height)

    def _update_scene_rect(self, zoom: float | None = None) -> None:
        """Content plus half a viewport of margin each side: the view centre may go anywhere over the image, so
        zooming under the cursor and panning work even when the image is smaller than the window."""
        content = self._content_rect()
        if content.isEmpty():
            self._scene.setSceneRect(content)
            return
        zoom = self.zoom() if zoom is None else zoom
        viewport = self.viewport().rect()
        mx, my = viewport.width() / (2 * zoom), viewport.height() / (2 * zoom)
        self._scene.setSceneRect(content.adjusted(-mx, -my, mx, my))

    # ----- zoom ---------------------------------------------------------------------------------------------------
    def zoom(self) -> float:
        """View pixels per image pixel (1.0 = 100 %)."""
        return self.transform().m11()

    def zoom_fit(self) -> None:
        """Fit the whole image in the view; stays fitted across resizes until the person zooms."""
        rect = self._content_rect()
        if rect.isEmpty():
            return
        viewport = self.viewport().rect()
        factor = min(viewport.width() / rect.width(), viewport.height() / rect.height())
        self._apply_zoom(factor, None)
        self.centerOn(rect.center())
        self._fit_mode = True

    def zoom_actual(self) -> None:
        """100 %: one screen pixel per image pixel, keeping the view centre."""
        self._apply_zoom(1.0, None)
        self._fit_mode = False

    def zoom_by(self, factor: float, anchor: QPoint | None = None) -> None:
        """Multiply the zoom by ``factor``, keeping the scene point under ``anchor`` (view coords) or the centre."""
        self._apply_zoom(self.zoom() * float(factor), anchor)
        self._fit_mode = False

    def _apply_zoom(self, value: float, anchor: QPoint | None) -> None:
        value = min(max(value, MIN_ZOOM), MAX_ZOOM)
        if anchor is None:
            anchor = self.viewport().rect().center()
        scene_point = self._scene_point(QPointF(anchor))
        before = self.zoom()
        self._update_scene_rect(value)
        self.setTransform(QTransform.fromScale(value, value))
        moved = self.viewportTransform().map(scene_point) - QPointF(anchor)
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(moved.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(moved.y()))
        if not math.isclose(before, value):
            self.zoomChanged.emit(value)

    # ----- tools --------------------------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        """One of TOOLS: "pan", "brush", "eraser" (erases edits: back to the prediction) or "fill" (one fill, then
        the tool chosen before it is back)."""
        if name not in TOOLS:
            raise ValueError(f"Unknown canvas tool {name!r}; use one of {', '.join(TOOLS)}.")
        self._finish_stroke()
        if name == "fill" and self._tool != "fill":
            self._tool_before_fill = self._tool
        self._tool = name
        self._update_cursor()
        self._style_brush_cursor()

    def tool(self) -> str:
        return self._tool

    def tool_before_fill(self) -> str:
        """The tool that comes back after a fill."""
        return self._tool_before_fill

    def set_brush_radius(self, px: int) -> None:
        """Brush and eraser radius in image pixels."""
        self._brush_radius = max(0, int(px))
        self._update_brush_cursor(None)

    def brush_radius(self) -> int:
        return self._brush_radius

    def set_active_label(self, label_value: int) -> None:
        """Label value the brush and fill write: 0 background, k + 1 slot k, a user label's value, IGNORE_LABEL."""
        self._active_label = int(label_value)

    def active_label(self) -> int:
        return self._active_label

    # ----- coordinates --------------------------------------------------------------------------------------------
    def _scene_point(self, view_pos: QPointF) -> QPointF:
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(view_pos)

    def _pixel_at(self, scene: QPointF) -> tuple[int, int] | None:
        """(x, y) of the image pixel under a scene point, None outside the shown map."""
        rect = self._content_rect()
        x, y = math.floor(scene.x()), math.floor(scene.y())
        if 0 <= x < rect.width() and 0 <= y < rect.height():
            return x, y
        return None

    # ----- mouse and keys -----------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        button = event.button()
        pan = button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and (self._tool == "pan" or self._space_held))
        if pan:
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._tool in ("brush", "eraser"):
            self._start_stroke(self._scene_point(event.position()))
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._tool == "fill":
            self._fill(self._scene_point(event.position()))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        scene = self._scene_point(event.position())
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
        elif self._stroke is not None:
            self._continue_stroke(scene)
        self._update_brush_cursor(scene)
        self._emit_hover(scene)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
        elif event.button() == Qt.MouseButton.LeftButton and self._stroke is not None:
            self._continue_stroke(self._scene_point(event.position()))
            self._finish_stroke()
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(WHEEL_STEP ** steps, event.position().toPoint())
            self._update_brush_cursor(self._scene_point(event.position()))
        event.accept()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._update_brush_cursor(None, visible=False)
        self._set_hover("")
        super().leaveEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not self._track_space(event, held=True):
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not self._track_space(event, held=False):
            super().keyReleaseEvent(event)

    def _track_space(self, event: QKeyEvent, held: bool) -> bool:
        """Space held pans with any tool; True (event accepted) when ``event`` is that key, auto-repeat aside."""
        if event.key() != Qt.Key.Key_Space or event.isAutoRepeat():
            return False
        self.set_space_held(held)
        event.accept()
        return True

    def set_space_held(self, held: bool) -> None:
        """Space is down (pan with any tool) or up; the window calls this wherever the keyboard focus is."""
        if held and self._stroke is not None:
            self._finish_stroke()
        self._space_held = bool(held)
        self._update_cursor()

    def space_held(self) -> bool:
        return self._space_held

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit_mode:
            self.zoom_fit()
        else:
            self._update_scene_rect()

    # ----- cursor and hover ---------------------------------------------------------------------------------------
    def _update_cursor(self) -> None:
        if self._pending_fill is not None:
            shape = Qt.CursorShape.BusyCursor
        elif self._tool == "pan" or self._space_held:
            shape = Qt.CursorShape.OpenHandCursor
        else:
            shape = Qt.CursorShape.CrossCursor
        self.viewport().setCursor(shape)
        if self._space_held or self._tool not in ("brush", "eraser"):
            self._update_brush_cursor(None, visible=False)

    def _style_brush_cursor(self) -> None:
        """The eraser's circle is dashed: it takes edits away (the prediction shows again) instead of painting."""
        inner = self._cursor_items[1]
        pen = inner.pen()
        pen.setStyle(Qt.PenStyle.DashLine if self._tool == "eraser" else Qt.PenStyle.SolidLine)
        inner.setPen(pen)

    def _update_brush_cursor(self, scene: QPointF | None, visible: bool | None = None) -> None:
        """Move the brush circle (its radius is in image pixels, so it scales with the zoom)."""
        outer, inner = self._cursor_items
        if visible is None:
            painting = self._tool in ("brush", "eraser") and not self._space_held
            visible = painting and (scene is not None or outer.isVisible())
        centre = outer.rect().center() if scene is None else scene
        radius = max(float(self._brush_radius), 0.5)
        rect = QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius)
        for item in (outer, inner):
            item.setRect(rect)
            item.setVisible(bool(visible))

    def _emit_hover(self, scene: QPointF) -> None:
        pixel = None if self._replacing else self._pixel_at(scene)
        self._set_hover("" if pixel is None else self.describe_pixel(*pixel))

    def _set_hover(self, text: str) -> None:
        if text != self._hover_text:
            self._hover_text = text
            self.hovered.emit(text)

    def describe_pixel(self, x: int, y: int) -> str:
        """The status-bar text for a pixel, e.g. "x 120, y 45 · 3 part_03 · 87 %" (number and name after merges,
        confidence)."""
        return self._overlay.describe_pixel(x, y)

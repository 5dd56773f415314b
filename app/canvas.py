"""The image view: a photo with its part overlay, zoom and pan, and brush / eraser / fill straight into an EditLayer.

The canvas only shows and forwards: pixels come from :mod:`app.overlay`, edits go to
:class:`mpae_core.annotation.edits.EditLayer` (which owns undo), and the window decides what to load. One scene unit
is one image pixel, with the image's top-left corner at the scene origin, so view → scene → pixel is one transform.
"""
from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL, UNSET
from mpae_core.annotation.parts import PartTable

from .overlay import Box, OverlayStyle, colour_lut, render_overlay, rgba_to_qimage

logger = logging.getLogger(__name__)

TOOLS = ("pan", "brush", "eraser", "fill")
MIN_ZOOM, MAX_ZOOM = 0.01, 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch (120 units of angleDelta)
BACKGROUND_COLOR = QColor(40, 40, 40)


class _OverlayItem(QGraphicsItem):
    """A QImage drawn 1:1 in scene units, repaintable by box (a pixmap item would re-upload it all per stroke)."""

    def __init__(self) -> None:
        super().__init__()
        self._image = QImage()

    def set_image(self, image: QImage) -> None:
        self.prepareGeometryChange()
        self._image = image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
        self.update()

    def image(self) -> QImage:
        return self._image

    def paste(self, x: int, y: int, patch: QImage) -> None:
        """Replace the pixels at (x, y) with ``patch`` and repaint only that rectangle."""
        if self._image.isNull():
            return
        painter = QPainter(self._image)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(QPoint(x, y), patch)
        painter.end()
        self.update(QRectF(x, y, patch.width(), patch.height()))

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        return QRectF(0, 0, self._image.width(), self._image.height())

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if self._image.isNull():
            return
        # labels are crisp pixels when zoomed in; smoothing only helps thin outlines survive zooming out
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, painter.transform().m11() < 1.0)
        target = option.exposedRect.toAlignedRect().intersected(self._image.rect())
        if target.isEmpty():
            return
        painter.drawImage(target, self._image, target)


class ImageCanvas(QGraphicsView):
    """Zoomable, pannable view of one image and its label overlay; paints into the image's EditLayer."""

    hovered = Signal(str)
    zoomChanged = Signal(float)
    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._image_item = QGraphicsPixmapItem()
        self._image_item.setZValue(0)
        self._overlay_item = _OverlayItem()
        self._overlay_item.setZValue(1)
        self._cursor_items = (QGraphicsEllipseItem(), QGraphicsEllipseItem())
        for width, colour, item in zip((3.0, 1.0), (QColor(0, 0, 0, 160), QColor(255, 255, 255)), self._cursor_items):
            pen = QPen(colour, width)
            pen.setCosmetic(True)  # the same thickness at any zoom while the circle itself scales
            item.setPen(pen)
            item.setZValue(2)
            item.setVisible(False)
        for item in (self._image_item, self._overlay_item, *self._cursor_items):
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

        self._image_size: tuple[int, int] | None = None  # (height, width)
        self._labels: np.ndarray | None = None  # composed uint16 label values
        self._confidence: np.ndarray | None = None
        self._parts: PartTable | None = None
        self._style = OverlayStyle()
        self._lut_key: tuple | None = None
        self._lut: np.ndarray | None = None
        self._layer: EditLayer | None = None
        self._prediction: np.ndarray | None = None

        self._tool = "pan"
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

    # ----- content ------------------------------------------------------------------------------------------------
    def set_image(self, image: QImage | None) -> None:
        """Show ``image`` (None clears); refits when the size changes or the view was fitted."""
        previous = self._image_size
        if image is None or image.isNull():
            self._image_item.setPixmap(QPixmap())
            self._image_size = None
        else:
            self._image_item.setPixmap(QPixmap.fromImage(image))
            self._image_size = (image.height(), image.width())
        self._update_scene_rect()
        if self._image_size is not None and (self._fit_mode or self._image_size != previous):
            self.zoom_fit()

    def set_annotation(self, labels: np.ndarray | None, confidence: np.ndarray | None = None) -> None:
        """Show the composed label map (prediction + edits) and optionally the per-pixel confidence."""
        self._finish_stroke()
        if labels is None:
            self._labels, self._confidence = None, None
        else:
            labels = np.asarray(labels)
            if labels.ndim != 2:
                raise ValueError(f"A label map must be [H, W], got shape {labels.shape}.")
            self._labels = labels.astype(np.uint16, copy=True)  # owned: painting updates it in place
            if confidence is not None and np.shape(confidence) != labels.shape:
                logger.warning("Confidence map %s does not match the label map %s; ignoring it",
                               np.shape(confidence), labels.shape)
                confidence = None
            self._confidence = None if confidence is None else np.asarray(confidence)
            if self._image_size is not None and labels.shape != self._image_size:
                logger.warning("Label map %s does not match the image %s", labels.shape, self._image_size)
        self._update_scene_rect()
        self.refresh_overlay()

    def overlay_image(self) -> QImage:
        """The overlay as drawn (premultiplied ARGB32, image-sized; null when nothing is shown)."""
        return self._overlay_item.image()

    def labels(self) -> np.ndarray | None:
        """The composed label map shown (read-only by contract)."""
        return self._labels

    def set_parts(self, parts: PartTable | None) -> None:
        """The part table that names and colours label values; call again (or refresh_overlay) after it changes."""
        self._parts = parts
        self.refresh_overlay()

    def set_style(self, style: OverlayStyle) -> None:
        self._style = style
        self.refresh_overlay()

    def style(self) -> OverlayStyle:  # type: ignore[override]  # QWidget.style() is Qt's widget style
        """The overlay style (shadows QWidget.style(): use QApplication.style() for Qt's)."""
        return self._style

    def refresh_overlay(self, box: Box | None = None) -> None:
        """Re-render the overlay, all of it or only ``box`` (rows, cols) of the label map."""
        if self._labels is None or self._parts is None:
            self._overlay_item.set_image(QImage())
            return
        lut = self._colour_lut()
        if box is None or self._overlay_item.image().size().toTuple() != self._labels.shape[::-1]:
            pixels = render_overlay(self._labels, self._parts, self._style, self._confidence, lut=lut)
            self._overlay_item.set_image(rgba_to_qimage(pixels))
            return
        rows, cols = box
        y0, y1, _ = rows.indices(self._labels.shape[0])
        x0, x1, _ = cols.indices(self._labels.shape[1])
        if y1 <= y0 or x1 <= x0:
            return
        pixels = render_overlay(self._labels, self._parts, self._style, self._confidence,
                                (slice(y0, y1), slice(x0, x1)), lut=lut)
        self._overlay_item.paste(x0, y0, rgba_to_qimage(pixels))

    def _colour_lut(self) -> np.ndarray:
        key = (id(self._parts), self._parts.version, self._style)  # type: ignore[union-attr]
        if key != self._lut_key:
            self._lut = colour_lut(self._parts, self._style)  # type: ignore[arg-type]
            self._lut_key = key
        return self._lut  # type: ignore[return-value]

    def _content_rect(self) -> QRectF:
        """The image (or, without one, the label map) in scene units."""
        if self._image_size is not None:
            height, width = self._image_size
        elif self._labels is not None:
            height, width = self._labels.shape
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
        self._image_item.setTransformationMode(
            Qt.TransformationMode.SmoothTransformation if value < 1.0 else Qt.TransformationMode.FastTransformation)
        if not math.isclose(before, value):
            self.zoomChanged.emit(value)

    # ----- tools --------------------------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        """One of TOOLS: "pan", "brush", "eraser" (back to the prediction) or "fill"."""
        if name not in TOOLS:
            raise ValueError(f"Unknown canvas tool {name!r}; use one of {', '.join(TOOLS)}.")
        self._finish_stroke()
        self._tool = name
        self._update_cursor()

    def tool(self) -> str:
        return self._tool

    def set_brush_radius(self, px: int) -> None:
        """Brush and eraser radius in image pixels."""
        self._brush_radius = max(0, int(px))
        self._update_brush_cursor(None)

    def brush_radius(self) -> int:
        return self._brush_radius

    def set_active_label(self, label_value: int) -> None:
        """Label value the brush and fill write: 0 background, k + 1 slot k, IGNORE_LABEL."""
        self._active_label = int(label_value)

    def active_label(self) -> int:
        return self._active_label

    def set_edit_target(self, layer: EditLayer | None, prediction_labels: np.ndarray | None) -> None:
        """Where painting goes; what is shown stays set_annotation's (call recompose() to show the layer's state)."""
        self._finish_stroke()
        self._layer = layer
        self._prediction = None if prediction_labels is None else np.asarray(prediction_labels)
        if layer is not None and self._prediction is not None and self._prediction.shape != layer.size:
            logger.warning("Prediction %s does not match the edit layer %s; painting is off",
                           self._prediction.shape, layer.size)
            self._layer, self._prediction = None, None

    def recompose(self, box: Box | None = None) -> None:
        """Re-read the edit layer (all, or ``box``) into the shown labels, e.g. after undo/redo from a menu."""
        if self._layer is None or self._prediction is None:
            return
        if self._labels is None or box is None or self._labels.shape != self._layer.size:
            self._labels = self._layer.composed(self._prediction).astype(np.uint16, copy=True)
            self._update_scene_rect()
            self.refresh_overlay()
            return
        edits = self._layer.data[box]
        self._labels[box] = np.where(edits == UNSET, self._prediction[box], edits)
        self.refresh_overlay(box)

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
        self._space_held = held
        self._update_cursor()
        event.accept()
        return True

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit_mode:
            self.zoom_fit()
        else:
            self._update_scene_rect()

    # ----- painting -----------------------------------------------------------------------------------------------
    def _stroke_label(self) -> int:
        return UNSET if self._tool == "eraser" else self._active_label

    def _start_stroke(self, scene: QPointF) -> None:
        if self._layer is None or self._prediction is None:
            return
        self._stroke = contextlib.ExitStack()
        self._stroke.enter_context(self._layer.group())  # the whole drag is one undo step
        self._stroke_changed = 0
        self._stroke_last = None
        self._continue_stroke(scene)

    def _continue_stroke(self, scene: QPointF) -> None:
        """Paint from the last mouse position to ``scene`` (pixel centres sit at integer layer coordinates)."""
        if self._stroke is None or self._layer is None:
            return
        x, y = scene.x() - 0.5, scene.y() - 0.5
        x0, y0 = self._stroke_last if self._stroke_last is not None else (x, y)
        self._stroke_last = (x, y)
        radius = float(self._brush_radius)
        try:
            changed = self._layer.stroke(x0, y0, x, y, radius, self._stroke_label())
        except ValueError as exc:
            logger.warning("Cannot paint: %s", exc)
            self._finish_stroke()
            return
        if not changed:
            return
        self._stroke_changed += changed
        reach = max(radius, 0.5)
        height, width = self._layer.size
        top, bottom = max(0, math.floor(min(y0, y) - reach)), min(height, math.ceil(max(y0, y) + reach) + 1)
        left, right = max(0, math.floor(min(x0, x) - reach)), min(width, math.ceil(max(x0, x) + reach) + 1)
        self.recompose((slice(top, bottom), slice(left, right)))

    def _finish_stroke(self) -> None:
        """Close the drag's undo group and tell listeners when something changed."""
        if self._stroke is None:
            return
        stroke, self._stroke = self._stroke, None
        self._stroke_last = None
        stroke.close()
        if self._stroke_changed:
            self._stroke_changed = 0
            self.edited.emit()

    def _fill(self, scene: QPointF) -> None:
        if self._layer is None or self._prediction is None:
            return
        pixel = self._pixel_at(scene)
        if pixel is None:
            return
        try:
            changed = self._layer.fill(pixel[0], pixel[1], self._active_label, self._prediction)
        except ValueError as exc:
            logger.warning("Cannot fill: %s", exc)
            return
        if changed:
            self.recompose()
            self.edited.emit()

    # ----- cursor and hover ---------------------------------------------------------------------------------------
    def _update_cursor(self) -> None:
        if self._tool == "pan" or self._space_held:
            shape = Qt.CursorShape.OpenHandCursor
        else:
            shape = Qt.CursorShape.CrossCursor
        self.viewport().setCursor(shape)
        if self._space_held or self._tool not in ("brush", "eraser"):
            self._update_brush_cursor(None, visible=False)

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
        pixel = self._pixel_at(scene)
        self._set_hover("" if pixel is None else self.describe_pixel(*pixel))

    def _set_hover(self, text: str) -> None:
        if text != self._hover_text:
            self._hover_text = text
            self.hovered.emit(text)

    def describe_pixel(self, x: int, y: int) -> str:
        """The status-bar text for a pixel, e.g. "x 120, y 45 · part_03 · 87 %" (name after merges, confidence)."""
        text = f"x {x}, y {y}"
        if self._labels is None or not (0 <= y < self._labels.shape[0] and 0 <= x < self._labels.shape[1]):
            return text
        value = int(self._labels[y, x])
        if value == BACKGROUND:
            name = "background"
        elif value == IGNORE_LABEL:
            name = "don't care"
        elif self._parts is not None and value - 1 < self._parts.num_parts:
            name = self._parts.display_name(value - 1)
            if self._parts.is_background(value - 1):
                name += " (exported as background)"
        else:
            name = f"label {value}"
        text += f" · {name}"
        if self._confidence is not None:
            text += f" · {round(float(self._confidence[y, x]) * 100)} %"
        return text

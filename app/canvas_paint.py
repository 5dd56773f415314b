"""Painting on the canvas: brush and eraser strokes and fills into the shown image's EditLayer, and recomposing
the shown labels from it (a mixin of :class:`app.canvas.ImageCanvas`, which owns the state).

A stroke needs only the edit layer and the labels' preview: the full-resolution labels replay it when they land. A
fill needs the full-resolution labels (it floods the composed map), so one made before waits for them. A fill is
one click: the tool chosen before it comes back afterwards, so a second, stray click never floods the image; and a
fill over more than :data:`LARGE_FILL` of the image asks first.
"""
from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
from PySide6.QtCore import QPointF, Qt

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.fill import flood_region
from mpae_core.annotation.labels import UNSET

from .overlay import Box

logger = logging.getLogger(__name__)

LARGE_FILL = 0.5  # a fill over more than this fraction of the image asks first


class PaintingMixin:
    """Edit target, recomposition, strokes and fills of ``ImageCanvas``."""

    # ----- edit target --------------------------------------------------------------------------------------------
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
        """Re-read the edit layer (all, or ``box``) into the shown labels, e.g. after undo/redo from a menu; before
        the full-resolution labels exist only the preview follows (and the box is replayed when they land)."""
        layer = self._layer
        if layer is None:
            return
        if self._labels_dirty is not None and box is not None:
            self._labels_dirty.append(box)
        labels = self._overlay.labels
        ready = self._prediction is not None and labels is not None and labels.shape == layer.size
        if box is None:
            if ready:
                self._overlay.labels = layer.composed(self._prediction).astype(np.uint16, copy=True)
            self._overlay.refresh(layer)
            return
        if ready:
            edits = layer.data[box]
            labels[box] = np.where(edits == UNSET, self._prediction[box], edits)  # type: ignore[index]
        self._overlay.refresh_box(box, layer)

    def paint_blocker(self) -> str | None:
        """Why a paint tool cannot paint now (a clause for a sentence), or None when it can: it needs an edit layer
        of the shown image's size and at least the preview of its labels."""
        if self._replacing or self._overlay.size() is None:
            return "it is still loading"
        if self._layer is None:
            return "it has no edit layer"
        if tuple(self._overlay.size()) != self._layer.size:
            return "its labels and its edit layer differ in size"
        return None

    def _refuse(self, reason: str) -> bool:
        """Tell listeners why nothing was painted; returns False for ``return self._refuse(...)`` chains."""
        self.paintRefused.emit(reason)
        return False

    # ----- painting -----------------------------------------------------------------------------------------------
    def _stroke_label(self) -> int:
        return UNSET if self._tool == "eraser" else self._active_label

    def _start_stroke(self, scene: QPointF) -> None:
        blocker = self.paint_blocker()
        if blocker is not None:
            self._refuse(blocker)
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
            self._refuse(str(exc).rstrip("."))
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
        blocker = self.paint_blocker()
        if blocker is not None:
            self._refuse(blocker)
            return
        pixel = self._pixel_at(scene)
        if pixel is None:
            self._refuse("the click was outside the image; click inside it")
            return
        if self._prediction is None:  # a fill needs the full-resolution labels: it runs when they land
            self._pending_fill = (pixel[0], pixel[1], self._active_label)
            self.viewport().setCursor(Qt.CursorShape.BusyCursor)
            return
        self._apply_fill(pixel[0], pixel[1], self._active_label)

    def _apply_fill(self, x: int, y: int, label: int) -> None:
        """Give the tool chosen before the fill back (one click, one fill), then fill the region around (x, y) of
        the shown labels, asking first when it is most of the image."""
        if self._tool == "fill":
            self.set_tool(self._tool_before_fill)
            self.toolChanged.emit(self._tool)
        self._fill_region(x, y, label)

    def _fill_region(self, x: int, y: int, label: int) -> None:
        labels = self._overlay.labels
        if self._layer is None or self._prediction is None or labels is None or labels.shape != self._layer.size:
            self._refuse(self.paint_blocker() or "its labels are not complete yet")
            return
        if int(labels[y, x]) == label:
            self._refuse("the region clicked has that label already")
            return
        box, inside = flood_region(labels, x, y)  # the shown labels are the composed map the layer would flood
        fraction = np.count_nonzero(inside) / labels.size
        if fraction > LARGE_FILL and self.confirm_fill is not None and not self.confirm_fill(fraction, label):
            self._refuse(f"the fill would have covered {fraction:.0%} of the image and was not confirmed")
            return
        try:
            changed = self._layer.fill_region(box, inside, label)
        except ValueError as exc:
            logger.warning("Cannot fill: %s", exc)
            self._refuse(str(exc).rstrip("."))
            return
        if changed:
            self.recompose(self._layer.changed_box)
            self.edited.emit()

    def _cancel_pending_fill(self) -> None:
        if self._pending_fill is not None:
            self._pending_fill = None
            self._update_cursor()

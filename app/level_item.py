"""A canvas item drawn from a screen-sized preview until its full resolution is there, and wherever the zoom needs no
more pixels than the preview has.

One scene unit is one full-resolution pixel whatever level is drawn. Levels are QImages already in the format the
raster engine draws directly (RGB32 for photos, premultiplied ARGB32 for overlays), prepared off the GUI thread, and
the item only ever draws the exposed part of one level: installing a 12 MP level costs nothing on the GUI thread, and
a repaint costs about what the screen shows, at any zoom. (A QPixmap would need a conversion on the GUI thread, and a
whole 12 MP image smoothly scaled down on every repaint is what froze the window before.)
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

PREVIEW, FULL = "preview", "full"


class LevelImageItem(QGraphicsItem):
    """An image of ``size()`` scene units with a preview level and a full-resolution level (either may be absent)."""

    def __init__(self, image_format: QImage.Format, *, crisp_when_magnified: bool) -> None:
        super().__init__()
        self._format = image_format
        self._crisp = crisp_when_magnified  # labels stay crisp pixels; a photo preview is smoothed when magnified
        self._levels: dict[str, QImage] = {PREVIEW: QImage(), FULL: QImage()}
        self._width, self._height = 0, 0

    # ----- content ------------------------------------------------------------------------------------------------
    def set_size(self, width: int, height: int) -> None:
        """The full resolution, in scene units (levels are stretched over it)."""
        if (width, height) != (self._width, self._height):
            self.prepareGeometryChange()
            self._width, self._height = int(width), int(height)
        self.update()

    def size(self) -> tuple[int, int]:
        return self._width, self._height

    def set_level(self, level: str, image: QImage | None) -> None:
        """Install (or, with None, drop) a level; an image in another format is converted (small ones only: large ones
        come converted from a worker)."""
        if image is None or image.isNull():
            image = QImage()
        elif image.format() != self._format:
            image = image.convertToFormat(self._format)
        self._levels[level] = image
        self.update()

    def level(self, level: str) -> QImage:
        return self._levels[level]

    def clear(self) -> None:
        self._levels = {PREVIEW: QImage(), FULL: QImage()}
        self.set_size(0, 0)

    def paste(self, level: str, x: int, y: int, patch: QImage) -> None:
        """Replace the pixels of ``level`` at (x, y) (that level's pixels) and repaint only that rectangle."""
        image = self._levels[level]
        if image.isNull():
            return
        painter = QPainter(image)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(QPoint(x, y), patch)
        painter.end()
        sx, sy = self._scale(image)
        self.update(QRectF(x / sx - 1, y / sy - 1, patch.width() / sx + 2, patch.height() / sy + 2))

    # ----- drawing ------------------------------------------------------------------------------------------------
    def _scale(self, image: QImage) -> tuple[float, float]:
        """Level pixels per scene unit."""
        return image.width() / max(self._width, 1), image.height() / max(self._height, 1)

    def level_for(self, zoom: float) -> str | None:
        """The level drawn at ``zoom`` device pixels per scene unit: the preview while it has enough pixels (or is
        all there is), else the full resolution."""
        preview, full = self._levels[PREVIEW], self._levels[FULL]
        if full.isNull():
            return None if preview.isNull() else PREVIEW
        if preview.isNull():
            return FULL
        return PREVIEW if zoom <= self._scale(preview)[0] * 1.01 else FULL

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        return QRectF(0, 0, self._width, self._height)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        zoom = painter.deviceTransform().m11()
        name = self.level_for(zoom)
        if name is None:
            return
        image = self._levels[name]
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        sx, sy = self._scale(image)
        if name == FULL and image.width() == self._width and image.height() == self._height:
            target = exposed.toAlignedRect().intersected(image.rect())
            source = QRectF(target)
            target = QRectF(target)
        else:
            target = exposed
            source = QRectF(exposed.x() * sx, exposed.y() * sy, exposed.width() * sx, exposed.height() * sy)
        magnification = zoom / sx
        smooth = magnification < 1.0 or (not self._crisp and name == PREVIEW)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawImage(target, image, source)

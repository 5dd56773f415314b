"""The image list: a Qt model over the project's records with lazy thumbnails, fast for 10,000 images.

Rows come from the project's in-memory index (no file reads); a thumbnail is decoded only when its row is painted,
on a thread pool, and kept in a bounded cache, so opening a huge folder costs the list and nothing else.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, QRunnable, QSize,
                            QSortFilterProxyModel, Qt, QThreadPool, Signal)
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from mpae_core.annotation import AnnotationProject, ImageRecord, ImageStatus
from mpae_core.images import load_thumbnail

from .icons import icon
from .overlay import pil_to_qimage

logger = logging.getLogger(__name__)

THUMB_SIZE = 48
STATUS_COLOURS = {
    ImageStatus.NEW: "#8a8a8a", ImageStatus.PREDICTED: "#3b82f6", ImageStatus.EDITED: "#f59e0b",
    ImageStatus.REVIEWED: "#16a34a", ImageStatus.ERROR: "#dc2626",
}
StatusRole = Qt.UserRole + 1
RelpathRole = Qt.UserRole + 2
ConfidenceRole = Qt.UserRole + 3
#: The image list's orders (key → what the sort box says); "name" is the project's own (folder) order.
SORT_KEYS = {"name": "Name", "confidence": "Least sure first", "status": "Status (to do first)"}
#: "status" order: what needs a person first.
STATUS_ORDER = {s: i for i, s in enumerate(("error", "new", "predicted", "edited", "reviewed"))}
CONFIDENCE_HELP = "share of the image the model labels clearly (its best part well ahead of the runner-up)"


def make_thumbnail(path: Path, size: int = THUMB_SIZE) -> QImage:
    """A small QImage of the file, decoded by the project's one image loader; raises ImageLoadError."""
    return pil_to_qimage(load_thumbnail(path, size))


class _ThumbnailSignals(QObject):
    ready = Signal(str, QImage)
    failed = Signal(str)


class _ThumbnailJob(QRunnable):
    def __init__(self, relpath: str, path: Path, signals: _ThumbnailSignals) -> None:
        super().__init__()
        self.relpath, self.path, self.signals = relpath, path, signals

    def run(self) -> None:
        try:
            self.signals.ready.emit(self.relpath, make_thumbnail(self.path))
        except Exception as exc:  # a broken file gets the error icon in the list, nothing more
            logger.debug("No thumbnail for %s: %s", self.path, exc)
            self.signals.failed.emit(self.relpath)


class ImageListModel(QAbstractListModel):
    """One row per project image: name, status colour/icon, tooltip with error or confidence, lazy thumbnail."""

    def __init__(self, parent: QObject | None = None, cache_size: int = 3000) -> None:
        super().__init__(parent)
        self._project: AnnotationProject | None = None
        self._relpaths: list[str] = []
        self._rows: dict[str, int] = {}
        self._records: dict[str, ImageRecord] = {}
        self._thumbs: OrderedDict[str, QPixmap | None] = OrderedDict()
        self._requested: set[str] = set()
        self._cache_size = cache_size
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._signals = _ThumbnailSignals()
        self._signals.ready.connect(self._thumbnail_ready)
        self._signals.failed.connect(self._thumbnail_failed)

    def set_project(self, project: AnnotationProject | None) -> None:
        self.beginResetModel()
        self._pool.clear()
        self._project = project
        self._relpaths = [] if project is None else project.relpaths()
        self._rows = {r: i for i, r in enumerate(self._relpaths)}
        self._records = {} if project is None else {r.relpath: r for r in project.records()}
        self._thumbs.clear()
        self._requested.clear()
        self.endResetModel()

    def relpath(self, row: int) -> str:
        return self._relpaths[row]

    def row_of(self, relpath: str) -> int:
        return self._rows.get(relpath, -1)

    def refresh(self, relpath: str) -> None:
        """Re-read one image's record from the project (after a prediction, edit, review or error)."""
        row = self._rows.get(relpath)
        if row is None or self._project is None:
            return
        self._records[relpath] = self._project.record(relpath)
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._relpaths)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.DisplayRole):
        if not index.isValid():
            return None
        relpath = self._relpaths[index.row()]
        record = self._records[relpath]
        if role == Qt.DisplayRole:
            return relpath
        if role == Qt.DecorationRole:
            return self._thumbnail(relpath)
        if role == Qt.ToolTipRole:
            lines = [relpath, f"status: {record.status.value}"]
            if record.error:
                lines.append(record.error)
            if record.confidence is not None:
                lines.append(f"confidence: {record.confidence:.0%}, the {CONFIDENCE_HELP}")
            elif record.has_prediction:
                lines.append("confidence: — (predicted by an older version; predict it again to see it)")
            if record.size is not None:
                lines.append(f"{record.size[1]}×{record.size[0]} px")
            return "\n".join(lines)
        if role == Qt.ForegroundRole and record.status is ImageStatus.ERROR:
            return QColor(STATUS_COLOURS[ImageStatus.ERROR])
        if role == StatusRole:
            return record.status.value
        if role == RelpathRole:
            return relpath
        if role == ConfidenceRole:
            return record.confidence if record.has_prediction else None
        return None

    # ----- thumbnails ---------------------------------------------------------------------------------------------
    def _thumbnail(self, relpath: str):
        if relpath in self._thumbs:
            pixmap = self._thumbs[relpath]
            self._thumbs.move_to_end(relpath)
            return pixmap if pixmap is not None else icon("error", STATUS_COLOURS[ImageStatus.ERROR])
        if relpath not in self._requested and self._project is not None:
            self._requested.add(relpath)
            self._pool.start(_ThumbnailJob(relpath, self._project.images_folder / relpath, self._signals))
        return status_icon(self._records[relpath].status)

    def _store(self, relpath: str, pixmap: QPixmap | None) -> None:
        self._requested.discard(relpath)
        if relpath not in self._rows:
            return
        self._thumbs[relpath] = pixmap
        while len(self._thumbs) > self._cache_size:
            self._thumbs.popitem(last=False)
        index = self.index(self._rows[relpath])
        self.dataChanged.emit(index, index, [Qt.DecorationRole])

    def _thumbnail_ready(self, relpath: str, image: QImage) -> None:
        self._store(relpath, QPixmap.fromImage(image))

    def _thumbnail_failed(self, relpath: str) -> None:
        self._store(relpath, None)

    def wait_for_thumbnails(self, msecs: int = 5000) -> bool:
        """Block until queued thumbnails are decoded (tests and screenshots)."""
        return self._pool.waitForDone(msecs)


class ImageFilterModel(QSortFilterProxyModel):
    """Filter by a name fragment and/or a status, keeping the project's order."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._status: str | None = None
        self.setFilterCaseSensitivity(Qt.CaseInsensitive)

    def set_status(self, status: str | None) -> None:
        self._status = status or None
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        index = self.sourceModel().index(row, 0, parent)
        if self._status is not None and index.data(StatusRole) != self._status:
            return False
        return super().filterAcceptsRow(row, parent)

    # ----- sorting (a key of SORT_KEYS; ties keep the folder order) -----------------------------------------------
    _sort_key = "name"

    def set_sort_key(self, key: str) -> None:
        """Order the list by ``key``: "name" (folder order), "confidence" (least sure first; images without a
        figure last) or "status" (errors and new images first). The order follows new predictions by itself."""
        if key not in SORT_KEYS:
            raise ValueError(f"Unknown sort order {key!r}; use one of {', '.join(SORT_KEYS)}.")
        self._sort_key = key
        if key == "name":
            self.sort(-1)  # back to the source (folder) order
        else:
            self.invalidate()
            self.sort(0, Qt.SortOrder.AscendingOrder)

    def sort_key(self) -> str:
        return self._sort_key

    def lessThan(self, left: QModelIndex | QPersistentModelIndex,  # noqa: N802 (Qt name)
                 right: QModelIndex | QPersistentModelIndex) -> bool:
        return self._sort_value(left) < self._sort_value(right)

    def _sort_value(self, index: QModelIndex | QPersistentModelIndex) -> tuple:
        if self.sort_key() == "confidence":
            confidence = index.data(ConfidenceRole)
            return (confidence is None, confidence or 0.0, index.row())
        if self.sort_key() == "status":
            return (STATUS_ORDER.get(index.data(StatusRole), len(STATUS_ORDER)), index.row())
        return (index.row(),)


class ImageRowDelegate(QStyledItemDelegate):
    """Thumbnail, file name and a coloured status line with the confidence: readable at a glance in long lists."""

    ROW_HEIGHT = THUMB_SIZE + 8

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(200, self.ROW_HEIGHT)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawPrimitive(QStyle.PE_PanelItemViewItem, option, painter, option.widget)
        rect = option.rect
        status = index.data(StatusRole) or "new"
        colour = QColor(STATUS_COLOURS[ImageStatus(status)])
        painter.fillRect(rect.x(), rect.y() + 2, 4, rect.height() - 4, colour)
        decoration = index.data(Qt.DecorationRole)
        thumb_rect = rect.adjusted(8, 4, 0, -4)
        thumb_rect.setWidth(THUMB_SIZE)
        if isinstance(decoration, QPixmap):
            scaled = decoration.scaled(THUMB_SIZE, THUMB_SIZE, Qt.KeepAspectRatio, Qt.SmoothTransformation)
            x = thumb_rect.x() + (THUMB_SIZE - scaled.width()) // 2
            y = thumb_rect.y() + (THUMB_SIZE - scaled.height()) // 2
            painter.drawPixmap(x, y, scaled)
        elif isinstance(decoration, QIcon):
            decoration.paint(painter, thumb_rect.adjusted(12, 12, -12, -12))
        selected = bool(option.state & QStyle.State_Selected)
        text_colour = option.palette.highlightedText().color() if selected else option.palette.text().color()
        text_rect = rect.adjusted(THUMB_SIZE + 16, 4, -4, -4)
        name = Path(index.data(Qt.DisplayRole) or "").name
        painter.setPen(text_colour)
        metrics = painter.fontMetrics()
        painter.drawText(text_rect.adjusted(0, 2, 0, 0), Qt.AlignLeft | Qt.AlignTop,
                         metrics.elidedText(name, Qt.ElideMiddle, text_rect.width()))
        detail = status
        confidence = index.data(ConfidenceRole)
        if confidence is not None:
            detail += f" · {confidence:.0%} sure"
        elif status in ("predicted", "edited", "reviewed"):
            detail += " · —"
        painter.setPen(colour if not selected else text_colour)
        painter.drawText(text_rect.adjusted(0, 0, 0, -2), Qt.AlignLeft | Qt.AlignBottom,
                         metrics.elidedText(detail, Qt.ElideRight, text_rect.width()))
        painter.restore()


def status_icon(status: ImageStatus) -> QIcon:
    return icon("reviewed" if status is ImageStatus.REVIEWED else status.value, STATUS_COLOURS[status])


ICON_SIZE = QSize(THUMB_SIZE, THUMB_SIZE)

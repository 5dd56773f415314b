"""The image list: a Qt model over the project's records with lazy thumbnails, fast for 10,000 images.

Rows come from the project's in-memory index (no file reads); a thumbnail is decoded only when its row is painted,
on a thread pool, and kept in a bounded cache, so opening a huge folder costs the list and nothing else. The filter
matches all names in one pass over a list (a few milliseconds for 10,000 rows) instead of one Python call per row
through QSortFilterProxyModel (~100 ms per keystroke).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import bisect

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, QRunnable, QSize,
                            QStringListModel, Qt, QThreadPool, Signal)
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from mpae_core.annotation import AnnotationProject, FileState, ImageRecord, ImageStatus
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
FileStateRole = Qt.UserRole + 4  # FileState value: "" unchanged, "changed", "missing"
FILE_STATE_COLOUR = "#d97706"
FILE_STATE_TEXT = {FileState.CHANGED: "file changed on disk", FileState.MISSING: "file deleted"}
FILE_STATE_TIPS = {
    FileState.CHANGED: "The file changed on disk after it was predicted: the mask may not fit; predict it again "
                       "(edits are kept).",
    FileState.MISSING: "The file was deleted from the folder; its annotation is kept in the project.",
}
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
        self._folded: list[str] = []  # casefolded relpaths, for the filter
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
        self._folded = [relpath.casefold() for relpath in self._relpaths]
        self._rows = {r: i for i, r in enumerate(self._relpaths)}
        self._records = {} if project is None else {r.relpath: r for r in project.records()}
        self._thumbs.clear()
        self._requested.clear()
        self.endResetModel()

    def relpath(self, row: int) -> str:
        return self._relpaths[row]

    def row_of(self, relpath: str) -> int:
        return self._rows.get(relpath, -1)

    def sort_value(self, row: int, key: str) -> tuple:
        """Where a row goes in the list ordered by ``key`` (a key of SORT_KEYS); the row itself breaks ties."""
        record = self._records[self._relpaths[row]]
        if key == "confidence":
            confidence = record.confidence if record.has_prediction else None
            return (confidence is None, confidence or 0.0, row)
        if key == "status":
            return (STATUS_ORDER.get(record.status.value, len(STATUS_ORDER)), row)
        return (row,)

    def matches(self, row: int, text: str, status: str | None) -> bool:
        """Whether a row's name contains ``text`` (casefolded) and its status is ``status`` (None: any)."""
        return text in self._folded[row] and (status is None
                                              or self._records[self._relpaths[row]].status.value == status)

    def matching_rows(self, text: str, status: str | None) -> list[int]:
        """Rows whose name contains ``text`` (casefolded) with ``status`` (None: any), in one pass."""
        if status is None:
            return [row for row, name in enumerate(self._folded) if text in name]
        records = self._records
        return [row for row, (name, relpath) in enumerate(zip(self._folded, self._relpaths))
                if text in name and records[relpath].status.value == status]

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
        return self.data_of(self._relpaths[index.row()], role)

    def data_of(self, relpath: str, role: int):
        """What ``data`` gives for the row of ``relpath`` (the filtered list asks by name)."""
        record = self._records.get(relpath)
        if record is None:
            return None
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
            if record.file_state is not FileState.UNCHANGED:
                lines.append(FILE_STATE_TIPS[record.file_state])
            return "\n".join(lines)
        if role == Qt.ForegroundRole and record.status is ImageStatus.ERROR:
            return QColor(STATUS_COLOURS[ImageStatus.ERROR])
        if role == Qt.ForegroundRole and record.file_state is not FileState.UNCHANGED:
            return QColor(FILE_STATE_COLOUR)
        if role == FileStateRole:
            return record.file_state.value
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


class ImageFilterModel(QStringListModel):
    """The list filtered by a name fragment (case-insensitive) and/or a status, ordered by a key of SORT_KEYS (ties
    keep the folder order).

    Its rows are a C++ string list of relpaths, so Qt lays out and scrolls 10,000 rows without one Python call per
    row (a Python proxy's ``index()`` costs ~100 ms per refilter); every other role comes from the
    :class:`ImageListModel` by name. A new filter or order resets the model (the window then keeps or clears the
    selection itself, so nothing opens as a side effect); a row whose status or confidence changes joins, leaves or
    moves on its own, with ``restructuring`` set meanwhile so the window can tell that from a person's click.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._source: ImageListModel | None = None
        self._text = ""
        self._status: str | None = None
        self._sort_key = "name"
        self._keys: list[tuple] = []  # each row's sort value, ascending (the last item is its source row)
        self._rows: dict[str, int] = {}  # relpath -> row
        self.restructuring = False

    def setSourceModel(self, source: ImageListModel) -> None:  # noqa: N802 (the proxy models' name)
        self._source = source
        source.modelReset.connect(self._refilter)
        source.dataChanged.connect(self._source_changed)
        self._refilter()

    def sourceModel(self) -> ImageListModel | None:  # noqa: N802
        return self._source

    def set_filter(self, text: str, status: str | None) -> None:
        """Keep the rows whose name contains ``text`` and whose status is ``status`` (None: any)."""
        self._text, self._status = (text or "").casefold(), status or None
        self._refilter()

    def set_sort_key(self, key: str) -> None:
        """Order the list by ``key``: "name" (folder order), "confidence" (least sure first; images without a
        figure last) or "status" (errors and new images first). The order follows new predictions by itself."""
        if key not in SORT_KEYS:
            raise ValueError(f"Unknown sort order {key!r}; use one of {', '.join(SORT_KEYS)}.")
        if key != self._sort_key:
            self._sort_key = key
            self._refilter()

    def sort_key(self) -> str:
        return self._sort_key

    def index_of(self, relpath: str) -> QModelIndex:
        """The row of ``relpath`` (invalid when the filter hides it)."""
        row = self._rows.get(relpath)
        return QModelIndex() if row is None else self.index(row, 0)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.DisplayRole):
        relpath = super().data(index, Qt.DisplayRole)
        if relpath is None or self._source is None:
            return None
        return relpath if role in (Qt.DisplayRole, RelpathRole) else self._source.data_of(relpath, role)

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def _refilter(self) -> None:
        source = self._source
        rows = [] if source is None else source.matching_rows(self._text, self._status)
        self._keys = sorted(source.sort_value(row, self._sort_key) for row in rows) if rows else []
        relpaths = [source.relpath(key[-1]) for key in self._keys]  # type: ignore[union-attr]
        self._rows = {relpath: i for i, relpath in enumerate(relpaths)}
        self.setStringList(relpaths)

    def _source_changed(self, top: QModelIndex, bottom: QModelIndex, roles=()) -> None:
        source = self._source
        self.restructuring = True
        try:
            for row in range(top.row(), bottom.row() + 1):
                self._follow(source.relpath(row), source.matches(row, self._text, self._status),  # type: ignore
                             source.sort_value(row, self._sort_key), roles)  # type: ignore[union-attr]
        finally:
            self.restructuring = False

    def _follow(self, relpath: str, wanted: bool, key: tuple, roles) -> None:
        """One source row changed: it joins, leaves, moves to its new place (keeping the view's selection) or
        only repaints."""
        at = self._rows.get(relpath)
        if at is not None and wanted:
            keys = self._keys[:at] + self._keys[at + 1 :]
            to = bisect.bisect_left(keys, key)
            self._keys = keys[:to] + [key] + keys[to:]
            if to != at:
                self.moveRows(QModelIndex(), at, 1, QModelIndex(), to if to < at else to + 1)
            index = self.index(to, 0)
            self.dataChanged.emit(index, index, roles)
        elif at is not None:
            self.removeRows(at, 1)
            del self._keys[at]
        elif wanted:
            to = bisect.bisect_left(self._keys, key)
            self.insertRows(to, 1)
            self.setData(self.index(to, 0), relpath)
            self._keys.insert(to, key)
        else:
            return
        self._rows = {r: i for i, r in enumerate(self.stringList())}


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
        file_state = FileState(index.data(FileStateRole) or "")
        if file_state is not FileState.UNCHANGED:  # the confidence was about another file (or none at all)
            detail += f" · {FILE_STATE_TEXT[file_state]}"
            colour = QColor(FILE_STATE_COLOUR)
        elif confidence is not None:
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

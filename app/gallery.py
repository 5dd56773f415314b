"""The part gallery: crops of one part across the folder, so a person sees what a slot means before naming it.

Crops need the image and its label map, which is slow for large photos and must not freeze the window. The project
is not thread-safe, so the worker thread never touches the window's project: the gallery saves it, and the worker
opens its own read-only copy of the saved project (predictions, edits and index are all on disk) and sends tiles
back one by one through a queued signal. A new request cancels the previous one; stale tiles are dropped by job id.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from PySide6.QtCore import QSize, Qt, QThread, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.labels import USER_LABEL_BASE
from mpae_core.annotation.parts import part_number
from mpae_core.errors import MPAEError
from mpae_core.images import load_image

from .icons import icon
from .label_keys import label_number

logger = logging.getLogger(__name__)

THUMB_SIZE = 128
PADDING = 0.15  # of the part's bounding box, each side
MIN_CONTEXT = 0.12  # the crop is at least this fraction of the image's shorter side, so tiny parts keep context
WORKING_SIDE = 512  # label maps of un-edited images are computed at most this large (enough for a 128 px tile)
RANK_POOL = 4  # read predictions of at most RANK_POOL × max_crops candidates to rank them by area
DIM = 0.5  # brightness of the pixels outside the part
TINT = 0.45  # weight of the part colour over its pixels

Color = tuple[int, int, int]


def crop_part(image: Image.Image, labels: np.ndarray, members: list[int], color: Color,
              thumb: int = THUMB_SIZE, *, values: list[int] | None = None) -> tuple[np.ndarray, float] | None:
    """An RGB uint8 thumbnail of the part (tinted, the rest dimmed) and its area fraction; None if it has no pixels.

    ``labels`` holds label values (slot + 1 for the slots ``members``, or the label ``values`` given, e.g. a user
    label's) and may be smaller than the image (same aspect): boxes are scaled.
    """
    wanted = [m + 1 for m in members] if values is None else list(values)
    mask = np.isin(labels, np.asarray(wanted, dtype=labels.dtype))
    if not mask.any():
        return None
    area = float(mask.mean())
    lh, lw = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    min_side = MIN_CONTEXT * min(lh, lw)
    half_h = max((y1 - y0) * (0.5 + PADDING), min_side / 2)
    half_w = max((x1 - x0) * (0.5 + PADDING), min_side / 2)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    y0, y1 = max(0, int(np.floor(cy - half_h))), min(lh, int(np.ceil(cy + half_h)))
    x0, x1 = max(0, int(np.floor(cx - half_w))), min(lw, int(np.ceil(cx + half_w)))

    width, height = image.size
    sx, sy = width / lw, height / lh
    box = (int(x0 * sx), int(y0 * sy), max(int(x0 * sx) + 1, int(round(x1 * sx))),
           max(int(y0 * sy) + 1, int(round(y1 * sy))))
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    scale = thumb / max(crop_w, crop_h)
    size = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    rgb = np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.float32)
    alpha_img = Image.fromarray((mask[y0:y1, x0:x1] * 255).astype(np.uint8))
    alpha = np.asarray(alpha_img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255.0
    tinted = rgb * (1.0 - TINT) + np.asarray(color, np.float32) * TINT
    out = rgb * DIM * (1.0 - alpha) + tinted * alpha
    inside = alpha[..., 0] >= 0.5
    # a 1 px outline in the part colour makes the boundary readable on busy photos (not along the crop's edge)
    padded = np.pad(inside, 1, mode="edge")
    edge = inside & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    out[edge] = color
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), area


def _to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage that owns its pixels (safe to hand to another thread)."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def _short_name(relpath: str, limit: int = 22) -> str:
    name = PurePosixPath(relpath).name
    return name if len(name) <= limit else f"{name[: limit // 2 - 1]}…{name[-(limit // 2) + 1:]}"


@dataclass(frozen=True)
class CropRequest:
    """What a worker needs, all copied on the GUI thread: no reference to the live project."""

    job: int
    project_dir: Path
    members: tuple[int, ...]  # model slots (none for a user label: its images are not ranked by the model)
    color: Color
    relpaths: tuple[str, ...]  # images whose index says a member is present, in folder order
    max_crops: int
    thumb: int = THUMB_SIZE
    values: tuple[int, ...] = ()  # label values to crop (default: the members' slot + 1)

    @property
    def label_values(self) -> list[int]:
        return list(self.values) if self.values else [m + 1 for m in self.members]


class CropWorker(QThread):
    """Computes one part's tiles from its own read-only copy of the saved project."""

    #: (job id, relpath, tile — a null QImage when the image could not be read —, caption)
    tileReady = Signal(int, str, QImage, str)

    def __init__(self, request: CropRequest) -> None:
        super().__init__()
        self.request = request
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self) -> None:
        req = self.request
        try:
            project = AnnotationProject.open(req.project_dir, write=False)
        except MPAEError as exc:
            logger.warning("Gallery cannot open the project %s: %s", req.project_dir, exc)
            return
        for relpath in self._ranked(project):
            if self.cancelled:
                return
            try:
                tile = self._tile(project, relpath)
            except (MPAEError, OSError, ValueError, KeyError) as exc:  # ImageLoadError is an MPAEError
                logger.warning("Gallery skips %s: %s", relpath, exc)
                self.tileReady.emit(req.job, relpath, QImage(), f"{_short_name(relpath)}\ncannot read")
                continue
            if tile is not None and not self.cancelled:
                self.tileReady.emit(req.job, relpath, *tile)

    def _ranked(self, project: AnnotationProject) -> list[str]:
        """Up to max_crops images, largest/most confident part first (ranking reads predictions: only a pool)."""
        req = self.request
        pool = list(req.relpaths)
        limit = max(1, req.max_crops) * RANK_POOL
        if len(pool) > limit:  # evenly spread over the folder, so the pool is not just its first files
            pool = [pool[int(i)] for i in np.linspace(0, len(pool) - 1, limit)]
        members = list(req.members)
        scores: dict[str, float] = {}
        for relpath in pool:
            if self.cancelled:
                return []
            try:
                prediction = project.prediction(relpath)
            except (MPAEError, OSError, ValueError, KeyError) as exc:
                logger.debug("Gallery cannot rank %s: %s", relpath, exc)
                prediction = None
            if prediction is None or not members:
                scores[relpath] = 0.0
                continue
            area = np.asarray(prediction.area)[members]
            conf = np.asarray(prediction.part_confidence)[members]
            scores[relpath] = float((area * (0.5 + conf)).sum())
        order = sorted(pool, key=lambda r: -scores[r])  # stable: ties keep folder order
        return order[: req.max_crops]

    def _tile(self, project: AnnotationProject, relpath: str) -> tuple[QImage, str] | None:
        req = self.request
        record = project.record(relpath)
        prediction = project.prediction(relpath)
        if record.has_edits or prediction is None or not req.members:
            labels = project.label_map(relpath)  # edits are stored at full size
        else:
            height, width = prediction.image_size
            scale = min(1.0, WORKING_SIDE / max(height, width))
            labels = prediction.label_map((max(1, round(height * scale)), max(1, round(width * scale))))
        image = load_image(project.image_path(relpath))
        result = crop_part(image, labels, list(req.members), req.color, req.thumb, values=req.label_values)
        if result is None:
            logger.debug("Gallery: %s has no pixels of label values %s at full size", relpath, req.label_values)
            return None
        rgb, area = result
        return _to_qimage(rgb), f"{_short_name(relpath)}\n{100 * area:.1f} %"


_RUNNING: set[CropWorker] = set()  # workers outlive a closed gallery until their loop notices the cancel


def _square_tile(image: QImage, size: int) -> QPixmap:
    """The crop centred on a transparent square, so tiles of any aspect line up in the grid."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.drawImage((size - image.width()) // 2, (size - image.height()) // 2, image)
    painter.end()
    return pixmap


def _error_tile(size: int) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(90, 90, 90))
    painter = QPainter(pixmap)
    icon("error", "#f0f0f0").paint(painter, size // 4, size // 4, size // 2, size // 2)
    painter.end()
    return pixmap


class PartGallery(QWidget):
    """A grid of one part's crops; click a tile to open that image."""

    imageActivated = Signal(str)
    #: The current job sent all its tiles (or was empty).
    loadFinished = Signal()

    def __init__(self, parent: QWidget | None = None, thumb: int = THUMB_SIZE) -> None:
        super().__init__(parent)
        self._thumb = thumb
        self._job = 0
        self._worker: CropWorker | None = None
        self._expected = 0
        self.title_label = QLabel("No part selected", self)
        font = self.title_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.title_label.setFont(font)
        self.status_label = QLabel(self)
        self.status_label.setStyleSheet("color: gray;")
        self.grid = QListWidget(self)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setIconSize(QSize(thumb, thumb))
        self.grid.setGridSize(QSize(thumb + 24, thumb + 52))
        self.grid.setUniformItemSizes(True)
        self.grid.setWordWrap(True)
        self.grid.setSpacing(4)
        self.grid.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.grid.itemClicked.connect(self._activated)
        self.grid.itemActivated.connect(self._activated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self.title_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.grid, 1)

    # ----- public API ---------------------------------------------------------------------------------------------
    def show_part(self, project: AnnotationProject | None, slot: int, max_crops: int = 48) -> None:
        """Show crops of ``slot``'s group (merged slots included), replacing whatever was shown."""
        parts = None if project is None else project.parts
        if project is None or parts is None or not 0 <= slot < parts.num_parts:
            self._show_nothing()
            return
        members = tuple(parts.members(slot))
        wanted = set(members)
        relpaths = tuple(r.relpath for r in project.records()
                         if (r.has_prediction or r.has_edits) and wanted & set(r.present))
        title = f"{part_number(parts.root(slot))} {parts.display_name(slot)}"
        self._start(project, title, CropRequest(0, Path(project.project_dir), members, parts.display_color(slot),
                                                relpaths, max_crops, self._thumb))

    def show_user_label(self, project: AnnotationProject | None, value: int, max_crops: int = 48) -> None:
        """Show crops of one of the person's own labels (images painted with it)."""
        parts = None if project is None else project.parts
        if project is None or parts is None or not parts.has_value(value) or value < USER_LABEL_BASE:
            self._show_nothing()
            return
        label = parts.user_label(value)
        relpaths = tuple(r.relpath for r in project.records() if value in r.user_present)
        title = f"{label_number(value)} {label.name}"
        self._start(project, title, CropRequest(0, Path(project.project_dir), (), label.color, relpaths, max_crops,
                                                self._thumb, values=(value,)))

    def _show_nothing(self) -> None:
        self.cancel()
        self.grid.clear()
        self.title_label.setText("No part selected")
        self.status_label.setText("")
        self.loadFinished.emit()

    def _start(self, project: AnnotationProject, title: str, request: CropRequest) -> None:
        """Crop the request's images on a worker (its job id is set here), replacing whatever was shown."""
        self.cancel()
        self.grid.clear()
        relpaths, max_crops = request.relpaths, request.max_crops
        self.title_label.setText(f"{title} · {len(relpaths)} image{'' if len(relpaths) == 1 else 's'}")
        self._expected = min(len(relpaths), max(0, max_crops))
        if not self._expected:
            self.status_label.setText("No image shows this part yet." if not relpaths else "")
            self.loadFinished.emit()
            return
        try:
            project.save()  # the worker reads the saved copy; unsaved edits would otherwise be missing
        except (MPAEError, OSError) as exc:
            logger.warning("Gallery could not save the project first; crops may miss recent edits: %s", exc)
        self._job += 1
        request = dataclasses.replace(request, job=self._job, max_crops=self._expected)
        worker = CropWorker(request)
        worker.tileReady.connect(self._add_tile)
        worker.finished.connect(self._worker_finished)
        for done in [w for w in _RUNNING if w.isFinished()]:  # workers of galleries that were closed meanwhile
            _RUNNING.discard(done)
        _RUNNING.add(worker)
        self._worker = worker
        self._set_status()
        worker.start(QThread.Priority.LowPriority)

    def clear(self) -> None:
        """Show nothing (another folder was opened, or none is): stops the current job."""
        self.show_part(None, -1)

    def cancel(self) -> None:
        """Stop the current job (its remaining tiles are dropped)."""
        self._job += 1
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None

    def is_busy(self) -> bool:
        return self._worker is not None

    def tile_relpaths(self) -> list[str]:
        return [self.grid.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.grid.count())]

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cancel()
        super().closeEvent(event)

    # ----- internals ----------------------------------------------------------------------------------------------
    def _add_tile(self, job: int, relpath: str, image: QImage, caption: str) -> None:
        if job != self._job:
            return
        item = QListWidgetItem(caption)
        item.setData(Qt.ItemDataRole.UserRole, relpath)
        item.setToolTip(relpath)
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        item.setIcon(QIcon(_error_tile(self._thumb) if image.isNull() else _square_tile(image, self._thumb)))
        self.grid.addItem(item)
        self._set_status()

    def _worker_finished(self) -> None:
        worker = self.sender()
        if not isinstance(worker, CropWorker):
            return
        worker.wait()  # finished is emitted just before the thread ends; let it end before the wrapper goes
        _RUNNING.discard(worker)
        if worker is self._worker:
            self._worker = None
            self._set_status()
            self.loadFinished.emit()

    def _set_status(self) -> None:
        shown = self.grid.count()
        if self._worker is not None:
            self.status_label.setText(f"Loading crops… {shown} of {self._expected}")
        else:
            self.status_label.setText(f"Showing {shown} crop{'' if shown == 1 else 's'}; click one to open its "
                                      "image.")

    def _activated(self, item: QListWidgetItem) -> None:
        relpath = item.data(Qt.ItemDataRole.UserRole)
        if relpath:
            self.imageActivated.emit(relpath)


class PartGalleryDialog(QDialog):
    """The gallery in its own non-modal window (the window may also put a PartGallery in a dock)."""

    imageActivated = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Part gallery")
        self.setModal(False)
        self.gallery = PartGallery(self)
        self.gallery.imageActivated.connect(self.imageActivated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.gallery)
        self.resize(720, 520)

    def show_part(self, project: AnnotationProject | None, slot: int, max_crops: int = 48) -> None:
        self.gallery.show_part(project, slot, max_crops)
        if project is not None and project.parts is not None and 0 <= slot < project.parts.num_parts:
            self.setWindowTitle(f"Part gallery: {project.parts.display_name(slot)}")
        self.show()
        self.raise_()

    def done(self, result: int) -> None:
        self.gallery.cancel()
        super().done(result)

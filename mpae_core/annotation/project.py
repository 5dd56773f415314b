"""An annotation project: an image folder, the checkpoint used, the part table and every image's state.

On disk (``<images>/.mpae/`` by default, or a chosen folder)::

    project.json                  index: format + version, folders, part table, one small record per image
    predictions/<relpath>.npz     the model's logits (float16, Q×h×w) and per-part summary of one image
    edits/<relpath>.png           16-bit override layer, only for images a person edited

Every file is written atomically. Only the index is held in memory; predictions and edit layers are read when an
image is shown or exported and kept in small LRU caches, so a folder of 10,000 photos costs a few megabytes.
Label maps are always rebuilt from the *stored* float16 logits (``set_prediction`` rounds them at once), so what
the app shows before and after re-opening, and what it exports, are the same pixels.

Not thread-safe: workers hand their predictions to the thread that owns the project.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import MPAEError
from ..images import list_images
from ..inference import PartPrediction
from .edits import EditLayer
from .parts import PartTable
from .storage import atomic_write_json, read_npz, read_uint16_png, write_npz, write_uint16_png

logger = logging.getLogger(__name__)

PROJECT_FORMAT = "mpae-annotator-project"
PROJECT_VERSION = 1
PROJECT_DIRNAME = ".mpae"
INDEX_NAME = "project.json"

#: Upgrades of older index versions: MIGRATIONS[v] turns a version-v index dict into a version v + 1 one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ImageStatus(str, Enum):
    NEW = "new"
    PREDICTED = "predicted"
    EDITED = "edited"
    REVIEWED = "reviewed"
    ERROR = "error"


#: Statuses whose label maps the exports include by default.
EXPORTABLE = (ImageStatus.PREDICTED, ImageStatus.EDITED, ImageStatus.REVIEWED)


@dataclass
class ImageRecord:
    """What the file list needs about one image, without touching its prediction or edits on disk."""

    relpath: str
    status: ImageStatus = ImageStatus.NEW
    error: str | None = None
    size: tuple[int, int] | None = None  # (height, width), EXIF orientation applied
    confidence: float | None = None
    has_prediction: bool = False
    has_edits: bool = False
    present: tuple[int, ...] = ()  # model slots the prediction shows (the parts panel counts images per part)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.relpath, "status": self.status.value}
        if self.error is not None:
            data["error"] = self.error
        if self.size is not None:
            data["size"] = list(self.size)
        if self.confidence is not None:
            data["confidence"] = round(self.confidence, 6)
        data["prediction"] = self.has_prediction
        data["edits"] = self.has_edits
        if self.present:
            data["present"] = list(self.present)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageRecord":
        size = data.get("size")
        return cls(
            relpath=normalize_relpath(data["path"]),
            status=ImageStatus(data.get("status", "new")),
            error=data.get("error"),
            size=None if size is None else (int(size[0]), int(size[1])),
            confidence=None if data.get("confidence") is None else float(data["confidence"]),
            has_prediction=bool(data.get("prediction", False)),
            has_edits=bool(data.get("edits", False)),
            present=tuple(int(slot) for slot in data.get("present", ())),
        )


def normalize_relpath(relpath: str | os.PathLike) -> str:
    """An image's path relative to the image folder, with '/' separators; anything leaving the folder is refused."""
    text = os.fspath(relpath)
    if os.sep == "\\":
        text = text.replace("\\", "/")
    path = PurePosixPath(text)
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or path.is_absolute() or ".." in parts or (os.sep == "\\" and PureWindowsPath(text).drive):
        raise ValueError(f"'{os.fspath(relpath)}' is not a path inside the image folder; give it relative to the "
                         "folder.")
    return "/".join(parts)


def find_project_dir(path: str | os.PathLike) -> Path | None:
    """The project folder for ``path`` (an image folder, a project folder or its project.json), or None."""
    p = Path(path)
    for candidate in (p.parent if p.name == INDEX_NAME else p, p / PROJECT_DIRNAME):
        if (candidate / INDEX_NAME).is_file():
            return candidate
    return None


class AnnotationProject:
    """The Qt-free annotation store that the app and the batch CLI share; create with ``create`` or ``open``."""

    def __init__(self, project_dir: Path, images_folder: Path, *, checkpoint: Path | None = None,
                 parts: PartTable | None = None, records: Iterable[ImageRecord] = (), recursive: bool = False,
                 edit_cache_size: int = 8, prediction_cache_size: int = 128) -> None:
        self.project_dir = Path(project_dir)
        self.images_folder = Path(images_folder)
        self.checkpoint = checkpoint
        self.recursive = recursive
        self._parts = parts
        self._records: dict[str, ImageRecord] = {r.relpath: r for r in records}
        self._edit_cache: OrderedDict[str, EditLayer] = OrderedDict()
        self._saved_versions: dict[int, int] = {}  # id(layer) → version on disk
        self._prediction_cache: OrderedDict[str, PartPrediction] = OrderedDict()
        self.edit_cache_size = max(1, edit_cache_size)
        self.prediction_cache_size = max(1, prediction_cache_size)
        self._dirty = True
        self._saved_parts: dict[str, Any] | None = None

    # ----- create / open / save -------------------------------------------------------------------------------
    @classmethod
    def create(cls, images_folder: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
               parts: PartTable | None = None, project_dir: str | os.PathLike | None = None,
               recursive: bool = False, scan: bool = True, **cache_sizes: int) -> "AnnotationProject":
        """Start a project for ``images_folder`` (saved in ``<folder>/.mpae`` unless ``project_dir`` is given).

        ``parts`` may be left out: the first prediction then sets a default table with its number of slots.
        """
        folder = Path(images_folder)
        if not folder.is_dir():
            raise MPAEError(f"Cannot create a project: the image folder '{folder}' does not exist; check the path.")
        target = Path(project_dir) if project_dir is not None else folder / PROJECT_DIRNAME
        if (target / INDEX_NAME).exists():
            raise MPAEError(f"'{target}' already holds an MPAE project; open it instead of creating a new one.")
        project = cls(target, folder, checkpoint=None if checkpoint is None else Path(checkpoint), parts=parts,
                      recursive=recursive, **cache_sizes)
        if scan:
            project.scan()
        project.save()
        return project

    @classmethod
    def open(cls, path: str | os.PathLike, **cache_sizes: int) -> "AnnotationProject":
        """Open the project of an image folder, a project folder or a project.json; newer formats are refused."""
        project_dir = find_project_dir(path)
        if project_dir is None:
            raise MPAEError(f"There is no MPAE project in '{path}' (no {PROJECT_DIRNAME}/{INDEX_NAME}); create one "
                            "first.")
        index_path = project_dir / INDEX_NAME
        try:
            data = json.loads(index_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("the top level is not a JSON object")
        except (OSError, ValueError) as exc:
            raise MPAEError(f"Cannot open the project '{index_path}': it is not readable JSON ({exc}); restore it "
                            "from a backup or create the project again.") from exc
        data = _upgrade(data, index_path)
        try:
            images = Path(data["images_folder"])
            if not images.is_absolute():
                images = project_dir / images
            checkpoint = data.get("checkpoint")
            if checkpoint is not None:
                checkpoint = Path(checkpoint) if Path(checkpoint).is_absolute() else project_dir / checkpoint
            parts = None if data.get("parts") is None else PartTable.from_dict(data["parts"])
            records = [ImageRecord.from_dict(r) for r in data.get("images", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise MPAEError(f"Cannot open the project '{index_path}': its index is damaged ({exc}); restore it from "
                            "a backup or create the project again.") from exc
        project = cls(project_dir, Path(os.path.normpath(images)),
                      checkpoint=None if checkpoint is None else Path(os.path.normpath(checkpoint)), parts=parts,
                      records=records, recursive=bool(data.get("recursive", False)), **cache_sizes)
        project._dirty = False
        project._saved_parts = None if parts is None else parts.to_dict()
        return project

    @property
    def index_path(self) -> Path:
        return self.project_dir / INDEX_NAME

    def save(self) -> None:
        """Write unsaved edit layers, then the index; every file atomically, untouched files are not rewritten."""
        for relpath, layer in list(self._edit_cache.items()):
            self._save_layer(relpath, layer)
        parts = None if self._parts is None else self._parts.to_dict()
        if not self._dirty and parts == self._saved_parts and self.index_path.exists():
            return
        atomic_write_json(self.index_path, {
            "format": PROJECT_FORMAT,
            "format_version": PROJECT_VERSION,
            "images_folder": self._portable(self.images_folder),
            "checkpoint": None if self.checkpoint is None else self._portable(self.checkpoint),
            "recursive": self.recursive,
            "parts": parts,
            "images": [r.to_dict() for r in self._records.values()],
        })
        self._dirty = False
        self._saved_parts = parts

    def set_checkpoint(self, checkpoint: str | os.PathLike | None) -> None:
        """Record the checkpoint that predicts this project (re-opening the project offers it again)."""
        new = None if checkpoint is None else Path(checkpoint)
        if new != self.checkpoint:
            self.checkpoint = new
            self._dirty = True

    # ----- images -----------------------------------------------------------------------------------------------
    def scan(self, recursive: bool | None = None) -> list[str]:
        """Add the folder's images that the project does not know yet (as 'new'); returns their paths."""
        if recursive is not None:
            self.recursive = recursive
        added = []
        try:  # never annotate our own output when the project folder sits in the image folder without a dot
            own = Path(os.path.abspath(self.project_dir)).relative_to(os.path.abspath(self.images_folder)).as_posix()
        except ValueError:
            own = None
        for path in list_images(self.images_folder, recursive=self.recursive):
            relpath = normalize_relpath(path.relative_to(self.images_folder).as_posix())
            if own is not None and relpath.startswith(own + "/"):
                continue
            if relpath not in self._records:
                self._records[relpath] = ImageRecord(relpath)
                added.append(relpath)
        if added:
            self._dirty = True
        return added

    def add_image(self, relpath: str | os.PathLike, size: tuple[int, int] | None = None) -> ImageRecord:
        """Register one image (the batch CLI adds what it predicts); a known image keeps its state."""
        relpath = normalize_relpath(relpath)
        record = self._records.get(relpath)
        if record is None:
            record = self._records[relpath] = ImageRecord(relpath)
            self._dirty = True
        if size is not None and record.size != tuple(size):
            record.size = (int(size[0]), int(size[1]))
            self._dirty = True
        return dataclasses.replace(record)

    def relpaths(self) -> list[str]:
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, relpath: object) -> bool:
        try:
            return normalize_relpath(relpath) in self._records  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def record(self, relpath: str | os.PathLike) -> ImageRecord:
        """A copy of one image's record (change state through the project's methods)."""
        return dataclasses.replace(self._record(relpath))

    def records(self) -> Iterator[ImageRecord]:
        for record in self._records.values():
            yield dataclasses.replace(record)

    def status_counts(self) -> dict[ImageStatus, int]:
        counts = {status: 0 for status in ImageStatus}
        for record in self._records.values():
            counts[record.status] += 1
        return counts

    def part_image_counts(self) -> np.ndarray:
        """[K] number of predicted images in which each model slot appears (from the index, no file reads)."""
        counts = np.zeros(0 if self._parts is None else self._parts.num_parts, dtype=np.int64)
        for record in self._records.values():
            if record.has_prediction and record.present:
                slots = [s for s in record.present if s < len(counts)]
                np.add.at(counts, slots, 1)
        return counts

    def image_path(self, relpath: str | os.PathLike) -> Path:
        return self.images_folder / self._record(relpath).relpath

    # ----- part table -------------------------------------------------------------------------------------------
    @property
    def parts(self) -> PartTable | None:
        """The live part table: change it with its methods (rename, merge, ...); every image follows at once."""
        return self._parts

    def set_parts(self, parts: PartTable) -> None:
        """Replace the whole table (e.g. to undo a table change from a saved copy); the slot count must match."""
        if self._parts is not None and parts.num_parts != self._parts.num_parts:
            raise ValueError(f"The new part table has {parts.num_parts} slots but this project's predictions have "
                             f"{self._parts.num_parts}.")
        self._parts = parts

    # ----- predictions ------------------------------------------------------------------------------------------
    def set_prediction(self, relpath: str | os.PathLike, prediction: PartPrediction) -> None:
        """Store the model's answer for an image (written at once); edits are kept, 'reviewed' is cleared."""
        relpath = normalize_relpath(relpath)
        record = self._records.get(relpath) or ImageRecord(relpath)
        if self._parts is None:
            self._parts = PartTable.default(prediction.num_parts)
        elif prediction.num_parts != self._parts.num_parts:
            raise MPAEError(f"The prediction for '{relpath}' has {prediction.num_parts} part slots but the project "
                            f"'{self.project_dir}' has {self._parts.num_parts}; use the project's checkpoint or start "
                            "a new project.")
        size = (int(prediction.image_size[0]), int(prediction.image_size[1]))
        if record.has_edits and record.size is not None and record.size != size:
            raise MPAEError(f"'{relpath}' is now {size[1]}×{size[0]} but its edits are {record.size[1]}×"
                            f"{record.size[0]}; clear its edits before predicting it again.")
        logits16 = prediction.logits.detach().cpu().to(torch.float16)
        write_npz(self._prediction_file(relpath), logits=logits16.numpy(), image_size=np.asarray(size, np.int64),
                  presence=np.asarray(prediction.presence, bool),
                  area=np.asarray(prediction.area, np.float32),
                  part_confidence=np.asarray(prediction.part_confidence, np.float32),
                  confidence=np.asarray(prediction.confidence, np.float64))
        stored = dataclasses.replace(prediction, logits=logits16.float(), image_size=size)
        self._cache_prediction(relpath, stored)
        record.size, record.confidence, record.error = size, float(prediction.confidence), None
        record.has_prediction = True
        record.present = tuple(int(slot) for slot in np.flatnonzero(np.asarray(prediction.presence, bool)))
        record.status = ImageStatus.EDITED if record.has_edits else ImageStatus.PREDICTED
        self._records[relpath] = record
        self._dirty = True

    def prediction(self, relpath: str | os.PathLike) -> PartPrediction | None:
        """The stored prediction (float16-rounded logits as float32), or None when the image has none."""
        record = self._record(relpath)
        cached = self._prediction_cache.get(record.relpath)
        if cached is not None:
            self._prediction_cache.move_to_end(record.relpath)
            return cached
        if not record.has_prediction:
            return None
        path = self._prediction_file(record.relpath)
        if not path.is_file():
            raise MPAEError(f"The prediction file '{path}' of '{record.relpath}' is missing; predict that image again.")
        data = read_npz(path)
        try:
            prediction = PartPrediction(
                logits=torch.from_numpy(data["logits"].astype(np.float32)),
                image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
                presence=data["presence"].astype(bool), area=data["area"].astype(np.float64),
                part_confidence=data["part_confidence"].astype(np.float64), confidence=float(data["confidence"]),
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise MPAEError(f"The prediction file '{path}' is damaged ({exc}); predict that image again.") from exc
        self._cache_prediction(record.relpath, prediction)
        return prediction

    def set_error(self, relpath: str | os.PathLike, message: str) -> None:
        """Record why an image could not be predicted (shown in the list; a batch goes on)."""
        relpath = normalize_relpath(relpath)
        record = self._records.setdefault(relpath, ImageRecord(relpath))
        record.status, record.error = ImageStatus.ERROR, str(message)
        self._dirty = True

    def mark_reviewed(self, relpath: str | os.PathLike, reviewed: bool = True) -> None:
        """A person checked this image; editing it again makes it 'edited'."""
        record = self._record(relpath)
        if reviewed:
            if not (record.has_prediction or record.has_edits):
                raise ValueError(f"'{record.relpath}' has no prediction or edits to review yet.")
            record.status = ImageStatus.REVIEWED
        elif record.status is ImageStatus.REVIEWED:
            record.status = ImageStatus.EDITED if record.has_edits else ImageStatus.PREDICTED
        self._dirty = True

    # ----- edits ------------------------------------------------------------------------------------------------
    def edits(self, relpath: str | os.PathLike) -> EditLayer:
        """The image's edit layer (loaded or created); the project follows its changes and saves it on ``save``."""
        record = self._record(relpath)
        layer = self._edit_cache.get(record.relpath)
        if layer is not None:
            self._edit_cache.move_to_end(record.relpath)
            return layer
        layer = self._load_layer(record)
        self._saved_versions[id(layer)] = layer.version
        layer.on_change = lambda changed, rel=record.relpath: self._layer_changed(rel, changed)
        self._cache_layer(record.relpath, layer)
        return layer

    def clear_edits(self, relpath: str | os.PathLike) -> None:
        """Drop every edit of the image (undoable on its layer until saved)."""
        record = self._record(relpath)
        if record.has_edits or record.relpath in self._edit_cache:
            self.edits(record.relpath).clear()

    def label_map(self, relpath: str | os.PathLike) -> np.ndarray:
        """The final [H, W] uint16 label values at the image's own size: prediction, then the person's edits."""
        record = self._record(relpath)
        prediction = self.prediction(record.relpath)
        if prediction is not None:
            base = prediction.label_map()
        elif record.has_edits and record.size is not None:
            base = np.zeros(record.size, dtype=np.uint8)
        else:
            raise MPAEError(f"'{record.relpath}' has no prediction yet; predict it before using its label map.")
        layer = self._edit_cache.get(record.relpath)
        if layer is None and record.has_edits:
            layer = self._load_layer(record)  # read for this call only, not cached: exports walk every image
        return base.astype(np.uint16) if layer is None else layer.composed(base)

    def iter_label_maps(self, statuses: Iterable[ImageStatus] = EXPORTABLE) -> Iterator[tuple[str, np.ndarray]]:
        """(relpath, label map) for every image with one of ``statuses``, one at a time (what exports consume)."""
        wanted = {ImageStatus(s) for s in statuses}
        for record in list(self._records.values()):
            if record.status in wanted and (record.has_prediction or record.has_edits):
                yield record.relpath, self.label_map(record.relpath)

    # ----- internals --------------------------------------------------------------------------------------------
    def _record(self, relpath: str | os.PathLike) -> ImageRecord:
        key = normalize_relpath(relpath)
        try:
            return self._records[key]
        except KeyError:
            raise KeyError(f"'{key}' is not an image of the project '{self.project_dir}'.") from None

    def _prediction_file(self, relpath: str) -> Path:
        return self.project_dir / "predictions" / f"{relpath}.npz"

    def _edit_file(self, relpath: str) -> Path:
        return self.project_dir / "edits" / f"{relpath}.png"

    def _cache_prediction(self, relpath: str, prediction: PartPrediction) -> None:
        self._prediction_cache[relpath] = prediction
        self._prediction_cache.move_to_end(relpath)
        while len(self._prediction_cache) > self.prediction_cache_size:
            self._prediction_cache.popitem(last=False)

    def _load_layer(self, record: ImageRecord) -> EditLayer:
        if record.size is None:
            raise MPAEError(f"'{record.relpath}' has no known size yet; predict it before editing.")
        num_parts = None if self._parts is None else self._parts.num_parts
        path = self._edit_file(record.relpath)
        if not path.is_file():
            if record.has_edits:
                logger.warning("The edits of %s are missing (%s); starting from the prediction", record.relpath, path)
            return EditLayer(record.size, num_parts=num_parts)
        data = read_uint16_png(path)
        try:
            return EditLayer(record.size, data, num_parts=num_parts)
        except ValueError as exc:
            raise MPAEError(f"The edit layer '{path}' does not fit '{record.relpath}': {exc} Delete it to drop that "
                            "image's edits.") from exc

    def _cache_layer(self, relpath: str, layer: EditLayer) -> None:
        self._edit_cache[relpath] = layer
        self._edit_cache.move_to_end(relpath)
        while len(self._edit_cache) > self.edit_cache_size:
            old_relpath, old = self._edit_cache.popitem(last=False)
            self._save_layer(old_relpath, old)  # its undo history goes with it
            self._saved_versions.pop(id(old), None)  # a view still holding it re-enters the cache on its next change

    def _layer_changed(self, relpath: str, layer: EditLayer) -> None:
        cached = self._edit_cache.get(relpath)
        if cached is not layer:
            if cached is not None:
                logger.warning("Two edit layers of %s were changed; keeping the one changed last", relpath)
                self._saved_versions.pop(id(cached), None)
            self._cache_layer(relpath, layer)
        record = self._records[relpath]
        record.has_edits = layer.has_edits
        if layer.has_edits:
            record.status = ImageStatus.EDITED
        elif record.status in (ImageStatus.EDITED, ImageStatus.REVIEWED):
            record.status = ImageStatus.PREDICTED if record.has_prediction else ImageStatus.NEW
        self._dirty = True

    def _save_layer(self, relpath: str, layer: EditLayer) -> None:
        if self._saved_versions.get(id(layer)) == layer.version:
            return
        path = self._edit_file(relpath)
        if layer.has_edits:
            write_uint16_png(path, layer.data)
        elif path.exists():
            path.unlink()
        self._saved_versions[id(layer)] = layer.version

    def _portable(self, path: Path) -> str:
        """Relative to the project folder when both live in the image folder (so the folder can move), else absolute."""
        absolute = Path(os.path.abspath(path))
        folder = Path(os.path.abspath(self.images_folder))
        project = Path(os.path.abspath(self.project_dir))
        movable = folder in project.parents and (absolute == folder or folder in absolute.parents)
        return Path(os.path.relpath(absolute, project)).as_posix() if movable else str(absolute)


def _upgrade(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check the format and bring an older index up to the current version, or say why it cannot be."""
    if data.get("format") != PROJECT_FORMAT:
        raise MPAEError(f"'{path}' is not an MPAE Annotator project index (format {data.get('format')!r}); choose "
                        "the folder of a project made by this app.")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MPAEError(f"'{path}' has no valid format version ({version!r}); restore it from a backup.")
    if version > PROJECT_VERSION:
        raise MPAEError(f"'{path}' was written by a newer MPAE Annotator (project format {version}, this version "
                        f"reads up to {PROJECT_VERSION}); update the app to open it.")
    while version < PROJECT_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise MPAEError(f"'{path}' uses project format {version}, which this version cannot upgrade (it reads "
                            f"formats {min([PROJECT_VERSION, *MIGRATIONS])}..{PROJECT_VERSION}); create the project "
                            "again.")
        data = migrate(data)
        version += 1
        data["format_version"] = version
        logger.info("Upgraded %s to project format %d", path, version)
    return data

"""An annotation project: an image folder, the checkpoint used, the part table and every image's state.

On disk (``<images>/.mpae/`` by default, or a chosen folder)::

    project.json                  index: format + version, folders, part table, one small record per image
    predictions/<relpath>.npz     the model's logits (float16, Q×h×w) and per-part summary of one image
    edits/<relpath>.png           16-bit override layer, only for images a person edited
    models/                       refined checkpoints of this project (``python -m training.run refine``)
    lock                          held by the one process that may write (see :mod:`.lock`)

Every file is written atomically. Only the index is held in memory; predictions and edit layers are read when an
image is shown or exported and kept in small LRU caches, so a folder of 10,000 photos costs a few megabytes.
Label maps are always rebuilt from the *stored* float16 logits (``set_prediction`` rounds them at once), so what
the app shows before and after re-opening, and what it exports, are the same pixels.

A person's work is never downgraded by a machine: a prediction keeps an image's edits and review, a failure is
recorded beside earlier work instead of replacing it, and prediction or edit files that a crash wrote without the
index are adopted when the project is opened again. Annotations made elsewhere come in through :mod:`.importers` as
edit layers (the person's layer), so a later prediction never replaces them either.

Not thread-safe: workers hand their predictions to the thread that owns the project; :meth:`save_jobs` lets that
thread hand the slow writing to another one.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..errors import MPAEError
from ..images import list_images
from ..inference import PartPrediction
from .edits import EditLayer
from .lock import ProjectLock
from .parts import PartTable
from .project_edits import ProjectEditsMixin, SaveJob
from .project_recovery import ProjectRecoveryMixin, read_prediction_file, write_prediction_file
from .project_format import (INDEX_NAME, MIGRATIONS, PROJECT_DIRNAME, PROJECT_FORMAT, PROJECT_VERSION,
                             find_project_dir, upgrade)
from .records import EXPORTABLE, FileStamp, FileState, ImageRecord, ImageStatus, file_stamp, normalize_relpath
from .storage import atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["AnnotationProject", "ImageRecord", "ImageStatus", "FileState", "ModelFit", "EXPORTABLE",
           "PROJECT_DIRNAME", "PROJECT_FORMAT", "PROJECT_VERSION", "INDEX_NAME", "MIGRATIONS", "find_project_dir",
           "normalize_relpath"]


class ModelFit(str, Enum):
    """How a model relates to the project's part table (see :meth:`AnnotationProject.model_fit`)."""

    NO_TABLE = "no_table"  # the project has no part table yet: the model will set it
    FITS = "fits"  # the model that named the table, or one refined from it
    UNKNOWN = "unknown"  # same number of slots, but another model: names and merges may not fit its slots
    WRONG_SIZE = "wrong_size"  # another number of slots: its predictions cannot be stored here


class AnnotationProject(ProjectEditsMixin, ProjectRecoveryMixin):
    """The Qt-free annotation store that the app and the batch CLI share; create with ``create`` or ``open``."""

    def __init__(self, project_dir: Path, images_folder: Path, *, checkpoint: Path | None = None,
                 parts: PartTable | None = None, records: Iterable[ImageRecord] = (), recursive: bool = False,
                 model_family: Sequence[str] = (), edit_cache_size: int = 8,
                 prediction_cache_size: int = 128) -> None:
        self.project_dir = Path(project_dir)
        self.images_folder = Path(images_folder)
        self.checkpoint = checkpoint
        self.recursive = recursive
        #: Fingerprints of the models whose slots the part table names (the first one, and its refinements).
        self.model_family: list[str] = list(model_family)
        self._parts = parts
        self._records: dict[str, ImageRecord] = {r.relpath: r for r in records}
        self._edit_cache: OrderedDict[str, EditLayer] = OrderedDict()
        self._saved_versions: dict[int, int] = {}  # id(layer) → version on disk
        self._prediction_cache: OrderedDict[str, PartPrediction] = OrderedDict()
        self.edit_cache_size = max(1, edit_cache_size)
        self.prediction_cache_size = max(1, prediction_cache_size)
        self._dirty = True
        self._saved_parts: dict[str, Any] | None = None
        self._present_stale: set[str] = set()  # edited images whose present parts are to be found again
        self._record_dicts: dict[str, dict[str, Any]] = {}  # relpath → its index entry as last written (see _touch)
        self._write_lock = threading.Lock()  # orders the writes of one file made on two threads (see _commit)
        self._write_seq = itertools.count()
        self._written_seq: dict[Path, int] = {}
        self._layer_seqs: dict[str, int] = {}  # relpath → the last write of its edit layer handed out
        #: Layers that left the cache while their file was still being written: until it lands they are the truth.
        self._leaving: dict[str, EditLayer] = {}
        self._lock = ProjectLock(self.project_dir)
        #: Why this project cannot be written (another process holds it), or None when it can.
        self.read_only: str | None = None

    # ----- create / open / save / close --------------------------------------------------------------------------
    @classmethod
    def create(cls, images_folder: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
               parts: PartTable | None = None, project_dir: str | os.PathLike | None = None,
               recursive: bool = False, scan: bool = True, **cache_sizes: int) -> "AnnotationProject":
        """Start a project for ``images_folder`` (saved in ``<folder>/.mpae`` unless ``project_dir`` is given).

        ``parts`` may be left out: the first prediction then sets a default table with its number of slots. A
        table without slots (``PartTable.empty()``, what an import into a project without a model makes) takes the
        first model's slots the same way and keeps its user labels.
        """
        folder = Path(images_folder)
        if not folder.is_dir():
            raise MPAEError(f"Cannot create a project: the image folder '{folder}' does not exist; check the path.")
        target = Path(project_dir) if project_dir is not None else folder / PROJECT_DIRNAME
        if (target / INDEX_NAME).exists():
            raise MPAEError(f"'{target}' already holds an MPAE project; open it instead of creating a new one.")
        project = cls(target, folder, checkpoint=None if checkpoint is None else Path(checkpoint), parts=parts,
                      recursive=recursive, **cache_sizes)
        if not project._lock.acquire():
            raise MPAEError(f"Cannot create a project in '{target}': {project._lock.describe_holder()} is creating "
                            "one there; open it once that is done.")
        if scan:
            project.scan()
        project.save()
        return project

    @classmethod
    def open(cls, path: str | os.PathLike, *, write: bool = True, **cache_sizes: int) -> "AnnotationProject":
        """Open the project of an image folder, a project folder or a project.json; newer formats are refused.

        With ``write`` the project takes the folder's write lock; when another window or process holds it, the
        project opens read-only and :attr:`read_only` says why. ``write=False`` (a reader such as the refinement)
        never takes the lock.
        """
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
        upgraded = data.get("format_version") != PROJECT_VERSION
        data = upgrade(data, index_path)
        try:
            images = Path(data["images_folder"])
            if not images.is_absolute():
                images = project_dir / images
            checkpoint = data.get("checkpoint")
            if checkpoint is not None:
                checkpoint = Path(checkpoint) if Path(checkpoint).is_absolute() else project_dir / checkpoint
            parts = None if data.get("parts") is None else PartTable.from_dict(data["parts"])
            records = [ImageRecord.from_dict(r) for r in data.get("images", [])]
            family = [str(f) for f in data.get("model_family", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise MPAEError(f"Cannot open the project '{index_path}': its index is damaged ({exc}); restore it from "
                            "a backup or create the project again.") from exc
        project = cls(project_dir, Path(os.path.normpath(images)),
                      checkpoint=None if checkpoint is None else Path(os.path.normpath(checkpoint)), parts=parts,
                      records=records, recursive=bool(data.get("recursive", False)), model_family=family,
                      **cache_sizes)
        project._dirty = upgraded
        project._saved_parts = None if parts is None else parts.to_dict()
        if not write:
            project.read_only = "it was opened for reading only"
        elif not project._lock.acquire():
            project.read_only = (f"{project._lock.describe_holder()} has it open; close it there to edit it here "
                                 "(your changes here are not saved)")
            logger.warning("Opened %s read-only: %s", project_dir, project.read_only)
        else:
            adopted = project.adopt_orphans()
            if adopted:
                logger.warning("Recovered %d predictions or edits that %s did not list (the app stopped before "
                               "saving it)", adopted, index_path)
        return project

    @property
    def index_path(self) -> Path:
        return self.project_dir / INDEX_NAME

    @property
    def models_dir(self) -> Path:
        """Where refined checkpoints of this project are kept, beside the ones before them."""
        return self.project_dir / "models"

    @property
    def dirty(self) -> bool:
        """Whether anything is waiting to be written (index, part table or an edit layer)."""
        if self._dirty or (self._parts is not None and self._parts.to_dict() != self._saved_parts):
            return True
        return any(self._saved_versions.get(id(layer)) != layer.version
                   for layer in [*self._edit_cache.values(), *self._leaving.values()])

    def save(self) -> None:
        """Write unsaved edit layers, then the index; every file atomically, untouched files are not rewritten.
        A failed write (a full disk) leaves the old files and keeps everything marked unsaved for the next try."""
        try:
            for job in self.save_jobs():
                job()
        except BaseException:
            self.mark_unsaved()
            raise

    def save_jobs(self) -> list[SaveJob]:
        """What :meth:`save` would write, as functions over copies of the data, in the order to run them (edit
        layers, then the index); the caller may run them on another thread while this one goes on.

        The project counts them as saved at once; if one fails, call :meth:`mark_unsaved` so the next save writes
        everything again."""
        if self.read_only is not None:
            if self.dirty:
                raise MPAEError(f"Cannot save '{self.project_dir}': {self.read_only}.")
            return []
        self._refresh_present()
        jobs = [job for relpath, layer in [*self._edit_cache.items(), *self._leaving.items()]
                if (job := self._layer_job(relpath, layer)) is not None]
        parts = None if self._parts is None else self._parts.to_dict()
        if not self._dirty and parts == self._saved_parts and self.index_path.exists():
            return jobs
        index = {
            "format": PROJECT_FORMAT,
            "format_version": PROJECT_VERSION,
            "images_folder": self._portable(self.images_folder),
            "checkpoint": None if self.checkpoint is None else self._portable(self.checkpoint),
            "recursive": self.recursive,
            "model_family": list(self.model_family),
            "parts": parts,
            "images": [self._record_dict(r) for r in self._records.values()],
        }
        path, seq = self.index_path, next(self._write_seq)
        jobs.append(lambda: atomic_write_json(path, index, commit=lambda tmp: self._commit(path, seq, tmp)))
        self._dirty = False
        self._saved_parts = parts
        return jobs

    def mark_unsaved(self) -> None:
        """A save job failed: write the index and every cached edit layer again next time."""
        self._dirty = True
        self._saved_versions.clear()

    def close(self) -> None:
        """Save (when writable) and give the write lock back."""
        try:
            if self.read_only is None:
                self.save()
        finally:
            self._lock.release()

    def __enter__(self) -> "AnnotationProject":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def set_checkpoint(self, checkpoint: str | os.PathLike | None) -> None:
        """Record the checkpoint that predicts this project (re-opening the project offers it again)."""
        new = None if checkpoint is None else Path(checkpoint)
        if new != self.checkpoint:
            self.checkpoint = new
            self._dirty = True

    # ----- models ---------------------------------------------------------------------------------------------
    def model_fit(self, num_parts: int, fingerprint: str | None, lineage: Sequence[str] = ()) -> ModelFit:
        """Whether a model's slots are the ones the part table names: its own fingerprint or one of its ancestors
        (``lineage``, e.g. the model a refinement started from) must be in :attr:`model_family`."""
        if self._parts is None or not self._parts.num_parts:
            return ModelFit.NO_TABLE  # no table, or user labels only (an import): the model gives the slots
        if num_parts != self._parts.num_parts:
            return ModelFit.WRONG_SIZE
        known = set(self.model_family)
        if not known or fingerprint in known or known.intersection(lineage):
            return ModelFit.FITS  # a project from before fingerprints trusts the model it is used with
        return ModelFit.UNKNOWN

    def adopt_model(self, fingerprint: str, parts: PartTable | None = None) -> None:
        """Use a model with this project: its fingerprint joins the family; ``parts`` (when given, e.g. the first
        model's names, or a new table the person chose) replaces the part table. The slot count must match, except
        for a table without slots (an imported project), which takes the new table's slots and keeps its own user
        labels."""
        if parts is not None:
            if self._parts is not None and not self._parts.num_parts:
                self._take_slots(parts)
            elif self._parts is not None and parts.num_parts != self._parts.num_parts:
                raise MPAEError(f"The new part table has {parts.num_parts} parts but this project's predictions "
                                f"have {self._parts.num_parts}.")
            else:
                self._parts = parts
            self.model_family = []
        if fingerprint and fingerprint not in self.model_family:
            self.model_family.append(fingerprint)
            self._dirty = True

    def describe_misfit(self, name: str, num_parts: int) -> str:
        """The one sentence that refuses a model with another number of slots."""
        return (f"'{name}' has {num_parts} parts but this project's part table has "
                f"{self._parts.num_parts if self._parts else 0}: its predictions cannot be stored here, and your "
                "names, merges and edits would not fit it. Load the project's model, or annotate with this one in "
                "another folder.")

    # ----- images -----------------------------------------------------------------------------------------------
    def scan(self, recursive: bool | None = None) -> list[str]:
        """Add the folder's images that the project does not know yet (as 'new'); returns their paths."""
        if recursive is not None and recursive != self.recursive:
            self.recursive = recursive
            self._dirty = True
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
        """Register one image or its size (the batch CLI adds what it predicts; the app, what a person paints on
        before any prediction); a known image keeps its state."""
        relpath = normalize_relpath(relpath)
        record = self._records.get(relpath)
        if record is None:
            record = self._records[relpath] = ImageRecord(relpath)
            self._dirty = True
        if size is not None and record.size != tuple(size):
            if record.has_edits:
                raise MPAEError(f"'{relpath}' is now {size[1]}×{size[0]} but its edits are {record.size[1]}×"
                                f"{record.size[0]}; the file was replaced: clear its edits first.")
            record.size = (int(size[0]), int(size[1]))
            self._touch(record)
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
        self._refresh_present()
        return dataclasses.replace(self._record(relpath))

    def records(self) -> Iterator[ImageRecord]:
        self._refresh_present()
        for record in self._records.values():
            yield dataclasses.replace(record)

    def status_counts(self) -> dict[ImageStatus, int]:
        counts = {status: 0 for status in ImageStatus}
        for record in self._records.values():
            counts[record.status] += 1
        return counts

    def untouched_relpaths(self) -> list[str]:
        """Predicted images that nobody edited or reviewed: what a new model may predict again without asking."""
        return [r.relpath for r in self._records.values() if r.has_prediction and not r.has_work]

    def part_image_counts(self) -> np.ndarray:
        """[K] number of images in which each model slot appears, edits included (from the index, no file reads)."""
        self._refresh_present()
        counts = np.zeros(0 if self._parts is None else self._parts.num_parts, dtype=np.int64)
        for record in self._records.values():
            if (record.has_prediction or record.has_edits) and record.present:
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
            raise ValueError(f"The new part table has {parts.num_parts} parts but this project's predictions have "
                             f"{self._parts.num_parts}.")
        if self._parts is not None and len(parts.user_labels) < len(self._parts.user_labels):
            for label in self._parts.user_labels[len(parts.user_labels):]:
                self._check_user_label_unused(label.value)
        self._parts = parts

    # ----- predictions ------------------------------------------------------------------------------------------
    def set_prediction(self, relpath: str | os.PathLike, prediction: PartPrediction, *, model: str | None = None,
                       stamp: FileStamp | None = None) -> None:
        """Store the model's answer for an image (written at once). Edits and the review mark are kept: which images
        may be predicted again is the caller's choice (see :meth:`untouched_relpaths`). ``model`` is the
        predicting model's fingerprint; ``stamp`` the image file as it was read (default: as it is now)."""
        self._check_writable()
        relpath = normalize_relpath(relpath)
        record = self._records.get(relpath) or ImageRecord(relpath)
        if self._parts is None:
            self._parts = PartTable.default(prediction.num_parts)
        elif not self._parts.num_parts:  # user labels only (an import): the first model gives the slots
            self._take_slots(PartTable.default(prediction.num_parts))
        elif prediction.num_parts != self._parts.num_parts:
            raise MPAEError(f"The prediction for '{relpath}' has {prediction.num_parts} parts but the project "
                            f"'{self.project_dir}' has {self._parts.num_parts}; use the project's checkpoint or start "
                            "a new project.")
        size = (int(prediction.image_size[0]), int(prediction.image_size[1]))
        if record.has_edits and record.size is not None and record.size != size:
            raise MPAEError(f"'{relpath}' is now {size[1]}×{size[0]} but its edits are {record.size[1]}×"
                            f"{record.size[0]}; clear its edits before predicting it again.")
        logits16 = prediction.logits.detach().cpu().to(torch.float16)
        stored = dataclasses.replace(prediction, logits=logits16.float(), image_size=size)
        write_prediction_file(self._prediction_file(relpath), stored, torch.float16)
        self.record_prediction(relpath, size=size, confidence=float(prediction.confidence),
                               present=np.flatnonzero(np.asarray(prediction.presence, bool)), model=model,
                               stamp=stamp if stamp is not None else file_stamp(self.images_folder / relpath))
        self._cache_prediction(relpath, stored)

    def record_prediction(self, relpath: str | os.PathLike, *, size: tuple[int, int], confidence: float,
                          present: Iterable[int], model: str | None, stamp: FileStamp | None) -> None:
        """The index half of :meth:`set_prediction`, for a prediction file another process already wrote (a batch
        run's encoders, :func:`write_prediction_file`); edits and the review mark are kept."""
        self._check_writable()
        relpath = normalize_relpath(relpath)
        record = self._records.setdefault(relpath, ImageRecord(relpath))
        # rounded once here, not at every save: index entries are kept as they were last written (see _touch)
        record.size, record.confidence, record.error = (int(size[0]), int(size[1])), round(float(confidence), 6), None
        record.has_prediction = True
        record.present = tuple(int(slot) for slot in present)
        record.model = model
        record.stamp = None if stamp is None else (int(stamp[0]), int(stamp[1]))
        record.file_state = FileState.UNCHANGED
        self._prediction_cache.pop(relpath, None)  # an older prediction of it may be cached
        if record.has_edits:
            self._present_stale.add(relpath)
        self._touch(record)

    def prediction(self, relpath: str | os.PathLike) -> PartPrediction | None:
        """The stored prediction (float16-rounded logits as float32), or None when the image has none."""
        record = self._record(relpath)
        cached = self._prediction_cache.get(record.relpath)
        if cached is not None:
            self._prediction_cache.move_to_end(record.relpath)
            return cached
        if not record.has_prediction:
            return None
        prediction = _read_stored_prediction(self._prediction_file(record.relpath), record.relpath)
        self._cache_prediction(record.relpath, prediction)
        return prediction

    def prediction_loader(self, relpath: str | os.PathLike) -> Callable[[], PartPrediction | None]:
        """How to get the image's stored prediction off the GUI thread (e.g. to compare a new one with it): the
        function touches no project state, so any thread may run it; it returns None when there is none, and
        raises MPAEError when its file is missing or unreadable."""
        record = self._record(relpath)
        cached = self._prediction_cache.get(record.relpath)
        if cached is not None or not record.has_prediction:
            return lambda: cached
        path, relpath = self._prediction_file(record.relpath), record.relpath
        return lambda: _read_stored_prediction(path, relpath)

    def set_error(self, relpath: str | os.PathLike, message: str) -> None:
        """Record why an image could not be predicted or read (shown in the list; a batch goes on). Earlier work
        stays: an image with a prediction, edits or a review keeps them and its status."""
        relpath = normalize_relpath(relpath)
        record = self._records.setdefault(relpath, ImageRecord(relpath))
        record.error = str(message)
        self._touch(record)

    def mark_reviewed(self, relpath: str | os.PathLike, reviewed: bool = True) -> None:
        """A person checked this image; editing it again makes it 'edited'."""
        record = self._record(relpath)
        if reviewed and not (record.has_prediction or record.has_edits):
            raise ValueError(f"'{record.relpath}' has no prediction or edits to review yet.")
        record.reviewed = bool(reviewed)
        self._touch(record)

    # ----- internals --------------------------------------------------------------------------------------------
    def _record(self, relpath: str | os.PathLike) -> ImageRecord:
        key = normalize_relpath(relpath)
        try:
            return self._records[key]
        except KeyError:
            raise KeyError(f"'{key}' is not an image of the project '{self.project_dir}'.") from None

    def _touch(self, record: ImageRecord) -> None:
        """Note that a record changed: its index entry is made again at the next save. The others keep theirs, so
        a save of 10,000 images costs the GUI thread a list of cached entries, not 10,000 new ones."""
        self._record_dicts.pop(record.relpath, None)
        self._dirty = True

    def _record_dict(self, record: ImageRecord) -> dict[str, Any]:
        entry = self._record_dicts.get(record.relpath)
        if entry is None:
            entry = self._record_dicts[record.relpath] = record.to_dict()  # never changed later: a job may hold it
        return entry

    def _commit(self, path: Path, seq: int, tmp: str | None) -> None:
        """Move a written temporary file into place (or, with ``tmp`` None, remove the file) unless a newer write of
        the same file landed first: the background saver and the GUI thread (an edit layer leaving the cache, a save
        on closing) may write one file at once, and an older version must never land last."""
        with self._write_lock:
            if self._written_seq.get(path, -1) > seq:
                if tmp is not None:
                    os.unlink(tmp)
                return
            if tmp is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
            self._written_seq[path] = seq

    def _take_slots(self, model_table: PartTable) -> None:
        """Give a table without slots the model's slots; cached edit layers then accept the new slot values."""
        self._parts = self._parts.with_model_slots(model_table)  # type: ignore[union-attr]
        for layer in self._edit_cache.values():
            layer.num_parts = self._parts.num_parts
        self._dirty = True

    def _check_writable(self) -> None:
        if self.read_only is not None:
            raise MPAEError(f"'{self.project_dir}' is read-only here: {self.read_only}.")

    def _prediction_file(self, relpath: str) -> Path:
        return self.project_dir / "predictions" / f"{relpath}.npz"

    def _cache_prediction(self, relpath: str, prediction: PartPrediction) -> None:
        self._prediction_cache[relpath] = prediction
        self._prediction_cache.move_to_end(relpath)
        while len(self._prediction_cache) > self.prediction_cache_size:
            self._prediction_cache.popitem(last=False)

    def _portable(self, path: Path) -> str:
        """Relative to the project folder when both live in the image folder (so the folder can move), else absolute."""
        absolute = Path(os.path.abspath(path))
        folder = Path(os.path.abspath(self.images_folder))
        project = Path(os.path.abspath(self.project_dir))
        movable = folder in project.parents and (absolute == folder or folder in absolute.parents)
        return Path(os.path.relpath(absolute, project)).as_posix() if movable else str(absolute)


def _read_stored_prediction(path: Path, relpath: str) -> PartPrediction:
    """The prediction file of ``relpath`` (any thread: it touches no project state); missing or damaged → MPAEError."""
    if not path.is_file():
        raise MPAEError(f"The prediction file '{path}' of '{relpath}' is missing; predict that image again.")
    return read_prediction_file(path)

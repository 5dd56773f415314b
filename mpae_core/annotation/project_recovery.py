"""Recovery and file checks of a project: adopt what a crash wrote without the index, and notice photos that
changed or vanished since they were annotated (a mixin of :class:`~.project.AnnotationProject`)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..errors import MPAEError
from ..inference import PartPrediction
from .records import ImageRecord, compare_file, file_stamp, normalize_relpath
from .storage import read_npz, read_uint16_png, write_npz

logger = logging.getLogger(__name__)


class ProjectRecoveryMixin:
    """``adopt_orphans`` and ``check_files``; state lives in the project."""

    def check_files(self, relpaths: Iterable[str] | None = None) -> list[str]:
        """Compare image files with the ones that were predicted or edited (size and modification time); returns
        the images whose :class:`FileState` changed. A replaced photo would show a misaligned mask, a deleted one
        an annotation of nothing: both are flagged until the person predicts or removes them."""
        changed = []
        wanted = self._records.values() if relpaths is None else [self._record(r) for r in relpaths]
        for record in wanted:
            if not (record.has_prediction or record.has_edits):
                continue
            state = compare_file(self.images_folder / record.relpath, record)
            if state is not record.file_state:
                record.file_state = state
                self._touch(record)
                changed.append(record.relpath)
        if changed:
            self._dirty = True
        return changed

    def adopt_orphans(self) -> int:
        """Take in prediction and edit files the index does not list (a crash between writing them and writing
        the index), and remove temporary files such a crash left; returns how many files were adopted."""
        adopted = 0
        for path in _files_under(self.project_dir / "predictions", ".npz"):
            relpath = self._orphan_relpath(path, self.project_dir / "predictions", ".npz")
            if relpath is None or self._records.get(relpath, ImageRecord(relpath)).has_prediction:
                continue
            try:
                prediction = read_prediction_file(path)
            except MPAEError as exc:
                logger.warning("Not adopting %s: %s", path, exc)
                continue
            record = self._records.setdefault(relpath, ImageRecord(relpath))
            record.has_prediction, record.size = True, prediction.image_size
            record.confidence, record.error = prediction.confidence, None
            record.present = tuple(int(s) for s in np.flatnonzero(prediction.presence))
            record.stamp = file_stamp(self.images_folder / relpath)
            self._touch(record)
            adopted += 1
        for path in _files_under(self.project_dir / "edits", ".png"):
            relpath = self._orphan_relpath(path, self.project_dir / "edits", ".png")
            if relpath is None or self._records.get(relpath, ImageRecord(relpath)).has_edits:
                continue
            record = self._records.setdefault(relpath, ImageRecord(relpath))
            if record.size is None:
                record.size = tuple(read_uint16_png(path).shape)  # type: ignore[assignment]
            record.has_edits = True
            self._touch(record)
            adopted += 1
        for tmp in self.project_dir.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        if adopted:
            self._dirty = True
        return adopted

    def _orphan_relpath(self, path: Path, root: Path, suffix: str) -> str | None:
        """The image a stray file belongs to, if that image is known or still exists."""
        name = path.relative_to(root).as_posix()[: -len(suffix)]
        try:
            relpath = normalize_relpath(name)
        except ValueError:
            return None
        if relpath in self._records or (self.images_folder / relpath).is_file():
            return relpath
        logger.warning("Not adopting %s: its image '%s' is not in the folder", path, relpath)
        return None


def _files_under(root: Path, suffix: str) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(suffix) and not name.startswith("."):
                yield Path(folder) / name


def read_prediction_file(path: Path) -> PartPrediction:
    """A stored prediction (float16 logits read back as float32); a damaged file raises MPAEError."""
    data = read_npz(path)
    try:
        return PartPrediction(
            logits=torch.from_numpy(data["logits"].astype(np.float32)),
            image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
            presence=data["presence"].astype(bool), area=data["area"].astype(np.float64),
            part_confidence=data["part_confidence"].astype(np.float64), confidence=float(data["confidence"]),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise MPAEError(f"The prediction file '{path}' is damaged ({exc}); predict that image again.") from exc


def write_prediction_file(path: Path, prediction: PartPrediction, dtype: torch.dtype = torch.float16) -> None:
    """A prediction in the project's file layout (what :func:`read_prediction_file` reads): its logits as ``dtype``
    (float16 for the app, which rounds them at once so reopening shows the same pixels; float32 for a batch run,
    whose masks come from float32 logits) and its per-part summary. Float16 files are compressed; float32 ones are
    not (zlib saves under 10 % of their size and costs a fifth of the time of writing them)."""
    logits = prediction.logits.detach().cpu().to(dtype).numpy()
    write_npz(path, compressed=dtype == torch.float16, logits=logits,
              image_size=np.asarray(prediction.image_size, np.int64),
              presence=np.asarray(prediction.presence, bool), area=np.asarray(prediction.area, np.float32),
              part_confidence=np.asarray(prediction.part_confidence, np.float32),
              confidence=np.asarray(prediction.confidence, np.float64))

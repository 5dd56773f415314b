"""One image's entry in a project index: what the file list, the exports and the refinement need to know about it
without opening its prediction or its edits.

The status is derived from facts, never stored on its own: an image is *reviewed* when a person said so, *edited*
when it has edits, *predicted* when it has a prediction, *error* only when a failure left it with nothing else.
So a failed re-prediction, a crash or a new model can never turn a reviewed or edited image into an error or a new
one: the facts it was derived from are still there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any


class ImageStatus(str, Enum):
    NEW = "new"
    PREDICTED = "predicted"
    EDITED = "edited"
    REVIEWED = "reviewed"
    ERROR = "error"


#: Statuses whose label maps the exports include by default.
EXPORTABLE = (ImageStatus.PREDICTED, ImageStatus.EDITED, ImageStatus.REVIEWED)


class FileState(str, Enum):
    """The image file compared with the one that was predicted (size and modification time)."""

    UNCHANGED = ""
    CHANGED = "changed"
    MISSING = "missing"


#: The index key of an image's confidence, the share of its clearly labelled pixels (``PartPrediction.confidence``).
#: Indexes written before it hold the mean max-probability under "confidence", ~100 % for every image; that key is
#: not read back, so those images show no confidence until they are predicted again.
CONFIDENCE_KEY = "clear_share"

#: (bytes, modification time in ns) of an image file: cheap to read, and any rewrite of the file changes it.
FileStamp = tuple[int, int]


def file_stamp(path: str | os.PathLike) -> FileStamp | None:
    """The stamp of ``path``, or None when the file does not exist (or cannot be read)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return int(stat.st_size), int(stat.st_mtime_ns)


@dataclass
class ImageRecord:
    """What the file list needs about one image, without touching its prediction or edits on disk."""

    relpath: str
    error: str | None = None  # why the last prediction or load failed (kept beside any earlier work)
    size: tuple[int, int] | None = None  # (height, width), EXIF orientation applied
    confidence: float | None = None  # share of clearly labelled pixels (CONFIDENCE_KEY), None when not known
    has_prediction: bool = False
    has_edits: bool = False
    reviewed: bool = False
    present: tuple[int, ...] = ()  # model slots the image shows, edits included (the parts panel counts these)
    user_present: tuple[int, ...] = ()  # label values of user labels painted on the image
    model: str | None = None  # fingerprint of the model that made the prediction
    stamp: FileStamp | None = None  # the image file as it was predicted
    file_state: FileState = FileState.UNCHANGED

    @property
    def status(self) -> ImageStatus:
        if self.reviewed and (self.has_prediction or self.has_edits):
            return ImageStatus.REVIEWED
        if self.has_edits:
            return ImageStatus.EDITED
        if self.has_prediction:
            return ImageStatus.PREDICTED
        return ImageStatus.ERROR if self.error else ImageStatus.NEW

    @property
    def has_work(self) -> bool:
        """A person put work into this image (edits or a review): predictions must not silently replace it."""
        return self.has_edits or self.status is ImageStatus.REVIEWED

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.relpath, "status": self.status.value}
        if self.error is not None:
            data["error"] = self.error
        if self.size is not None:
            data["size"] = list(self.size)
        if self.confidence is not None:
            data[CONFIDENCE_KEY] = round(self.confidence, 6)
        data["prediction"] = self.has_prediction
        data["edits"] = self.has_edits
        if self.reviewed:
            data["reviewed"] = True
        if self.present:
            data["present"] = list(self.present)
        if self.user_present:
            data["user_present"] = list(self.user_present)
        if self.model is not None:
            data["model"] = self.model
        if self.stamp is not None:
            data["stamp"] = list(self.stamp)
        if self.file_state is not FileState.UNCHANGED:
            data["file"] = self.file_state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageRecord":
        """Read a current-format record ("status" is derived, so it is not read back)."""
        size, stamp = data.get("size"), data.get("stamp")
        return cls(
            relpath=normalize_relpath(data["path"]),
            error=data.get("error"),
            size=None if size is None else (int(size[0]), int(size[1])),
            confidence=None if data.get(CONFIDENCE_KEY) is None else float(data[CONFIDENCE_KEY]),
            has_prediction=bool(data.get("prediction", False)),
            has_edits=bool(data.get("edits", False)),
            reviewed=bool(data.get("reviewed", False)),
            present=tuple(int(slot) for slot in data.get("present", ())),
            user_present=tuple(int(value) for value in data.get("user_present", ())),
            model=None if data.get("model") is None else str(data["model"]),
            stamp=None if stamp is None else (int(stamp[0]), int(stamp[1])),
            file_state=FileState(data.get("file", "")),
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


def compare_file(path: Path, record: ImageRecord) -> FileState:
    """How the file at ``path`` compares with the one ``record`` was predicted from."""
    stamp = file_stamp(path)
    if stamp is None:
        return FileState.MISSING
    if record.stamp is not None and stamp != record.stamp:
        return FileState.CHANGED
    return FileState.UNCHANGED

"""What every import format reader gives the driver: the source's labels, and its annotated images one at a time.

A reader never decides what a label means in the project: it numbers the source's labels with *keys* (1..n, 0 is
"nothing drawn", which is background) and turns each image's annotation into a key map; the driver
(:mod:`.run`) maps names to the project's labels and keys to label values. Reading an image's pixels waits until
its :attr:`SourceImage.read` is called, so listing a source (the dialog's preview) costs metadata only, and an
import holds one image's map at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ...errors import MPAEError

Color = tuple[int, int, int]

#: What a label is, when the format itself says so (pixel value 0 / 255 of a PNG, labelme's ``__ignore__``, ...).
BACKGROUND_ROLE = "background"
IGNORE_ROLE = "ignore"


class ImportSourceError(MPAEError):
    """The source as a whole cannot be read (not found, not the format, no label names): nothing is imported."""


class AnnotationReadError(MPAEError):
    """One image's annotation cannot be used (a broken file, an unknown label); that image is skipped."""


@dataclass(frozen=True)
class SourceLabel:
    """One label of a source: ``key`` is its value in the reader's key maps."""

    key: int
    name: str
    color: Color | None = None  # the source's colour, when the format keeps colours
    role: str | None = None  # BACKGROUND_ROLE or IGNORE_ROLE when the format defines it so


@dataclass(frozen=True)
class NameCandidate:
    """A name under which an annotation may know its image: a path (``a/b.jpg``) or, with ``stem``, a path without
    the image's extension (``a/b`` from ``masks/a/b.png``)."""

    name: str
    stem: bool = False


@dataclass
class SourceImage:
    """One annotated image of a source.

    ``read(size, notes)`` returns its key map (uint8 or uint16) at ``size`` = (height, width), the photo's
    EXIF-oriented size (YOLO needs it to scale its normalised points), raises :class:`AnnotationReadError` for
    anything it cannot use, and appends to ``notes`` what it left out (shapes of kinds that mark no region).
    """

    origin: str  # where the annotation is, for messages: "masks/a.png", "coco.json, image 12"
    names: tuple[NameCandidate, ...]
    size: tuple[int, int] | None  # (height, width) the annotation declares, None when it has none (YOLO)
    read: Callable[[tuple[int, int], list[str]], np.ndarray]
    path: Path | None = None  # the photo's own path, when the annotation points at it (labelme's imagePath)


class ImportSource:
    """A readable source of one format; subclasses fill ``labels`` and implement :meth:`images`."""

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.labels: list[SourceLabel] = []

    def images(self) -> Iterator[SourceImage]:
        raise NotImplementedError

    def count(self) -> int | None:
        """How many annotated images :meth:`images` yields, when known without reading them (progress)."""
        return None

    def describe(self) -> str:
        return f"{self.format} '{self.path}'"


def key_dtype(num_keys: int) -> type:
    return np.uint8 if num_keys < 256 else np.uint16


def stem_of(relpath: str, suffix: str) -> str:
    """``masks/a/b.png`` relative to ``masks`` less ``.png``: the image's export name (``a/b``)."""
    return relpath[: -len(suffix)] if relpath.lower().endswith(suffix.lower()) else relpath


def files_under(folder: Path, suffix: str | tuple[str, ...]) -> list[str]:
    """Files ending in ``suffix`` (lower case; any case matches) below ``folder``, as sorted POSIX paths relative to
    it; hidden files and folders are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(suffix):
                found.append(Path(dirpath, name).relative_to(folder).as_posix())
    return sorted(found)


def check_size(origin: str, declared: tuple[int, int] | None, size: tuple[int, int]) -> None:
    """Refuse an annotation whose own size is not the photo's: its pixels would land in the wrong places."""
    if declared is not None and tuple(declared) != tuple(size):
        raise AnnotationReadError(f"{origin} is {declared[1]}×{declared[0]} but the photo is {size[1]}×{size[0]} "
                                  "(EXIF orientation applied); it belongs to another version of the photo, so it was "
                                  "not imported.")

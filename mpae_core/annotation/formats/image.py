"""One exported image as the format writers see it: its export-index map, its names and where the photo is."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import EXPORT_IGNORE
from .polygons import PartPolygon, part_polygons


@dataclass
class ExportImage:
    """``stem`` is the image's unique export name without extension (its mask name less ``.png``): per-image
    files of every format are named after it, so two photos a.jpg and a.png never overwrite each other."""

    relpath: str
    indices: np.ndarray  # uint8 export indices: 0 background, 1..N labels, 255 ignore
    stem: str
    image_path: Path | None = None  # the photo, for formats that link or point to it

    @property
    def height(self) -> int:
        return int(self.indices.shape[0])

    @property
    def width(self) -> int:
        return int(self.indices.shape[1])

    @functools.cached_property
    def all_polygons(self) -> list[PartPolygon]:
        """Every instance of every label and of the ignore regions, traced once for all polygon formats."""
        return part_polygons(self.indices, include_ignore=True)

    @property
    def polygons(self) -> list[PartPolygon]:
        """The labelled instances only (ignore regions left out)."""
        return [p for p in self.all_polygons if p.index != EXPORT_IGNORE]

    def image_relative_to(self, folder: Path) -> str:
        """The photo's path relative to ``folder`` (POSIX separators); absolute when no relative path exists
        (another drive on Windows), and the relpath itself when the photo's location is unknown."""
        if self.image_path is None:
            return self.relpath
        try:
            return Path(os.path.relpath(self.image_path, folder)).as_posix()
        except ValueError:
            return Path(self.image_path).resolve().as_posix()

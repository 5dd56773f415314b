"""YOLO segmentation (Ultralytics): ``data.yaml`` naming the classes, ``labels/**.txt`` with one polygon per line.

A line is ``class x1 y1 x2 y2 ...``, the class 0-based and the points normalised by the photo's size. They are
scaled back, truncated to whole pixels and filled by OpenCV's ``fillPoly``, exactly as Ultralytics does
(``polygon2mask``; pixel-centre convention, :mod:`.rasterise`), which gives back exactly the pixels our exports
traced. Lines are
painted in file order. The classes come from ``names`` in ``data.yaml`` (a list or {index: name}; the dataset root
is its ``path`` when it has one, else its folder), or ``classes.txt`` (one name per line) beside ``labels/``. An image
is found by its label file's path below ``labels/`` (``labels/train/x.txt`` ↔ ``images/train/x.jpg``, the photo's
extension taken from ``images/`` when it is there). YOLO has no colours and no "ignore".
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np
import yaml

from ...images import IMAGE_EXTENSIONS
from .rasterise import fill_polygon_mask, paint
from .source import (AnnotationReadError, ImportSource, ImportSourceError, NameCandidate, SourceImage, SourceLabel,
                     files_under, key_dtype, stem_of)


def find_yaml(folder: Path) -> Path | None:
    """``data.yaml`` (or the folder's only .yaml file) when it names classes."""
    candidates = [folder / "data.yaml"] if (folder / "data.yaml").is_file() else sorted(
        p for p in folder.glob("*.y*ml") if p.is_file())
    return candidates[0] if len(candidates) == 1 else None


class YoloSource(ImportSource):
    format = "yolo"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        folder = path.parent if path.is_file() else path
        config = path if path.is_file() else find_yaml(folder)
        if config is not None:
            names, self.root = self._read_yaml(config)
        elif (folder / "classes.txt").is_file():
            names = [n.strip() for n in (folder / "classes.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
            self.root = folder
        else:
            raise ImportSourceError(f"'{folder}' has no data.yaml (or classes.txt) naming the YOLO classes; add one "
                                    "with 'names:'.")
        self.labels = [SourceLabel(i + 1, name) for i, name in enumerate(names)]
        self.labels_dir = self.root / "labels"
        if not self.labels_dir.is_dir():
            raise ImportSourceError(f"'{self.root}' has no labels/ folder beside its images/; choose the YOLO "
                                    "dataset's folder.")
        self._files = files_under(self.labels_dir, ".txt")
        photos: dict[str, list[str]] = {}
        if (self.root / "images").is_dir():
            for relpath in files_under(self.root / "images", tuple(IMAGE_EXTENSIONS)):
                photos.setdefault(stem_of(relpath, PurePosixPath(relpath).suffix), []).append(relpath)
        self._photos = photos

    @staticmethod
    def _read_yaml(config: Path) -> tuple[list[str], Path]:
        try:
            data: Any = yaml.safe_load(config.read_text(encoding="utf-8"))
            raw = data["names"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise ImportSourceError(f"'{config}' does not name the YOLO classes ({exc!r}); it needs 'names:' (a list, "
                                    "or index: name lines).") from exc
        if isinstance(raw, dict):
            try:
                by_index = {int(k): str(v) for k, v in raw.items()}
            except ValueError as exc:
                raise ImportSourceError(f"'{config}' names classes by non-numbers ({exc}); use 0: name.") from exc
            if sorted(by_index) != list(range(len(by_index))):
                raise ImportSourceError(f"'{config}' names classes {sorted(by_index)}; they must be 0..n-1.")
            names = [by_index[i] for i in range(len(by_index))]
        elif isinstance(raw, list):
            names = [str(n) for n in raw]
        else:
            raise ImportSourceError(f"'{config}' has 'names: {raw!r}'; give a list or index: name lines.")
        root = config.parent
        if isinstance(data.get("path"), str) and data["path"].strip():
            given = Path(data["path"])
            root = given if given.is_absolute() else config.parent / given
        return names, root

    def count(self) -> int:
        return len(self._files)

    def images(self) -> Iterator[SourceImage]:
        for relpath in self._files:
            stem = stem_of(relpath, ".txt")
            photos = self._photos.get(stem, [])
            names = ([NameCandidate(photos[0])] if len(photos) == 1 else []) + [NameCandidate(stem, stem=True)]
            origin = f"'{self.labels_dir / relpath}'"
            yield SourceImage(origin, tuple(names), None,
                              lambda s, _notes, p=self.labels_dir / relpath, o=origin: self._read(p, s, o))

    def _read(self, path: Path, size: tuple[int, int], origin: str) -> np.ndarray:
        height, width = size
        keys = np.zeros(size, dtype=key_dtype(len(self.labels) + 1))
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise AnnotationReadError(f"{origin} cannot be read ({exc}); it was not imported.") from exc
        for number, line in enumerate(lines, 1):
            values = line.split()
            if not values:
                continue
            try:
                cls = int(values[0])
                xy = np.asarray(values[1:], dtype=np.float64)
            except ValueError:
                raise AnnotationReadError(f"Line {number} of {origin} is not 'class x1 y1 x2 y2 ...' numbers; the "
                                          "image was not imported.") from None
            if not 0 <= cls < len(self.labels):
                raise AnnotationReadError(f"Line {number} of {origin} has class {cls}, but data.yaml names "
                                          f"{len(self.labels)} classes; the image was not imported.")
            if xy.size < 6 or xy.size % 2:
                raise AnnotationReadError(f"Line {number} of {origin} has {xy.size} coordinates; a segmentation line "
                                          "is a polygon of at least three x y points (boxes are for detection), so "
                                          "the image was not imported.")
            points = np.trunc(xy.reshape(-1, 2) * (width, height))  # Ultralytics: scale, then int32
            paint(keys, fill_polygon_mask(points, height, width), cls + 1)
        return keys

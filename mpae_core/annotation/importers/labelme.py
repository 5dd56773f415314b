"""labelme JSON: one file per image, in a folder (searched recursively) or a single file.

Shapes are drawn the way labelme's ``shapes_to_label`` draws them (pixel-centre coordinates; ``polygon`` filled
with its outline, ``rectangle``, ``circle``, and ``mask`` shapes' own bitmaps), in file order, so a later shape
covers an earlier one. ``point``, ``line`` and ``linestrip`` shapes mark no region and are left out (the image's
notes say how many). ``__ignore__`` is "don't care" (labelme2voc's 255) and ``_background_`` background.

labelme has no label list, so the labels are gathered from every file first (names only). Their order is one that
agrees with the order of the shapes in every file (our exports list shapes by label index), so exporting an
imported folder numbers the labels as the original export did. The photo is found through ``imagePath`` (relative
to the JSON file) when it lies in the project's folder, else by the JSON file's own name (the exporters name it
after the image), else by the photo's file name.
"""
from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from .rasterise import centre_polygon_mask, paint
from .source import (BACKGROUND_ROLE, IGNORE_ROLE, AnnotationReadError, ImportSource, ImportSourceError,
                     NameCandidate, SourceImage, SourceLabel, files_under, key_dtype, stem_of)

IGNORE_NAME = "__ignore__"
BACKGROUND_NAME = "_background_"
REGION_SHAPES = ("polygon", "rectangle", "circle", "mask")


class LabelmeSource(ImportSource):
    format = "labelme"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if path.is_file():
            self.root, self._files = path.parent, [path.name]
        else:
            self.root, self._files = path, files_under(path, ".json")
        sequences = []
        self._meta: list[tuple[str, str | None, tuple[int, int] | None]] = []
        for relpath in self._files:
            document = self._load(relpath)
            if document is None:
                continue
            names = [str(s.get("label") or "").strip() for s in document["shapes"]
                     if (s.get("shape_type") or "polygon") in REGION_SHAPES]  # a label only on lines paints nothing
            names = [n for n in names if n]
            sequences.append(list(dict.fromkeys(names)))
            image_path = document.get("imagePath")
            height, width = document.get("imageHeight"), document.get("imageWidth")
            size = (int(height), int(width)) if isinstance(height, int) and isinstance(width, int) else None
            self._meta.append((relpath, str(image_path) if image_path else None, size))
        if not self._meta:
            raise ImportSourceError(f"'{path}' holds no labelme JSON file (a JSON object with 'shapes'); choose the "
                                    "folder of the labelme files.")
        roles = {IGNORE_NAME: IGNORE_ROLE, BACKGROUND_NAME: BACKGROUND_ROLE}
        self.labels = [SourceLabel(i + 1, name, None, roles.get(name)) for i, name in
                       enumerate(consistent_order(sequences))]
        self._key_of = {label.name: label.key for label in self.labels}

    def _load(self, relpath: str) -> dict[str, Any] | None:
        """The parsed file, or None when it is some other JSON (a folder may hold other files too)."""
        try:
            document = json.loads((self.root / relpath).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
            return None
        return document

    def count(self) -> int:
        return len(self._meta)

    def images(self) -> Iterator[SourceImage]:
        for relpath, image_path, size in self._meta:
            origin = f"'{self.root / relpath}'"
            names = [NameCandidate(stem_of(relpath, ".json"), stem=True)]
            photo = None
            if image_path:
                image_path = image_path.replace("\\", "/")
                names.append(NameCandidate(image_path))
                photo = Path(os.path.normpath((self.root / relpath).parent / image_path))
            yield SourceImage(origin, tuple(names), size,
                              lambda s, notes, r=relpath, o=origin: self._read(r, s, o, notes), path=photo)

    def _read(self, relpath: str, size: tuple[int, int], origin: str, notes: list[str]) -> np.ndarray:
        document = self._load(relpath)
        if document is None:
            raise AnnotationReadError(f"{origin} is no longer a readable labelme file; it was not imported.")
        height, width = size
        keys = np.zeros(size, dtype=key_dtype(len(self.labels) + 1))
        skipped: dict[str, int] = {}
        for number, shape in enumerate(document["shapes"], 1):
            kind = shape.get("shape_type") or "polygon"
            key = self._key_of.get(str(shape.get("label") or "").strip())
            if kind not in REGION_SHAPES or key is None:
                what = kind if kind not in REGION_SHAPES else "unlabelled"
                skipped[what] = skipped.get(what, 0) + 1
                continue
            try:
                if kind == "mask":
                    paint(keys, _mask_shape(shape, height, width), key)
                else:
                    paint(keys, centre_polygon_mask(shape["points"], height, width, shape=kind), key)
            except (ValueError, TypeError, KeyError, OSError) as exc:
                raise AnnotationReadError(f"Shape {number} ('{shape.get('label')}') of {origin} cannot be drawn "
                                          f"({exc}); the image was not imported.") from exc
        notes += [f"{count} {kind} shape{'s' if count > 1 else ''} left out" for kind, count in skipped.items()]
        return keys


def _mask_shape(shape: dict[str, Any], height: int, width: int):
    """labelme 5's ``mask`` shape: a PNG of the box between its two points, placed at the first one."""
    (x1, y1), _ = np.asarray(shape["points"], dtype=np.float64).astype(int)[:2]
    with Image.open(io.BytesIO(base64.b64decode(shape["mask"]))) as im:
        bitmap = np.asarray(im.convert("L")) > 0
    y0, x0 = max(0, y1), max(0, x1)
    bitmap = bitmap[y0 - y1 : height - y1, x0 - x1 : width - x1]
    if bitmap.size == 0:
        return None
    return (x0, y0, x0 + bitmap.shape[1], y0 + bitmap.shape[0]), bitmap


def consistent_order(sequences: list[list[str]]) -> list[str]:
    """Every name once, in an order that keeps each sequence's order where they all agree (a topological sort,
    ties and disagreements settled by first appearance)."""
    first: dict[str, int] = {}
    after: dict[str, set[str]] = {}
    before_count: dict[str, int] = {}
    for sequence in sequences:
        for name in sequence:
            if name not in first:
                first[name] = len(first)
                after[name], before_count[name] = set(), 0
        for a, b in zip(sequence, sequence[1:]):
            if b not in after[a]:
                after[a].add(b)
                before_count[b] += 1
    order: list[str] = []
    remaining = set(first)
    while remaining:
        ready = [n for n in remaining if before_count[n] == 0]
        name = min(ready or remaining, key=first.__getitem__)  # a cycle: take the earliest seen
        order.append(name)
        remaining.discard(name)
        for nxt in after[name]:
            before_count[nxt] -= 1
    return order

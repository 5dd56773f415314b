"""COCO instances files: masks as RLE (compressed or not) or polygons, one or many annotations per image.

The file is read once and its annotations grouped by image id (metadata: the pixels are decoded per image, when
it is imported). Categories become labels in the file's order (a category may carry a ``color``, as some tools
write, '#rrggbb' or [r, g, b]); annotations are painted in file order, so where two overlap the later one wins.
Polygons are pixel-edge outlines, rasterised by pycocotools exactly as the COCO tools read them. COCO has no
"ignore": what our exports left out as ignore comes back as background.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...palette import hex_to_color
from .rasterise import edge_polygons_mask, paint, rle_mask
from .source import (AnnotationReadError, Color, ImportSource, ImportSourceError, NameCandidate, SourceImage,
                     SourceLabel, key_dtype)


def _color(value: Any) -> Color | None:
    try:
        if isinstance(value, str):
            return hex_to_color(value)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            color = tuple(int(c) for c in value)
            return color if all(0 <= c <= 255 for c in color) else None  # type: ignore[return-value]
    except ValueError:
        return None
    return None


class CocoSource(ImportSource):
    format = "coco"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            categories, images = data["categories"], data["images"]
            annotations = data.get("annotations", [])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ImportSourceError(f"'{path}' is not a readable COCO file ({exc}); it needs 'images' and "
                                    "'categories' lists.") from exc
        try:
            self.labels = [SourceLabel(i + 1, str(c["name"]), _color(c.get("color"))) for i, c in
                           enumerate(categories)]
            self._key_of = {int(c["id"]): i + 1 for i, c in enumerate(categories)}
            self._images = [(int(im["id"]), str(im["file_name"]), (int(im["height"]), int(im["width"])))
                            for im in images]
            self._by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id, _, _ in self._images}
            for annotation in annotations:
                owner = self._by_image.get(int(annotation["image_id"]))
                if owner is not None:
                    owner.append({"category_id": annotation.get("category_id"),
                                  "segmentation": annotation.get("segmentation"), "id": annotation.get("id")})
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportSourceError(f"'{path}' is not a valid COCO file: an entry lacks {exc}; fix the file.") from exc

    def count(self) -> int:
        return len(self._images)

    def images(self) -> Iterator[SourceImage]:
        for image_id, file_name, size in self._images:
            origin = f"'{self.path.name}' image {image_id} ('{file_name}')"
            yield SourceImage(origin, (NameCandidate(file_name),), size,
                              lambda s, _notes, i=image_id, o=origin: self._read(i, s, o))

    def _read(self, image_id: int, size: tuple[int, int], origin: str) -> np.ndarray:
        height, width = size
        keys = np.zeros(size, dtype=key_dtype(len(self.labels) + 1))
        for annotation in self._by_image.get(image_id, []):
            key = self._key_of.get(_int(annotation["category_id"]))
            if key is None:
                raise AnnotationReadError(f"Annotation {annotation['id']} of {origin} has category "
                                          f"{annotation['category_id']}, which the file's categories do not list.")
            segmentation = annotation["segmentation"]
            try:
                if isinstance(segmentation, dict):
                    mask = rle_mask(segmentation, height, width)
                    keys[mask] = key
                elif isinstance(segmentation, list):
                    paint(keys, edge_polygons_mask(segmentation, height, width), key)
                elif segmentation is not None:
                    raise ValueError("its segmentation is neither polygons nor an RLE")
            except (ValueError, TypeError, KeyError) as exc:
                raise AnnotationReadError(f"Annotation {annotation['id']} of {origin} cannot be read ({exc}); "
                                          "the image was not imported.") from exc
        return keys


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

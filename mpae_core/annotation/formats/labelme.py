"""labelme JSON, one file per image: ``labelme/<image's export name>.json``.

Each connected part instance is a ``polygon`` shape labelled with the part's name, its points through the centres
of the boundary pixels (:attr:`~.polygons.PartPolygon.centres`, in labelme's pixel-centre coordinates); labelme's
``shapes_to_label`` draws them with PIL (fill and outline), which gives back exactly the exported pixels, one-pixel
parts included. Holes are kept by a zero-width cut (one polygon per instance, ``group_id`` null). Ignored pixels
(255) become polygons labelled ``__ignore__``, the name labelme's own ``labelme2voc`` turns into 255 again.
``imagePath`` is the photo relative to the JSON file and ``imageData`` is null (labelme reads the photo), with
``imageHeight``/``imageWidth`` the EXIF-oriented size, as labelme checks it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..labels import EXPORT_IGNORE
from ..parts import ExportLabel
from ..storage import atomic_write_bytes
from .image import ExportImage

LABELME_VERSION = "5.5.0"  # the file layout written here; labelme 5.x and 6.x read it
IGNORE_SHAPE_LABEL = "__ignore__"


class LabelmeWriter:
    def __init__(self, out_dir: str | os.PathLike, labels: Sequence[ExportLabel]) -> None:
        self.root = Path(out_dir) / "labelme"
        self.name_of = {label.index: label.name for label in labels}
        self.name_of[EXPORT_IGNORE] = IGNORE_SHAPE_LABEL

    def add(self, image: ExportImage) -> list[Path]:
        path = self.root / f"{image.stem}.json"
        shapes: list[dict[str, Any]] = [{
            "label": self.name_of[polygon.index],
            "points": polygon.centres.tolist(),  # whole pixel centres: labelme reads ints and floats alike
            "group_id": None,
            "description": "",
            "shape_type": "polygon",
            "flags": {},
        } for polygon in image.all_polygons]
        document = {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": image.image_relative_to(path.parent),
            "imageData": None,
            "imageHeight": image.height,
            "imageWidth": image.width,
        }
        return [atomic_write_bytes(path, json.dumps(document, ensure_ascii=False).encode("utf-8"))]

    def close(self) -> list[Path]:
        return []

    def abort(self) -> None:
        """Nothing to undo: the files written so far are complete, one per image."""

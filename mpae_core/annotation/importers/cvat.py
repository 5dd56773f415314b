"""CVAT for images 1.1 XML (``annotations.xml``), read as a stream: one ``<image>`` at a time.

Labels (name and colour) come from ``<meta>`` (a task's or a project's). Region shapes are painted in ``z_order``
(then document order): ``polygon`` (pixel-edge points, CVAT's own grid, rasterised by pycocotools as CVAT's and
Datumaro's converters do), ``box`` and ``mask`` (CVAT's run-length bitmap of a box). Polylines, points, ellipses,
skeletons and cuboids are left out (the image's notes say how many). CVAT has no "ignore". An image is found by its
``name``, its path in the task.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import numpy as np

from ...palette import hex_to_color
from .rasterise import edge_polygons_mask, paint
from .source import (AnnotationReadError, ImportSource, ImportSourceError, NameCandidate, SourceImage, SourceLabel,
                     key_dtype)

REGION_SHAPES = ("polygon", "box", "mask")


class CvatSource(ImportSource):
    format = "cvat"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        names: list[tuple[str, tuple[int, int, int] | None]] = []
        try:
            for _, element in ET.iterparse(path, events=("end",)):
                if element.tag == "label" and element.find("name") is not None:
                    color_text = (element.findtext("color") or "").strip()
                    try:
                        color = hex_to_color(color_text) if color_text else None
                    except ValueError:
                        color = None
                    names.append(((element.findtext("name") or "").strip(), color))
                if element.tag in ("meta", "image"):
                    break
        except (OSError, ET.ParseError) as exc:
            raise ImportSourceError(f"'{path}' is not readable CVAT XML ({exc}); export the task as 'CVAT for images "
                                    "1.1'.") from exc
        names = list(dict.fromkeys(n for n in names if n[0]))
        self.labels = [SourceLabel(i + 1, name, color) for i, (name, color) in enumerate(names)]
        self._key_of = {label.name: label.key for label in self.labels}

    def images(self) -> Iterator[SourceImage]:
        for _, element in ET.iterparse(self.path, events=("end",)):
            if element.tag != "image":
                continue
            try:
                name = element.attrib["name"]
                size = (int(element.attrib["height"]), int(element.attrib["width"]))
            except (KeyError, ValueError) as exc:
                raise ImportSourceError(f"An <image> of '{self.path}' lacks its name, width or height ({exc}); fix "
                                        "the file.") from exc
            shapes = [(child.tag, dict(child.attrib)) for child in element]
            element.clear()
            origin = f"'{self.path.name}' image '{name}'"
            yield SourceImage(origin, (NameCandidate(name),), size,
                              lambda s, notes, sh=shapes, o=origin: self._read(sh, s, o, notes))

    def _read(self, shapes: list[tuple[str, dict[str, str]]], size: tuple[int, int], origin: str,
              notes: list[str]) -> np.ndarray:
        height, width = size
        keys = np.zeros(size, dtype=key_dtype(len(self.labels) + 1))
        skipped: dict[str, int] = {}
        order = sorted(range(len(shapes)), key=lambda i: _z_order(shapes[i][1]))
        for i in order:
            kind, attrib = shapes[i]
            key = self._key_of.get(attrib.get("label", ""))
            if kind not in REGION_SHAPES:
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            if key is None:
                raise AnnotationReadError(f"A {kind} of {origin} has the label '{attrib.get('label')}', which the "
                                          "file's <meta> does not list; the image was not imported.")
            try:
                if kind == "polygon":
                    points = [float(v) for pair in attrib["points"].split(";") for v in pair.split(",")]
                    paint(keys, edge_polygons_mask([points], height, width), key)
                elif kind == "box":
                    x0, y0, x1, y1 = (float(attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
                    paint(keys, edge_polygons_mask([[x0, y0, x1, y0, x1, y1, x0, y1]], height, width), key)
                else:
                    paint(keys, _mask(attrib, height, width), key)
            except (KeyError, ValueError) as exc:
                raise AnnotationReadError(f"A {kind} of {origin} cannot be read ({exc}); the image was not "
                                          "imported.") from exc
        notes += [f"{count} {kind} shape{'s' if count > 1 else ''} left out" for kind, count in skipped.items()]
        return keys


def _z_order(attrib: dict[str, str]) -> int:
    try:
        return int(attrib.get("z_order", 0))
    except ValueError:
        return 0


def _mask(attrib: dict[str, str], height: int, width: int):
    """CVAT's mask: run lengths over its box, row by row, starting with a run of unset pixels."""
    left, top, box_w, box_h = (int(float(attrib[k])) for k in ("left", "top", "width", "height"))
    counts = np.asarray([int(c) for c in attrib["rle"].split(",") if c.strip()], dtype=np.int64)
    if counts.sum() != box_w * box_h:
        raise ValueError(f"its run lengths cover {int(counts.sum())} pixels, not its {box_w}×{box_h} box")
    bitmap = np.repeat(np.arange(counts.size) % 2 == 1, counts).reshape(box_h, box_w)
    x0, y0 = max(0, left), max(0, top)
    bitmap = bitmap[y0 - top : height - top, x0 - left : width - left]
    if bitmap.size == 0:
        return None
    return (x0, y0, x0 + bitmap.shape[1], y0 + bitmap.shape[0]), bitmap

"""Folders of PNG label maps: ours (``masks/`` + ``labels.txt``/``labels.json``) and Pascal VOC / CVAT / Datumaro
(``SegmentationClass/`` + ``labelmap.txt``).

Pixel values are label indices (palette or grayscale PNGs): 0 is background, 255 "ignore" (VOC's void), and index i
is line i of ``labels.txt`` / ``labelmap.txt`` or entry i of ``labels.json``. Colour PNGs (RGB) are read through
the label colours instead (``labels.json``'s or ``labelmap.txt``'s, VOC's void colour for 255); a colour that no
label has makes that image fail with a sentence. A VOC folder without ``labelmap.txt`` uses Pascal VOC's own 21
classes and colour map, as the VOC devkit defines them. An image's name is its mask's path below the masks folder
without ``.png``: the exporters name masks after the image (``a.png`` for ``a.jpg``, ``a.jpg.png`` when two photos
share a stem).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ...palette import hex_to_color
from ..labels import EXPORT_IGNORE
from .source import (BACKGROUND_ROLE, IGNORE_ROLE, AnnotationReadError, Color, ImportSource, ImportSourceError,
                     NameCandidate, SourceImage, SourceLabel, files_under, stem_of)

VOID_COLOR: Color = (224, 224, 192)  # Pascal VOC's colour of 255
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def voc_colormap(n: int) -> list[Color]:
    """Pascal VOC's colour of index i: the bits of i spread over the high bits of R, G and B."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


class LabelMapSource(ImportSource):
    """PNG label maps below ``masks_dir``; ``labels`` keyed by pixel index (0 background and 255 ignore included)."""

    def __init__(self, path: Path, masks_dir: Path) -> None:
        super().__init__(path)
        self.masks_dir = masks_dir
        if not masks_dir.is_dir():
            raise ImportSourceError(f"'{masks_dir}' is not a folder of PNG label maps; choose the folder that holds "
                                    "it.")
        self._files = files_under(masks_dir, ".png")

    def count(self) -> int:
        return len(self._files)

    def _finish_labels(self, labels: dict[int, SourceLabel]) -> None:
        """Index 0 is background and 255 ignore whatever they are called; keys are the pixel indices."""
        labels.setdefault(0, SourceLabel(0, "background"))
        labels[0] = SourceLabel(0, labels[0].name, labels[0].color, BACKGROUND_ROLE)
        ignore = labels.get(EXPORT_IGNORE, SourceLabel(EXPORT_IGNORE, "ignore", VOID_COLOR))
        labels[EXPORT_IGNORE] = SourceLabel(EXPORT_IGNORE, ignore.name, ignore.color, IGNORE_ROLE)
        self.labels = [labels[k] for k in sorted(labels)]
        self._known = np.zeros(256, dtype=bool)
        self._known[[label.key for label in self.labels]] = True
        self._by_color = {label.color: label.key for label in self.labels if label.color is not None}

    def images(self) -> Iterator[SourceImage]:
        for relpath in self._files:
            path = self.masks_dir / relpath
            name = stem_of(relpath, ".png")
            origin = f"'{path}'"
            try:
                with Image.open(path) as im:
                    width, height = im.size
            except (OSError, SyntaxError, ValueError) as exc:
                yield SourceImage(origin, (NameCandidate(name, stem=True),), None, _failing(origin, exc))
                continue
            yield SourceImage(origin, (NameCandidate(name, stem=True),), (height, width),
                              lambda _size, _notes, p=path, o=origin: self._read(p, o))

    def _read(self, path: Path, origin: str) -> np.ndarray:
        try:
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("RGB", "RGBA"):
                    keys = self._from_colors(np.asarray(im.convert("RGB")), origin)
                elif mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
                    values = np.asarray(im if mode != "1" else im.convert("L"))
                    if values.size and (int(values.max()) > 255 or int(values.min()) < 0):
                        raise AnnotationReadError(f"{origin} holds the value {int(values.max())}; label maps hold "
                                                  "0..255, so it was not imported.")
                    keys = values.astype(np.uint8)
                else:
                    raise AnnotationReadError(f"{origin} is a {mode} image; label maps are palette, grayscale or RGB "
                                              "PNGs, so it was not imported.")
        except (OSError, SyntaxError, ValueError) as exc:
            raise AnnotationReadError(f"{origin} cannot be read ({exc}); it was not imported.") from exc
        unknown = ~self._known[keys]
        if unknown.any():
            value = int(keys[unknown].flat[0])
            raise AnnotationReadError(f"{origin} has pixels of value {value}, which no label of the source's label "
                                      "list names; add it there, or fix the mask.")
        return keys

    def _from_colors(self, rgb: np.ndarray, origin: str) -> np.ndarray:
        packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
        colors, inverse = np.unique(packed, return_inverse=True)
        lut = np.zeros(colors.size, dtype=np.uint8)
        for i, c in enumerate(colors.tolist()):
            color = (c >> 16, (c >> 8) & 255, c & 255)
            if color not in self._by_color:
                raise AnnotationReadError(f"{origin} has pixels of colour {color}, which no label of the source's "
                                          "label list has; add it there, or fix the mask.")
            lut[i] = self._by_color[color]
        return lut[inverse.reshape(packed.shape)]


def _failing(origin: str, exc: BaseException):
    def read(size, notes):
        raise AnnotationReadError(f"{origin} cannot be read ({exc}); it was not imported.")
    return read


class MasksSource(LabelMapSource):
    """Our PNG export: ``FOLDER/masks/**.png`` with ``labels.json`` (names, colours) or ``labels.txt`` (names)."""

    format = "png"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, folder / "masks")
        self._finish_labels(read_labels_file(folder))


def read_labels_file(folder: Path) -> dict[int, SourceLabel]:
    """Index → label from ``labels.json`` ({index: {name, color}}) or else ``labels.txt`` (line i names index i)."""
    js, txt = folder / "labels.json", folder / "labels.txt"
    if js.is_file():
        try:
            table = json.loads(js.read_text(encoding="utf-8"))
            labels = {}
            for index, entry in table.items():
                entry = entry if isinstance(entry, dict) else {"name": entry}
                color = entry.get("color")
                labels[int(index)] = SourceLabel(int(index), str(entry["name"]),
                                                 hex_to_color(color) if isinstance(color, str) else None)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ImportSourceError(f"'{js}' is not a label list of this app ({exc}); fix it, or delete it to use "
                                    "labels.txt.") from exc
    elif txt.is_file():
        lines = txt.read_text(encoding="utf-8").splitlines()
        labels = {i: SourceLabel(i, line.strip()) for i, line in enumerate(lines) if line.strip()}
    else:
        raise ImportSourceError(f"'{folder}' has masks/ but neither labels.json nor labels.txt to name its pixel "
                                "values; add one (line i of labels.txt names value i).")
    bad = [i for i in labels if not 0 <= i <= 255]
    if bad:
        raise ImportSourceError(f"The label list in '{folder}' names value {bad[0]}; PNG label maps hold 0..255.")
    return labels


class VocSource(LabelMapSource):
    """Pascal VOC segmentation: ``FOLDER/SegmentationClass/**.png`` and ``labelmap.txt`` (``name:r,g,b:parts:actions``
    per line, line i naming index i)."""

    format = "voc"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, folder / "SegmentationClass")
        self._finish_labels(read_labelmap(folder / "labelmap.txt"))


def read_labelmap(path: Path) -> dict[int, SourceLabel]:
    """CVAT's ``labelmap.txt``: index = line number among the label lines; the void colour named ``ignored...`` is
    the ignore entry (255). Without the file, Pascal VOC's 21 classes."""
    if not path.is_file():
        colors = voc_colormap(len(VOC_CLASSES))
        return {i: SourceLabel(i, name, colors[i]) for i, name in enumerate(VOC_CLASSES)}
    labels: dict[int, SourceLabel] = {}
    index = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        color_text = rest.split(":", 1)[0].strip()
        try:
            color = tuple(int(c) for c in color_text.split(",")) if color_text else None
            if color is not None and (len(color) != 3 or not all(0 <= c <= 255 for c in color)):
                raise ValueError(color_text)
        except ValueError:
            raise ImportSourceError(f"Line {number} of '{path}' has the colour '{color_text}'; labelmap.txt lines are "
                                    "'name:r,g,b::'.") from None
        if color == VOID_COLOR and name.strip().lower().startswith("ignored"):
            labels[EXPORT_IGNORE] = SourceLabel(EXPORT_IGNORE, name.strip(), VOID_COLOR, IGNORE_ROLE)
            continue
        if index == EXPORT_IGNORE:
            raise ImportSourceError(f"'{path}' names more than 255 labels; PNG label maps hold 0..254 and 255 ignore.")
        labels[index] = SourceLabel(index, name.strip(), color)  # type: ignore[arg-type]
        index += 1
    return labels

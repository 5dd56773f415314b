"""Pascal VOC segmentation, as CVAT ("Segmentation mask 1.1" / "PASCAL VOC 1.1") and mmsegmentation read it.

``voc/SegmentationClass/<export name>.png``: 8-bit palette PNGs whose pixel values are the export indices (0
background, 1..N labels, 255 ignore: mmseg's ``ignore_index``), ``voc/ImageSets/Segmentation/default.txt``: one
image name per line, and ``voc/labelmap.txt`` in CVAT's format (``# label:color_rgb:parts:actions``). Readers that
take the pixel values (mmseg, PIL) get the indices; readers that map colours back to labels through
``labelmap.txt`` (CVAT and Datumaro) need every colour to be distinct, so a label whose colour repeats another's (or
black, or the ignore colour) is nudged to a free colour, in the palette and the label map alike. Ignored pixels get
VOC's own "void" colour (224, 224, 192); when any were exported, ``labelmap.txt`` declares them as a label named
``ignored`` (Datumaro's name for VOC's 255), which CVAT then expects in the task. ``:`` cannot appear in a label map
name and becomes ``_``. The list and the label map are written last, so a cancelled export has neither.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..export import IndexPngWriter
from ..labels import EXPORT_IGNORE
from ..parts import BACKGROUND_COLOR, BACKGROUND_NAME, ExportLabel
from ..storage import StreamedTextFile, atomic_write_bytes
from .image import ExportImage

logger = logging.getLogger(__name__)

VOID_COLOR = (224, 224, 192)  # Pascal VOC's colour for label 255
IGNORE_LABELMAP_NAME = "ignored"


def distinct_colors(labels: Sequence[ExportLabel]) -> dict[int, tuple[int, int, int]]:
    """Each label's colour, nudged where it repeats an earlier one, black or the void colour."""
    used = {tuple(BACKGROUND_COLOR), VOID_COLOR}
    colors = {}
    for label in labels:
        r, g, b = label.color
        step = 0
        while (r, g, b) in used:
            step += 1
            r, g, b = ((c + k * step) % 256 for c, k in zip(label.color, (1, 7, 13)))
        if step:
            logger.info("VOC export: label '%s' gets colour %s; its own is taken", label.name, (r, g, b))
        used.add((r, g, b))
        colors[label.index] = (r, g, b)
    return colors


class VocWriter:
    def __init__(self, out_dir: str | os.PathLike, labels: Sequence[ExportLabel]) -> None:
        self.root = Path(out_dir) / "voc"
        self.labels = list(labels)
        self.colors = distinct_colors(self.labels)
        palette = [0] * 768
        palette[0:3] = BACKGROUND_COLOR
        for index, color in self.colors.items():
            palette[3 * index : 3 * index + 3] = color
        palette[3 * EXPORT_IGNORE : 3 * EXPORT_IGNORE + 3] = VOID_COLOR
        self.masks = IndexPngWriter(self.root, palette, folder="SegmentationClass")
        self.saw_ignore = False
        self._list = StreamedTextFile(self.root / "ImageSets" / "Segmentation" / "default.txt")

    def add(self, image: ExportImage) -> list[Path]:
        path = self.masks.add_indices(image.relpath, image.indices, name=f"{image.stem}.png")
        self.saw_ignore = self.saw_ignore or bool(np.any(image.indices == EXPORT_IGNORE))
        self._list.write(f"{image.stem}\n")
        return [path]

    def close(self) -> list[Path]:
        taken = {label.name for label in self.labels}
        lines = ["# label:color_rgb:parts:actions", f"{BACKGROUND_NAME}:0,0,0::"]
        lines += [f"{label.name.replace(':', '_')}:{','.join(map(str, self.colors[label.index]))}::"
                  for label in self.labels]
        if self.saw_ignore:
            name = IGNORE_LABELMAP_NAME if IGNORE_LABELMAP_NAME not in taken else f"{IGNORE_LABELMAP_NAME}_pixels"
            lines.append(f"{name}:{','.join(map(str, VOID_COLOR))}::")
        labelmap = atomic_write_bytes(self.root / "labelmap.txt", ("\n".join(lines) + "\n").encode("utf-8"))
        return [self._list.close(), labelmap]

    def abort(self) -> None:
        self._list.abort()

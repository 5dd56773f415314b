"""YOLO segmentation in the Ultralytics layout: ``yolo/images/``, ``yolo/labels/*.txt``, ``yolo/data.yaml``.

Each label file has one line per connected part instance: ``class x1 y1 x2 y2 ...`` with the class 0-based (the
export labels in order, so export index i is class i - 1) and the polygon through the centres of the instance's
boundary pixels (:attr:`~.polygons.PartPolygon.centres`), normalised by the image size: pixel (x, y) is written as
((x + 0.5) / width, (y + 0.5) / height), the position of its centre. Ultralytics scales these back, truncates to
integers and fills with OpenCV's ``fillPoly`` (``ultralytics.data.utils.polygon2mask``), which gives back exactly the
exported pixels; writing the centre (not the pixel's corner) keeps that true after float rounding. Holes are kept by
a zero-width cut (YOLO has one polygon per instance); ignored pixels (255) and images' background get no line (an
image without parts gets an empty file, which Ultralytics reads as a background image).

``images/`` holds a symbolic link to each photo (absolute target), or a copy where the OS refuses links (Windows
without developer mode), so Ultralytics finds ``labels/`` beside ``images/`` (photos in formats it cannot read, GIF
or PPM/PGM, are linked too, and Ultralytics reports them). Files are named after the image's
unique export name, so a.jpg and a.png keep separate labels. ``data.yaml`` names the classes and points train and
val at ``images``; it has no ``path``, so Ultralytics resolves both against the YAML's own folder and the dataset
can be moved or copied to another machine as it is. It is written last, so an export that was cancelled or failed
has none.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from ..parts import ExportLabel
from ..storage import atomic_write_bytes
from .image import ExportImage

logger = logging.getLogger(__name__)


class YoloWriter:
    """Writes ``out_dir/yolo/`` one image at a time; ``close`` writes ``data.yaml``."""

    def __init__(self, out_dir: str | os.PathLike, labels: Sequence[ExportLabel]) -> None:
        self.root = Path(out_dir) / "yolo"
        self.labels = list(labels)
        self.class_of = {label.index: i for i, label in enumerate(self.labels)}
        self.copied = 0  # images copied because a link could not be made

    def add(self, image: ExportImage) -> list[Path]:
        if image.image_path is None:
            raise ValueError(f"The YOLO export needs the photo of '{image.relpath}'; pass the images folder.")
        scale = np.array([image.width, image.height], dtype=np.float64)
        lines = []
        for polygon in image.polygons:
            xy = ((polygon.centres + 0.5) / scale).ravel().tolist()
            lines.append(f"{self.class_of[polygon.index]} " + " ".join(["%.6f"] * len(xy)) % tuple(xy))
        label_path = self.root / "labels" / f"{image.stem}.txt"
        atomic_write_bytes(label_path, ("\n".join(lines) + "\n" if lines else "").encode("ascii"))
        suffix = PurePosixPath(image.relpath).suffix
        link = self.root / "images" / f"{image.stem}{suffix}"
        self._link(Path(image.image_path), link)
        return [label_path, link]

    def _link(self, target: Path, link: Path) -> None:
        """Replace ``link`` with a symbolic link to ``target`` (a copy where links are refused), atomically."""
        link.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{link.name}.", suffix=".tmp", dir=link.parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            try:
                os.symlink(target.resolve(), tmp)
            except (OSError, NotImplementedError):
                shutil.copyfile(target, tmp)
                if not self.copied:
                    logger.info("Symbolic links are not allowed here; copying the photos into %s", link.parent)
                self.copied += 1
            os.replace(tmp, link)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def close(self) -> list[Path]:
        names = "\n".join(f"  {i}: {json.dumps(label.name, ensure_ascii=False)}" for i, label in enumerate(self.labels))
        text = ("# YOLO segmentation dataset exported by MPAE Annotator. No 'path': Ultralytics resolves train\n"
                "# and val against this file's folder, so the folder can be moved as it is.\n"
                f"train: images\nval: images\nnc: {len(self.labels)}\nnames:\n{names}\n")
        return [atomic_write_bytes(self.root / "data.yaml", text.encode("utf-8"))]

    def abort(self) -> None:
        """Nothing to undo: label files and links written so far stay, ``data.yaml`` is not written."""

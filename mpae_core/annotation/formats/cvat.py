"""CVAT for images 1.1 XML: ``cvat/annotations.xml``, importable into a CVAT task as "CVAT 1.1".

The layout of CVAT's documented XML annotation format, version 1.1, annotation (images) mode: ``<annotations>``
with ``<version>1.1</version>``, ``<meta><task>`` naming the labels (``name``, ``color``, ``type`` polygon), then one
``<image id name width height>`` per image (``name`` = the image's path relative to the image folder, which CVAT
matches against the task's files) holding one ``<polygon label occluded points z_order>`` per connected part
instance. CVAT's canvas puts pixel (x, y) on the square [x, x+1] x [y, y+1], so the points are the pixel-edge
outline (:attr:`~.polygons.PartPolygon.edges`), which covers exactly the exported pixels; holes are kept by a
zero-width cut. CVAT has no "ignore": ignored pixels (255) get no shape, like the background. The file is streamed
to a temporary file and appears only when the export completes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape, quoteattr

from ...palette import color_to_hex
from ..parts import ExportLabel
from ..storage import StreamedTextFile
from . import export_timestamp
from .image import ExportImage

CVAT_VERSION = "1.1"


class CvatWriter:
    def __init__(self, out_dir: str | os.PathLike, labels: Sequence[ExportLabel], *,
                 task_name: str = "MPAE Annotator export") -> None:
        self.path = Path(out_dir) / "cvat" / "annotations.xml"
        self.name_of = {label.index: label.name for label in labels}
        self.count = 0
        self._file = StreamedTextFile(self.path)
        label_xml = "".join(
            f"        <label>\n          <name>{escape(label.name)}</name>\n"
            f"          <color>{color_to_hex(label.color)}</color>\n          <type>polygon</type>\n"
            "          <attributes>\n          </attributes>\n        </label>\n" for label in labels)
        self._file.write(
            '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n'
            f"  <version>{CVAT_VERSION}</version>\n  <meta>\n    <task>\n      <name>{escape(task_name)}</name>\n"
            "      <mode>annotation</mode>\n      <overlap>0</overlap>\n      <flipped>False</flipped>\n"
            f"      <labels>\n{label_xml}      </labels>\n    </task>\n"
            f"    <dumped>{export_timestamp('%Y-%m-%d %H:%M:%S')}</dumped>\n  </meta>\n")

    def add(self, image: ExportImage) -> list[Path]:
        parts = []
        for polygon in image.polygons:
            flat = polygon.edges.ravel().tolist()
            points = ";".join(["%.2f,%.2f"] * (len(flat) // 2)) % tuple(flat)
            parts.append(f"    <polygon label={quoteattr(self.name_of[polygon.index])} source=\"auto\" "
                         f"occluded=\"0\" points=\"{points}\" z_order=\"0\">\n    </polygon>\n")
        self._file.write(f"  <image id=\"{self.count}\" name={quoteattr(image.relpath)} width=\"{image.width}\" "
                         f"height=\"{image.height}\">\n{''.join(parts)}  </image>\n")
        self.count += 1
        return []

    def close(self) -> list[Path]:
        self._file.write("</annotations>\n")
        return [self._file.close()]

    def abort(self) -> None:
        self._file.abort()

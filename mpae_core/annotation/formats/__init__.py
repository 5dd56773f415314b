"""Export formats besides the palette PNGs: COCO polygons, YOLO segmentation, labelme, CVAT for images, Pascal VOC.

One small module per format; each writer takes :class:`~.image.ExportImage` objects (an export-index map:
0 background, 1..N labels, 255 ignore, plus where the photo is) one at a time and keeps no more than one image in
memory, like the PNG and COCO writers of :mod:`mpae_core.annotation.export`, which drives them all. Polygons come
from :mod:`.polygons` (pixel-exact outlines, traced once per image and shared by every polygon format).
"""
from __future__ import annotations

import os
import time

#: Every export format, in the order the app and ``mpae-annotate batch --format`` list them.
EXPORT_FORMATS = ("png", "coco", "yolo", "labelme", "cvat", "voc")
#: How COCO masks are written: compressed RLE (exact, the default) or polygons (what most trainers read).
COCO_STYLES = ("rle", "polygons")


def parse_export_formats(formats: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'png,yolo' or a sequence → the chosen formats in canonical order; ValueError names any unknown one."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = {str(n).strip().lower() for n in names if str(n).strip()}
    unknown = chosen - set(EXPORT_FORMATS)
    if unknown or not chosen:
        raise ValueError(f"Unknown export format(s) {sorted(unknown) or 'none'}; choose from "
                         f"{', '.join(EXPORT_FORMATS)} (comma-separated).")
    return tuple(f for f in EXPORT_FORMATS if f in chosen)


def check_coco_style(style: str) -> str:
    style = str(style).strip().lower()
    if style not in COCO_STYLES:
        raise ValueError(f"Unknown COCO style '{style}'; choose 'rle' (exact masks) or 'polygons'.")
    return style


def export_timestamp(fmt: str) -> str:
    """The time an export is stamped with (COCO's ``date_created``, CVAT's ``dumped``): now, or ``SOURCE_DATE_EPOCH``
    (seconds, UTC) when that is set, the reproducible-builds convention, so two exports of the same annotations are
    the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return time.strftime(fmt, time.gmtime(int(epoch)))
    return time.strftime(fmt)

"""Polygons back to pixels, in the two conventions the exporters trace them with (:mod:`..formats.polygons`).

* *Pixel edges* (COCO, CVAT): pixel (x, y) is the square [x, x+1] x [y, y+1] and is inside when its centre is;
  pycocotools rasterises them (as COCO's and CVAT's own tools do), so a polygon traced along the pixel edges gives
  back exactly its pixels, holes joined by zero-width cuts included.
* *Pixel centres* (labelme, YOLO): pixel (x, y) is the point (x, y). labelme shapes are drawn with PIL, filled and
  outlined, as labelme's ``shapes_to_label`` draws them; YOLO polygons with OpenCV's ``fillPoly`` on whole-pixel
  points, as Ultralytics' ``polygon2mask`` does. Both give back exactly a part traced through the centres of its
  boundary pixels, one-pixel-wide parts included; for other polygons (self-intersecting ones, say) they differ,
  so each format is drawn by its own tool's rule (the tests compare with labelme and Ultralytics themselves).

Each shape is drawn on a canvas the size of its bounding box (clipped to the image), not on the whole image: an
image with hundreds of instances costs their areas, not hundreds of full-size masks. The canvas starts at whole
pixels, so moving the points onto it changes no pixel; the tests compare it with whole-image drawing.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from ...opencv import import_opencv

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), inside the image


def _box(xs: np.ndarray, ys: np.ndarray, height: int, width: int, margin: int) -> Box | None:
    x0 = max(0, math.floor(float(xs.min())) - margin)
    y0 = max(0, math.floor(float(ys.min())) - margin)
    x1 = min(width, math.ceil(float(xs.max())) + 1 + margin)
    y1 = min(height, math.ceil(float(ys.max())) + 1 + margin)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def edge_polygons_mask(polygons: Sequence[Sequence[float]], height: int, width: int
                       ) -> tuple[Box, np.ndarray] | None:
    """The union of pixel-edge polygons (flat ``[x1, y1, x2, y2, ...]`` lists, COCO's layout) as (box, bool mask of
    the box), or None when they cover no pixel. Polygons of fewer than three points cover nothing and are skipped
    (pycocotools would read a four-number list as a box)."""
    arrays = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not arrays:
        return None
    points = np.concatenate(arrays)
    if not np.isfinite(points).all():
        raise ValueError("a polygon has coordinates that are not finite numbers")
    box = _box(points[:, 0], points[:, 1], height, width, margin=0)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    shifted = [(a - (x0, y0)).ravel().tolist() for a in arrays]
    rles = mask_utils.frPyObjects(shifted, y1 - y0, x1 - x0)
    mask = mask_utils.decode(mask_utils.merge(rles) if len(rles) > 1 else rles[0]).astype(bool)
    return box, mask


def rle_mask(segmentation: dict, height: int, width: int) -> np.ndarray:
    """A COCO RLE (compressed string or uncompressed counts) as a bool mask of the whole image."""
    size = [int(v) for v in segmentation.get("size", (height, width))]
    if size != [height, width]:
        raise ValueError(f"its RLE mask is {size[1]}×{size[0]}, not {width}×{height}")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def centre_polygon_mask(points: Sequence[Sequence[float]], height: int, width: int, *, shape: str = "polygon"
                        ) -> tuple[Box, np.ndarray] | None:
    """One pixel-centre shape as (box, bool mask of the box), drawn like labelme's ``shape_to_mask``: ``polygon``
    (fill and outline), ``rectangle`` (two corners), ``circle`` (centre and a point on it); None when it covers no
    pixel of the image."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if xy.size == 0:
        return None
    if not np.isfinite(xy).all():
        raise ValueError("a shape has coordinates that are not finite numbers")
    if shape == "circle":
        (cx, cy), (px, py) = xy[:2]
        r = math.hypot(cx - px, cy - py)
        xy = np.array([[cx - r, cy - r], [cx + r, cy + r]])
    box = _box(xy[:, 0], xy[:, 1], height, width, margin=1)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    local = [tuple(p) for p in (xy - (x0, y0)).tolist()]
    if shape == "polygon":
        draw.polygon(local, fill=1, outline=1)
    elif shape in ("rectangle", "circle"):
        (ax, ay), (bx, by) = local[:2]
        corners = [min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)]
        (draw.rectangle if shape == "rectangle" else draw.ellipse)(corners, fill=1, outline=1)
    else:
        raise ValueError(f"shapes of type '{shape}' cannot be drawn")
    return box, np.asarray(canvas, dtype=bool)


def fill_polygon_mask(points: np.ndarray, height: int, width: int) -> tuple[Box, np.ndarray] | None:
    """A polygon of whole-pixel points, filled by OpenCV's ``fillPoly`` (Ultralytics' rule), as (box, bool mask)."""
    xy = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if xy.size == 0:
        return None
    box = _box(xy[:, 0], xy[:, 1], height, width, margin=1)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    import_opencv().fillPoly(canvas, [(xy - (x0, y0)).astype(np.int32)], 1)
    return box, canvas.astype(bool)


def paint(keys: np.ndarray, drawn: tuple[Box, np.ndarray] | None, key: int) -> None:
    """Set the drawn pixels of ``keys`` to ``key`` (later shapes cover earlier ones, as in labelme and CVAT)."""
    if drawn is None:
        return
    (x0, y0, x1, y1), mask = drawn
    keys[y0:y1, x0:x1][mask] = key

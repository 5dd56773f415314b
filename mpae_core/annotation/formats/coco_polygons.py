"""COCO annotations with polygon segmentations (``--coco-style polygons``), one per (image, present label).

Same granularity as the RLE style (:func:`mpae_core.annotation.export.coco_annotations_for`): one annotation per
label present in an image, its ``segmentation`` a list with one polygon per connected instance. The polygons are the
pixel-edge outlines of :mod:`.polygons`, so ``pycocotools`` (``frPyObjects`` → ``decode``, ``annToMask``) gives
back exactly the exported pixels. Holes: COCO polygons cannot have any, and pycocotools merges the polygons of an
annotation by union, so a hole drawn as a separate polygon would be filled; each hole is instead joined to its
instance's outline by a zero-width cut, which pycocotools (and detectron2, mmdetection, which rasterise with it)
leave open. ``area`` is the pixel count (equal to the polygons' area) and ``bbox`` the pixels' box, as in the RLE
style; ignored pixels (255) get no annotation and decode as background.
"""
from __future__ import annotations

from typing import Any, Sequence

from .polygons import PartPolygon


def coco_polygon_annotations(polygons: Sequence[PartPolygon]) -> list[dict[str, Any]]:
    """Id-less COCO annotations (polygons, area, bbox) from an image's labelled instances."""
    by_label: dict[int, list[PartPolygon]] = {}
    for polygon in polygons:
        by_label.setdefault(polygon.index, []).append(polygon)
    annotations = []
    for index in sorted(by_label):
        parts = by_label[index]
        x0 = min(p.bbox[0] for p in parts)
        y0 = min(p.bbox[1] for p in parts)
        x1 = max(p.bbox[0] + p.bbox[2] for p in parts)
        y1 = max(p.bbox[1] + p.bbox[3] for p in parts)
        annotations.append({
            "category_id": index,
            "segmentation": [p.edges.ravel().tolist() for p in parts],
            "area": sum(p.area for p in parts),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "iscrowd": 0,
        })
    return annotations

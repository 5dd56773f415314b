#!/usr/bin/env python
"""Export speed and fidelity of every export format on generated part label maps.

For each format: images/s of ``export_indices`` writing that format alone (one process), and the per-part IoU after
reading the files back and rasterising them with the format's consumer: pycocotools for COCO (RLE and polygons) and
for CVAT's polygons (as Datumaro does), labelme's ``shapes_to_label``, Ultralytics' ``polygon2mask``, PIL for the PNG
masks. IoU is per (image, label) over parts of at least 64 pixels; "small" gives the minimum over smaller parts and
"dropped" counts parts with pixels that came back empty. Needs the ``formats-check`` extra for the labelme and
YOLO rows (otherwise they show "n/a" for IoU).

    python benchmarks/bench_export_formats.py --images 200 --markdown
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)

from mpae_core.annotation.export import export_indices, unique_mask_relpaths  # noqa: E402
from mpae_core.annotation.labels import EXPORT_IGNORE  # noqa: E402
from mpae_core.annotation.parts import ExportLabel  # noqa: E402
from mpae_core.palette import default_part_color  # noqa: E402

MIN_PIXELS = 64


def make_maps(count: int, height: int, width: int, parts: int, seed: int) -> list[np.ndarray]:
    """Part-like maps: a blob-shaped object split into smooth parts (argmax of upsampled random fields, as a
    model's label map is), plus small islands, holes, 1-2 px strokes and a few ignored strokes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    maps = []
    for _ in range(count):
        fields = []
        for _ in range(parts + 1):
            low = Image.fromarray(rng.standard_normal((6, 8)).astype(np.float32), mode="F")
            fields.append(np.asarray(low.resize((width, height), Image.BICUBIC)))
        labels = np.argmax(np.stack(fields), axis=0).astype(np.uint8)  # 0..parts
        cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
        ry, rx = rng.uniform(0.25, 0.45) * height, rng.uniform(0.25, 0.45) * width
        outside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 > 1 + 0.3 * fields[0]
        labels[outside] = 0
        for _ in range(rng.integers(3, 12)):  # islands and holes of a few to a few hundred pixels
            y, x, r = rng.integers(0, height), rng.integers(0, width), rng.uniform(0.5, 8)
            labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = rng.integers(0, parts + 1)
        for _ in range(rng.integers(1, 4)):  # thin strokes: 1-2 px wide parts
            y = int(rng.integers(0, height - 2))
            x0, x1 = sorted(rng.integers(0, width, 2))
            labels[y : y + int(rng.integers(1, 3)), x0:x1] = rng.integers(1, parts + 1)
        y, x = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 40))
        labels[y : y + 3, x : x + 40] = EXPORT_IGNORE
        maps.append(labels)
    return maps


# ----- reading each format back with its consumer ------------------------------------------------------------------
def read_png(out: Path, stems: list[str], folder: str) -> list[np.ndarray]:
    result = []
    for stem in stems:
        with Image.open(out / folder / f"{stem}.png") as im:
            result.append(np.asarray(im))
    return result


def read_coco(out: Path, relpaths: list[str], shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    from pycocotools.coco import COCO

    coco = COCO(str(out / "coco.json"))
    by_name = {image["file_name"]: image["id"] for image in coco.dataset["images"]}
    result = []
    for relpath, shape in zip(relpaths, shapes):
        drawn = np.zeros(shape, np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=by_name[relpath])):
            drawn[coco.annToMask(annotation) > 0] = annotation["category_id"]
        result.append(drawn)
    return result


def read_cvat(out: Path, shapes: list[tuple[int, int]], value: dict[str, int]) -> list[np.ndarray]:
    from pycocotools import mask as mask_utils

    root = ET.parse(out / "cvat" / "annotations.xml").getroot()
    result = []
    for image, shape in zip(root.findall("image"), shapes):
        drawn = np.zeros(shape, np.uint8)
        for polygon in image.findall("polygon"):
            flat = [float(v) for p in polygon.get("points").split(";") for v in p.split(",")]
            rle = mask_utils.frPyObjects([flat], shape[0], shape[1])[0]
            drawn[mask_utils.decode(rle) > 0] = value[polygon.get("label")]
        result.append(drawn)
    return result


def read_labelme(out: Path, stems: list[str], value: dict[str, int]) -> list[np.ndarray]:
    from labelme.utils import shapes_to_label

    result = []
    for stem in stems:
        document = json.loads((out / "labelme" / f"{stem}.json").read_text(encoding="utf-8"))
        shape = (document["imageHeight"], document["imageWidth"])
        cls, _ = shapes_to_label(shape, document["shapes"], value | {"__ignore__": EXPORT_IGNORE})
        result.append(cls.astype(np.uint8))
    return result


def read_yolo(out: Path, stems: list[str], shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    from ultralytics.data.utils import polygon2mask

    result = []
    for stem, (height, width) in zip(stems, shapes):
        drawn = np.zeros((height, width), np.uint8)
        for line in (out / "yolo" / "labels" / f"{stem}.txt").read_text().splitlines():
            values = line.split()
            xy = np.array(values[1:], dtype=np.float32).reshape(-1, 2) * np.array([width, height], np.float32)
            drawn[polygon2mask((height, width), [xy.reshape(-1)], color=1).astype(bool)] = int(values[0]) + 1
        result.append(drawn)
    return result


def part_ious(truth: np.ndarray, drawn: np.ndarray, with_ignore: bool) -> tuple[list[float], list[float], int]:
    """IoU of every label present in ``truth`` (big parts, small parts) and how many came back empty."""
    truth = truth.astype(np.int64)
    if not with_ignore:
        truth = np.where(truth == EXPORT_IGNORE, 0, truth)
    pairs = np.bincount((truth * 256 + drawn).ravel(), minlength=256 * 256).reshape(256, 256)
    big, small, dropped = [], [], 0
    for label in np.flatnonzero(pairs.sum(axis=1)):
        if label == 0:
            continue
        inter = pairs[label, label]
        union = pairs[label].sum() + pairs[:, label].sum() - inter
        (big if pairs[label].sum() >= MIN_PIXELS else small).append(inter / union)
        dropped += int(inter == 0)
    return big, small, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    maps = make_maps(args.images, args.height, args.width, args.parts, args.seed)
    labels = [ExportLabel(k + 1, f"part_{k + 1:02d}", default_part_color(k)) for k in range(args.parts)]
    value = {label.name: label.index for label in labels}
    relpaths = [f"img{i:04d}.jpg" for i in range(len(maps))]
    names = unique_mask_relpaths(relpaths)
    stems = [names[r][: -len(".png")] for r in relpaths]
    shapes = [m.shape for m in maps]
    runs = [  # (row name, format, coco style, reader or None, reader needs, ignore kept)
        ("png", "png", "rle", lambda out: read_png(out, stems, "masks"), None, True),
        ("coco (rle)", "coco", "rle", lambda out: read_coco(out, relpaths, shapes), None, False),
        ("coco (polygons)", "coco", "polygons", lambda out: read_coco(out, relpaths, shapes), None, False),
        ("yolo", "yolo", "rle", lambda out: read_yolo(out, stems, shapes), "ultralytics", False),
        ("labelme", "labelme", "rle", lambda out: read_labelme(out, stems, value), "labelme", True),
        ("cvat", "cvat", "rle", lambda out: read_cvat(out, shapes, value), None, False),
        ("voc", "voc", "rle", lambda out: read_png(out, stems, "voc/SegmentationClass"), None, True),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for relpath, indices in zip(relpaths, maps):
            Image.new("RGB", (indices.shape[1], indices.shape[0]), (128, 128, 128)).save(photos / relpath)
        for name, fmt, style, reader, needs, with_ignore in runs:
            out = Path(tmp) / name.replace(" ", "_").replace("(", "").replace(")", "")
            start = time.perf_counter()
            export_indices(zip(relpaths, maps), labels, out, formats=(fmt,), coco_style=style, images_dir=photos,
                           mask_names=names)
            seconds = time.perf_counter() - start
            if needs is not None and importlib.util.find_spec(needs) is None:
                rows.append([name, f"{len(maps) / seconds:.1f}", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"])
                continue
            big, small, dropped = [], [], 0
            for truth, drawn in zip(maps, reader(out)):
                b, s, d = part_ious(truth, drawn, with_ignore)
                big += b
                small += s
                dropped += d
            big_a = np.array(big)
            rows.append([name, f"{len(maps) / seconds:.1f}", str(big_a.size), f"{big_a.min():.4f}",
                         f"{np.percentile(big_a, 1):.4f}", f"{np.median(big_a):.4f}",
                         f"{min(small):.4f}" if small else "-", str(dropped)])
    header = ["format", "images/s", "parts >= 64 px", "IoU min", "IoU p1", "IoU median", "small parts min", "dropped"]
    print(f"{args.images} images of {args.width}x{args.height}, {args.parts} parts; one process")
    print(_table.format_table(header, rows, markdown=args.markdown, text_column=0))


if __name__ == "__main__":
    main()

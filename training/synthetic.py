"""A deterministic synthetic part dataset, written in the PartImageNet-Seg layout plus CUB-style keypoints.

Why: the real benchmarks are large downloads, so tests, the demo and ``bench_synthetic_parts`` need a small data set
whose parts are known exactly and that the real loaders and evaluation read unchanged. Objects of several categories
(bird, car, face, lamp, fish) are built from NAMED part types shared across categories; a part name always means the
same shape type (eye = small disc, leg = thin bar, wing = flat triangle, tail = triangle at the back, body = large
ellipse...), so a part discoverer that finds "eye" in birds should find it in faces and fish too.

Each image gets a random category, pose (rotation, mirror), scale, position, part colours and textures (flat,
stripes, noise), a textured background, parts that are randomly absent and, sometimes, an occluding blob that shows
the background (so its pixels are background in the ground truth). Images are drawn with PIL/numpy; everything
depends only on ``(seed, split, index)`` through a numpy Generator, so the same seed gives byte-identical annotations.

Layout under ``root`` (see ``README_TEXT``): ``images/{train,test}/<name>.JPEG`` (real JPEG, quality 95),
``annotations/{train,test}/{train,test}.json`` (COCO, part categories with ids 0..P-1 like PartImageNet, one
compressed-RLE annotation per visible part instance), ``keypoints/{train,test}.txt`` (one keypoint per part type),
``README.txt`` and ``synthetic.json`` (seed, sizes, generator version). Ground-truth label maps use the part id
0..P-1 and P for background, the label ``training.metrics.partimagenet_gt_mask`` gives unlabelled pixels.
"""
from __future__ import annotations

import functools
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
JPEG_QUALITY = 95
SPLITS = ("train", "test")
MIN_KEYPOINT_PIXELS = 4  # a part type with fewer visible pixels gets v = 0

PART_NAMES: tuple[str, ...] = (
    "head", "body", "wing", "tail", "beak", "eye", "leg", "wheel", "window", "mouth", "shade", "base",
)
PART_IDS = {name: i for i, name in enumerate(PART_NAMES)}
BACKGROUND_LABEL = len(PART_NAMES)

# ---------------------------------------------------------------------------------------------------------------------
# Part shapes in a canonical object frame (x right, y down, object within about [-1.3, 1.3]²). A shape is
# ("ellipse", cx, cy, rx, ry, angle_deg), ("rect", cx, cy, w, h, angle_deg), ("trapezoid", cx, cy, top_w, bottom_w, h)
# or ("poly", ((x, y), ...)). Lists are in drawing order, back to front.

Shape = tuple


@dataclass(frozen=True)
class CategorySpec:
    """An object category: its parts in drawing order and the part that is never dropped."""

    name: str
    parts: tuple[tuple[str, Shape], ...]
    core: str


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("bird", (
        ("tail", ("poly", ((-0.62, -0.05), (-1.25, -0.40), (-1.20, 0.22)))),
        ("leg", ("rect", -0.15, 0.62, 0.09, 0.55, 8.0)),
        ("leg", ("rect", 0.18, 0.62, 0.09, 0.55, -8.0)),
        ("body", ("ellipse", 0.0, 0.0, 0.78, 0.44, -8.0)),
        ("wing", ("poly", ((0.30, -0.05), (-0.60, -0.15), (-0.15, 0.26)))),
        ("head", ("ellipse", 0.78, -0.45, 0.30, 0.30, 0.0)),
        ("beak", ("poly", ((1.02, -0.53), (1.38, -0.42), (1.02, -0.32)))),
        ("eye", ("ellipse", 0.86, -0.52, 0.08, 0.08, 0.0)),
    ), core="body"),
    CategorySpec("car", (
        ("body", ("ellipse", 0.0, 0.0, 1.15, 0.42, 0.0)),
        ("window", ("rect", -0.36, -0.12, 0.40, 0.22, 0.0)),
        ("window", ("rect", 0.24, -0.12, 0.40, 0.22, 0.0)),
        ("wheel", ("ellipse", -0.62, 0.36, 0.26, 0.26, 0.0)),
        ("wheel", ("ellipse", 0.62, 0.36, 0.26, 0.26, 0.0)),
    ), core="body"),
    CategorySpec("face", (
        ("head", ("ellipse", 0.0, 0.0, 0.80, 0.95, 0.0)),
        ("eye", ("ellipse", -0.30, -0.22, 0.12, 0.10, 0.0)),
        ("eye", ("ellipse", 0.30, -0.22, 0.12, 0.10, 0.0)),
        ("mouth", ("ellipse", 0.0, 0.45, 0.32, 0.09, 0.0)),
    ), core="head"),
    CategorySpec("lamp", (
        ("leg", ("rect", 0.0, 0.20, 0.10, 1.30, 0.0)),
        ("base", ("rect", 0.0, 0.92, 0.90, 0.16, 0.0)),
        ("shade", ("trapezoid", 0.0, -0.60, 0.55, 1.25, 0.60)),
    ), core="shade"),
    CategorySpec("fish", (
        ("tail", ("poly", ((-0.70, 0.0), (-1.25, -0.42), (-1.20, 0.42)))),
        ("wing", ("poly", ((-0.30, -0.30), (0.35, -0.32), (-0.25, -0.80)))),
        ("body", ("ellipse", 0.0, 0.0, 0.85, 0.45, 0.0)),
        ("eye", ("ellipse", 0.55, -0.10, 0.08, 0.08, 0.0)),
        ("mouth", ("ellipse", 0.78, 0.14, 0.10, 0.04, 0.0)),
    ), core="body"),
)
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)

README_TEXT = f"""Synthetic part dataset (MPAE Annotator, training.synthetic, generator version {GENERATOR_VERSION})

Images of {len(CATEGORIES)} object categories ({", ".join(CATEGORY_NAMES)}) built from {len(PART_NAMES)} part types
shared across categories. Regenerate with training.synthetic.generate_synthetic_dataset and the seed in synthetic.json.

images/{{train,test}}/<category>_<split>_<index>.JPEG   RGB JPEG, quality {JPEG_QUALITY}
annotations/{{train,test}}/{{train,test}}.json          COCO (PartImageNet-Seg layout):
    categories: the part types, ids 0..{len(PART_NAMES) - 1} (as PartImageNet, ids start at 0):
        {", ".join(f"{i} {n}" for i, n in enumerate(PART_NAMES))}
    images: id, file_name, width, height, plus "category" (object category) and "object_bbox" [x, y, w, h]
    annotations: one per visible part instance, segmentation = compressed RLE of its visible pixels,
        area = visible pixel count, bbox [x, y, w, h], iscrowd 0. Instances never overlap.
    Ground-truth label map: pixel = part id, {BACKGROUND_LABEL} = background (also where an occluder hides the object).
keypoints/{{train,test}}.txt   CUB-style, one line per image:
    <file_name> x1 y1 v1 ... x{len(PART_NAMES)} y{len(PART_NAMES)} v{len(PART_NAMES)}
    (one keypoint per part type, in part id order)
    (x, y) in image pixels, pixel (i, j) covering [i, i+1) x [j, j+1); the keypoint is the centroid of the part's
    largest visible instance, moved to the nearest pixel centre of that instance if the centroid falls outside it.
    v = 1 visible, v = 0 absent or hidden (fewer than {MIN_KEYPOINT_PIXELS} visible pixels; then x = y = 0).
synthetic.json   generator name and version, seed, image counts, image size, part and category names.
"""


# ---------------------------------------------------------------------------------------------------------------------
# Geometry


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 28) -> np.ndarray:
    """An n-gon approximating a rotated ellipse."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    pts = np.stack((rx * np.cos(t), ry * np.sin(t)), axis=1)
    return _rotate(pts, angle) + (cx, cy)


def _rect(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """A rotated rectangle."""
    pts = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
    return _rotate(pts, angle) + (cx, cy)


def _trapezoid(cx: float, cy: float, top_w: float, bottom_w: float, h: float) -> np.ndarray:
    """An upright trapezoid (a lamp shade when the bottom is wider)."""
    half_top, half_bottom = top_w / 2, bottom_w / 2
    return np.array([(-half_top, -h / 2), (half_top, -h / 2), (half_bottom, h / 2), (-half_bottom, h / 2)]) + (cx, cy)


def _rotate(pts: np.ndarray, angle_deg: float) -> np.ndarray:
    """Points rotated about the origin (y down, so positive angles turn clockwise on screen)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rot.T


def shape_polygon(shape: Shape) -> np.ndarray:
    """[N, 2] polygon of a part shape in the object frame."""
    kind, *params = shape
    if kind == "ellipse":
        return _ellipse(*params)
    if kind == "rect":
        return _rect(*params)
    if kind == "trapezoid":
        return _trapezoid(*params)
    if kind == "poly":
        return np.asarray(params[0], dtype=np.float64)
    raise ValueError(f"unknown part shape kind {kind!r}.")


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class SyntheticSample:
    """One rendered image with its exact ground truth."""

    name: str  # file name, e.g. "bird_train_00003.JPEG"
    category: str
    image: np.ndarray  # [H, W, 3] uint8 RGB (before JPEG compression)
    labels: np.ndarray  # [H, W] uint8: part id, BACKGROUND_LABEL for background
    instance_map: np.ndarray  # [H, W] uint8: 0 background, k + 1 = instance k
    instance_parts: list[int]  # part id of instance k
    keypoints: np.ndarray  # [P, 3] float64 (x, y, v), one per part type
    occluded: bool  # an occluding blob (showing the background) was drawn over the object


def _split_code(split: str) -> int:
    """The split's number in the per-image seed, after checking its name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return SPLITS.index(split)


def sample_name(category: str, split: str, index: int) -> str:
    """File name of an image: the category first, as PartImageNet's wnid prefix."""
    return f"{category}_{split}_{index:05d}.JPEG"


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell: int) -> np.ndarray:
    """[H, W] float32 noise in about [-1, 1], smooth at the scale of ``cell`` pixels."""
    coarse = rng.uniform(-1.0, 1.0, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    img = Image.fromarray(coarse).resize((w + 2 * cell, h + 2 * cell), Image.Resampling.BILINEAR)
    return np.asarray(img)[cell:cell + h, cell:cell + w]


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """[H, W, 3] float32 textured background: two colours mixed by stripes, smooth noise or a checkerboard."""
    c1, c2 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        phi, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period)
    elif kind == 1:
        t = 0.5 + 0.5 * _smooth_noise(rng, w, h, int(rng.integers(6, 20)))
    else:
        cell = int(rng.integers(8, 24))
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    t = t * rng.uniform(0.3, 0.8)  # keep the background lower contrast than the object
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def _part_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A random RGB colour, redrawn a few times when it is too close to ``avoid`` (the background mean)."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(4):
        if np.abs(colour - avoid).sum() >= 120:
            break
        colour = rng.uniform(0, 255, size=3)
    return colour.astype(np.float32)


def _texture(rng: np.random.Generator, noise: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Brightness factors at pixels (xs, ys) for one part: flat, stripes or noise."""
    kind = rng.integers(3)
    amp = rng.uniform(0.15, 0.35)
    if kind == 0:
        return np.ones(xs.shape, np.float32)
    if kind == 1:
        phi, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
        wave = np.sin(2 * np.pi * (xs * np.cos(phi) + ys * np.sin(phi)) / period)
        return (1 + amp * np.sign(wave)).astype(np.float32)
    return (1 + amp * noise[ys, xs]).astype(np.float32)


def _object_transform(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Object frame → pixels: a 2×2 matrix (mirror, rotation, scale) and a translation."""
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    angle = np.deg2rad(rng.uniform(-35, 35))
    scale = rng.uniform(0.26, 0.38) * min(w, h)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = scale * rot @ np.diag([mirror, 1.0])
    centre = np.array([w / 2 + rng.uniform(-0.12, 0.12) * w, h / 2 + rng.uniform(-0.12, 0.12) * h])
    return matrix, centre


def _part_instances(rng: np.random.Generator, spec: CategorySpec, matrix: np.ndarray,
                    centre: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(part id, pixel polygon) of each present instance, in drawing order; non-core parts may be absent."""
    out = []
    for part, shape in spec.parts:
        jitter_scale, jitter_shift = rng.uniform(0.85, 1.15), rng.normal(0.0, 0.04, size=2)
        absent = part != spec.core and rng.random() < 0.12
        if absent:
            continue
        poly = shape_polygon(shape)
        mid = poly.mean(axis=0)
        poly = (poly - mid) * jitter_scale + mid + jitter_shift
        out.append((PART_IDS[part], np.round(poly @ matrix.T + centre, 3)))
    return out


def _occluder(rng: np.random.Generator, instances: list[tuple[int, np.ndarray]], scale: float) -> np.ndarray | None:
    """A random blob polygon centred on a vertex of a present part, or None (70 % of images)."""
    if rng.random() >= 0.3 or not instances:
        return None
    poly = instances[int(rng.integers(len(instances)))][1]
    centre = poly[int(rng.integers(len(poly)))]
    radius = rng.uniform(0.15, 0.35) * scale
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    r = radius * rng.uniform(0.7, 1.3, size=t.shape)
    return np.round(np.stack((centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)), axis=1), 3)


def _keypoints(instance_map: np.ndarray, instance_parts: list[int]) -> np.ndarray:
    """[P, 3] (x, y, v): centroid of each part type's largest visible instance, kept inside that instance."""
    kps = np.zeros((len(PART_NAMES), 3), dtype=np.float64)
    areas = np.bincount(instance_map.reshape(-1), minlength=len(instance_parts) + 1)
    for part in range(len(PART_NAMES)):
        candidates = [k for k, p in enumerate(instance_parts) if p == part]
        if not candidates:
            continue
        best = max(candidates, key=lambda k: (areas[k + 1], -k))
        if areas[best + 1] < MIN_KEYPOINT_PIXELS:
            continue
        ys, xs = np.nonzero(instance_map == best + 1)
        x, y = round(float(xs.mean()) + 0.5, 2), round(float(ys.mean()) + 0.5, 2)
        if instance_map[int(np.floor(y)), int(np.floor(x))] != best + 1:
            nearest = int(np.argmin((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2))
            x, y = float(xs[nearest]) + 0.5, float(ys[nearest]) + 0.5
        kps[part] = (x, y, 1.0)
    return kps


def render_sample(index: int, split: str = "train", seed: int = 0,
                  image_size: Sequence[int] = (160, 160)) -> SyntheticSample:
    """Render image ``index`` of ``split``; depends only on (seed, split, index, image_size)."""
    w, h = int(image_size[0]), int(image_size[1])
    rng = np.random.default_rng([int(seed), _split_code(split), int(index)])
    spec = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    background = _background(rng, w, h)
    matrix, centre = _object_transform(rng, w, h)
    instances = _part_instances(rng, spec, matrix, centre)
    occluder = _occluder(rng, instances, float(np.sqrt(abs(np.linalg.det(matrix)))))

    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for k, (_, poly) in enumerate(instances):
        draw.polygon([tuple(p) for p in poly], fill=k + 1)
    if occluder is not None:
        draw.polygon([tuple(p) for p in occluder], fill=0)
    instance_map = np.asarray(canvas, dtype=np.uint8).copy()
    instance_parts = [part for part, _ in instances]

    image = background
    noise = _smooth_noise(rng, w, h, 3)
    colours: dict[int, np.ndarray] = {}
    mean_bg = background.reshape(-1, 3).mean(axis=0)
    for k, part in enumerate(instance_parts):
        if part not in colours:  # instances of one part type (two eyes) share a colour
            colours[part] = _part_colour(rng, mean_bg)
        ys, xs = np.nonzero(instance_map == k + 1)
        image[ys, xs] = colours[part] * _texture(rng, noise, xs, ys)[:, None]
    image = image + rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    lut = np.array([BACKGROUND_LABEL] + instance_parts, dtype=np.uint8)
    return SyntheticSample(
        name=sample_name(spec.name, split, index),
        category=spec.name,
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        labels=lut[instance_map],
        instance_map=instance_map,
        instance_parts=instance_parts,
        keypoints=_keypoints(instance_map, instance_parts),
        occluded=occluder is not None,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Writing the dataset


def _coco_annotations(sample: SyntheticSample, image_id: int, next_ann_id: int) -> list[dict[str, Any]]:
    """One COCO annotation (compressed RLE of the visible pixels) per visible part instance."""
    from pycocotools import mask as mask_utils

    anns = []
    for k, part in enumerate(sample.instance_parts):
        mask = sample.instance_map == k + 1
        area = int(mask.sum())
        if area == 0:
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        anns.append({
            "id": next_ann_id + len(anns),
            "image_id": image_id,
            "category_id": part,
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": area,
            "bbox": bbox,
            "iscrowd": 0,
        })
    return anns


def _object_bbox(labels: np.ndarray) -> list[float]:
    """[x, y, w, h] of all part pixels (the whole image when no part is visible)."""
    ys, xs = np.nonzero(labels != BACKGROUND_LABEL)
    if xs.size == 0:
        return [0.0, 0.0, float(labels.shape[1]), float(labels.shape[0])]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _keypoint_line(sample: SyntheticSample) -> str:
    """``<file_name> x1 y1 v1 ...`` with two decimals, as written to keypoints/<split>.txt."""
    values = " ".join(f"{x:.2f} {y:.2f} {int(v)}" for x, y, v in sample.keypoints)
    return f"{sample.name} {values}"


def _write_split(root: Path, split: str, count: int, seed: int, image_size: Sequence[int]) -> None:
    """Images, COCO JSON and keypoint list of one split."""
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, lines = [], [], []
    for index in range(count):
        sample = render_sample(index, split, seed, image_size)
        Image.fromarray(sample.image).save(image_dir / sample.name, format="JPEG", quality=JPEG_QUALITY)
        image_id = index + 1
        images.append({
            "id": image_id, "file_name": sample.name, "width": int(image_size[0]), "height": int(image_size[1]),
            "category": sample.category, "object_bbox": _object_bbox(sample.labels),
        })
        annotations += _coco_annotations(sample, image_id, len(annotations) + 1)
        lines.append(_keypoint_line(sample))
    coco = {
        "info": {"description": f"MPAE Annotator synthetic parts, {split} split", "version": str(GENERATOR_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "part"} for i, n in enumerate(PART_NAMES)],
    }
    ann_dir = root / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")), encoding="utf-8")
    (root / "keypoints").mkdir(exist_ok=True)
    (root / "keypoints" / f"{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _prepare_root(root: Path) -> None:
    """Refuse a non-empty folder that is not a synthetic dataset; clear the images of an older synthetic one."""
    if root.exists() and any(root.iterdir()):
        if not (root / "synthetic.json").is_file():
            raise FileExistsError(f"{root} is not empty and holds no synthetic.json; choose an empty or new folder.")
        for split in SPLITS:
            shutil.rmtree(root / "images" / split, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


def generate_synthetic_dataset(root: str | Path, *, num_train: int, num_test: int,
                               image_size: Sequence[int] = (160, 160), seed: int = 0) -> Path:
    """Write the synthetic dataset under ``root`` (layout in the module docstring) and return ``root``."""
    root = Path(root)
    if num_train < 0 or num_test < 0:
        raise ValueError(f"image counts must be non-negative, got num_train={num_train}, num_test={num_test}.")
    if len(image_size) != 2 or min(image_size) < 32:
        raise ValueError(f"image_size must be (width, height) of at least 32 pixels each, got {tuple(image_size)}.")
    _prepare_root(root)
    for split, count in (("train", num_train), ("test", num_test)):
        _write_split(root, split, count, seed, image_size)
    (root / "README.txt").write_text(README_TEXT, encoding="utf-8")
    meta = {
        "generator": "training.synthetic", "version": GENERATOR_VERSION, "seed": int(seed),
        "num_train": int(num_train), "num_test": int(num_test), "image_size": [int(v) for v in image_size],
        "image_format": "JPEG", "jpeg_quality": JPEG_QUALITY, "parts": list(PART_NAMES),
        "categories": list(CATEGORY_NAMES), "background_label": BACKGROUND_LABEL,
    }
    (root / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote synthetic dataset to %s (%d train, %d test images)", root, num_train, num_test)
    return root


# ---------------------------------------------------------------------------------------------------------------------
# Reading the ground truth back


@functools.lru_cache(maxsize=4)
def _load_coco(path: str, mtime_ns: int) -> dict[str, Any]:
    """Parsed COCO JSON with an index file_name → (image, annotations); cached per file version."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    by_id = {img["id"]: (img, []) for img in data["images"]}
    for ann in data["annotations"]:
        by_id[ann["image_id"]][1].append(ann)
    return {entry[0]["file_name"]: entry for entry in by_id.values()}


def load_label_map(root: str | Path, split: str, file_name: str) -> np.ndarray:
    """[H, W] uint8 ground-truth part labels of one written image (part id, BACKGROUND_LABEL = background)."""
    from .metrics import annotation_mask

    path = Path(root) / "annotations" / split / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; generate the dataset with generate_synthetic_dataset first.")
    index = _load_coco(str(path), path.stat().st_mtime_ns)
    if file_name not in index:
        raise KeyError(f"{file_name} is not an image of the {split} split of {root}.")
    img, anns = index[file_name]
    labels = np.full((img["height"], img["width"]), BACKGROUND_LABEL, dtype=np.uint8)
    for ann in anns:  # instances never overlap, so the order does not matter
        labels[annotation_mask(ann, img["height"], img["width"]) > 0] = ann["category_id"]
    return labels

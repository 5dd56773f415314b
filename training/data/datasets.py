"""The benchmark datasets in their real on-disk formats (docs/mpae-reference.md §4, §5), plus any image folder.

``train=True`` applies the reference augmentation and returns only what training needs ('image', 'index', 'path'
and cheap labels); ``train=False`` applies the eval squash and adds the evaluation targets, in the S×S squashed
frame.  Annotation files are read once, at construction.  The benchmarks' images are decoded with OpenCV, as the
reference's loaders do (:mod:`.reference_pixels`); a plain image folder uses the project's one loader.
"""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from mpae_core.images import list_images

from .base import (DatasetFormatError, DatasetLayoutError, ImageDataset, dataset_root, format_error, read_lines,
                   relative_path, require_dir, require_file)
from .reference_pixels import read_rgb, squash_rgb
from .transforms import AugmentConfig, squash_points

logger = logging.getLogger(__name__)

#: ``gt_mask_fn(annotations, height, width)``: the COCO annotations of one image and its annotated size → label map.
GTMaskFn = Callable[[list[dict[str, Any]], int, int], np.ndarray]

CUB_NUM_PARTS = 15
CELEBA_NUM_LANDMARKS = 5  # left eye, right eye, nose, left mouth corner, right mouth corner


def _check_split(dataset: str, split: str, splits: Sequence[str]) -> str:
    if split not in splits:
        raise ValueError(f"{dataset}: unknown split {split!r}; choose one of {', '.join(map(repr, splits))}.")
    return split


# ---------------------------------------------------------------------------------------------------------------
class CUBDataset(ImageDataset):
    """CUB-200-2011: ``images/``, ``train_list.txt``/``test_list.txt``, ``bounding_boxes.txt``, ``parts/part_locs.txt``.

    Eval extras: 'keypoints' [15, 2] (x, y), 'visible' [15] bool, 'bbox' [4] (x, y, w, h), all in the S×S squashed
    frame.  Labels: 'label' = class folder number − 1 (unused by training).  When a split list is missing but the
    standard CUB ``images.txt`` and ``train_test_split.txt`` are there, the list is derived from them (the official
    split, which is what MPAE's 5,794-image ``test_list.txt`` is).
    """

    dataset_name = "CUB"
    opencv_decode = True
    SPLITS = {"train": "train_list.txt", "test": "test_list.txt"}
    ADVICE = ("download CUB-200-2011 (https://www.vision.caltech.edu/datasets/cub_200_2011/) and the MPAE split lists "
              "into that folder")

    def __init__(self, root: str | os.PathLike, split: str = "train", image_size: int = 448, train: bool = True,
                 augment: AugmentConfig | None = None) -> None:
        super().__init__(image_size, train, augment)
        self.root = dataset_root(root)
        self.split = _check_split("CUB", split, tuple(self.SPLITS))
        require_dir(self.root, "CUB", "the CUB-200-2011 dataset folder", self.ADVICE)
        self.images_dir = require_dir(self.root / "images", "CUB", "images/<class_dir>/<file>.jpg", self.ADVICE)
        self.image_ids, self.files = self._read_split()
        self.class_labels = [_cub_class(f) for f in self.files]
        if not train:  # only evaluation (and the NME regression fit) needs boxes and parts
            self.bboxes = self._read_boxes()
            self.keypoints, self.visible = self._read_parts()

    def _read_split(self) -> tuple[list[int], list[Path]]:
        path = self.root / self.SPLITS[self.split]
        if path.is_file():
            entries = [self._id_and_name(path, n, line) for n, line in read_lines(path)]
        else:
            entries = self._derive_split(path)
        if not entries:
            raise DatasetFormatError(f"CUB: {path} lists no images; expected lines '<id> <class_dir>/<file>'.")
        return [e[0] for e in entries], [e[1] for e in entries]

    @staticmethod
    def _id_and_name(path: Path, line_no: int, line: str) -> tuple[int, Path]:
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise format_error("CUB", path, line_no, line, "'<image_id> <class_dir>/<file>'")
        return int(fields[0]), relative_path(fields[1], path)

    def _derive_split(self, wanted: Path) -> list[tuple[int, Path]]:
        """The official split from ``images.txt`` + ``train_test_split.txt`` (is_training_image 1 = train)."""
        images, flags = self.root / "images.txt", self.root / "train_test_split.txt"
        if not (images.is_file() and flags.is_file()):
            raise DatasetLayoutError(
                f"CUB: expected {wanted} (lines '<id> <class_dir>/<file>'), or the standard CUB-200-2011 "
                f"{images.name} and {flags.name} beside it to derive the official split, but neither exists; "
                f"{self.ADVICE}.")
        is_train = {}
        for n, line in read_lines(flags):
            fields = line.split()
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise format_error("CUB", flags, n, line, "'<image_id> <is_training_image 0|1>'")
            is_train[int(fields[0])] = fields[1] == "1"
        want_train = self.split == "train"
        entries = [e for e in (self._id_and_name(images, n, line) for n, line in read_lines(images))
                   if is_train.get(e[0]) is want_train]
        logger.info("CUB: %s not found; using the official %s split from %s and %s (%d images).",
                    wanted.name, self.split, images.name, flags.name, len(entries))
        return entries

    @staticmethod
    def _read_table(path: Path, width: int, expected: str) -> list[list[float]]:
        """Rows of ``width`` numbers, one per non-blank line."""
        rows = []
        for n, line in read_lines(path):
            fields = line.split()
            try:
                if len(fields) != width:
                    raise ValueError
                rows.append([float(f) for f in fields])
            except ValueError:
                raise format_error("CUB", path, n, line, expected) from None
        return rows

    def _read_boxes(self) -> np.ndarray:
        path = require_file(self.root / "bounding_boxes.txt", "CUB", "lines '<id> x y w h'", self.ADVICE)
        boxes = {int(r[0]): r[1:] for r in self._read_table(path, 5, "'<image_id> x y w h'")}
        missing = [i for i in self.image_ids if i not in boxes]
        if missing:
            raise DatasetFormatError(f"CUB: {path} has no box for image id {missing[0]} "
                                     f"({len(missing)} of the {self.split} images have none); use the full CUB file.")
        return np.array([boxes[i] for i in self.image_ids], dtype=np.float64).reshape(-1, 4)

    def _read_parts(self) -> tuple[np.ndarray, np.ndarray]:
        path = require_file(self.root / "parts" / "part_locs.txt", "CUB",
                            "lines '<id> <part 1..15> x y visible'", self.ADVICE)
        row_of = {image_id: row for row, image_id in enumerate(self.image_ids)}
        points = np.full((len(self.image_ids), CUB_NUM_PARTS, 2), np.nan, dtype=np.float64)
        visible = np.zeros((len(self.image_ids), CUB_NUM_PARTS), dtype=bool)
        for image_id, part, x, y, flag in self._read_table(path, 5, "'<image_id> <part 1..15> x y visible'"):
            row = row_of.get(int(image_id))
            if row is None:
                continue
            if not 1 <= part <= CUB_NUM_PARTS:
                raise DatasetFormatError(f"CUB: {path} has part {int(part)} for image {int(image_id)}; "
                                         f"parts are numbered 1..{CUB_NUM_PARTS}.")
            points[row, int(part) - 1] = (x, y)
            visible[row, int(part) - 1] = flag > 0.5
        incomplete = np.isnan(points).any(axis=(1, 2))
        if incomplete.any():
            row = int(np.flatnonzero(incomplete)[0])
            raise DatasetFormatError(f"CUB: {path} lacks some of the {CUB_NUM_PARTS} parts of image id "
                                     f"{self.image_ids[row]} ({int(incomplete.sum())} images incomplete); "
                                     "use the full CUB file.")
        return points, visible

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.files[index]

    def labels(self, index: int) -> dict[str, Any]:
        return {"label": self.class_labels[index]}

    def eval_extras(self, index: int, size: tuple[int, int]) -> dict[str, Any]:
        width, height = size
        s = self.image_size
        x, y, w, h = self.bboxes[index]
        bbox = np.concatenate([squash_points([x, y], width, height, s), squash_points([w, h], width, height, s)])
        return {"keypoints": torch.from_numpy(squash_points(self.keypoints[index], width, height, s)),
                "visible": torch.from_numpy(self.visible[index].copy()),
                "bbox": torch.from_numpy(bbox)}


def _cub_class(rel: Path) -> int:
    """'001.Black_footed_Albatross/x.jpg' → 0; -1 when the folder has no number."""
    prefix = rel.parts[0].split(".")[0] if len(rel.parts) > 1 else ""
    return int(prefix) - 1 if prefix.isdigit() else -1


# ---------------------------------------------------------------------------------------------------------------
class CelebADataset(ImageDataset):
    """Unaligned ("wild") CelebA with the MAFL landmark lists: ``img_celeba/`` and ``name,x1,y1,...,x5,y5`` lines.

    As the reference, every image is decoded and first squashed to S×S by OpenCV (``cv2.resize``, bilinear on
    uint8, no antialias; ``presize`` overrides S), then transformed.  Landmarks are in the pixel frame of the file;
    they are divided by its width/height and scaled to S (x/W·S in float64, the reference's arithmetic).  Eval
    extras: 'keypoints' [5, 2] (L-eye, R-eye, nose, L-mouth, R-mouth), 'visible' [5] (all true).
    Splits: 'train' (cele_train_lm.txt), 'test' (MAFL_test_lm.txt), 'mafl_train' (MAFL_train_lm.txt, for the NME
    regression fit).
    """

    dataset_name = "CelebA"
    opencv_decode = True
    SPLITS = {"train": "cele_train_lm.txt", "test": "MAFL_test_lm.txt", "mafl_train": "MAFL_train_lm.txt"}
    ADVICE = ("download the unaligned CelebA images (img_celeba) and the MAFL landmark lists used by MPAE "
              "(cele_train_lm.txt, MAFL_train_lm.txt, MAFL_test_lm.txt) into that folder")

    def __init__(self, root: str | os.PathLike, split: str = "train", image_size: int = 224, train: bool = True,
                 augment: AugmentConfig | None = None, presize: int | None = None) -> None:
        super().__init__(image_size, train, augment)
        self.root = dataset_root(root)
        self.split = _check_split("CelebA", split, tuple(self.SPLITS))
        self.presize = image_size if presize is None else presize
        require_dir(self.root, "CelebA", "the CelebA dataset folder", self.ADVICE)
        self.images_dir = require_dir(self.root / "img_celeba", "CelebA", "img_celeba/<name>.jpg", self.ADVICE)
        path = require_file(self.root / self.SPLITS[split], "CelebA", "lines 'name,x1,y1,...,x5,y5'", self.ADVICE)
        self.files: list[Path] = []
        landmarks = []
        for n, line in read_lines(path):
            fields = [f.strip() for f in line.split(",")]
            try:
                if len(fields) != 1 + 2 * CELEBA_NUM_LANDMARKS:
                    raise ValueError
                landmarks.append([float(v) for v in fields[1:]])
            except ValueError:
                raise format_error("CelebA", path, n, line,
                                   "'name,x1,y1,...,x5,y5' (11 comma-separated fields)") from None
            self.files.append(relative_path(fields[0], path))
        if not self.files:
            raise DatasetFormatError(f"CelebA: {path} lists no images; expected lines 'name,x1,y1,...,x5,y5'.")
        self.landmarks = np.array(landmarks, dtype=np.float64).reshape(-1, CELEBA_NUM_LANDMARKS, 2)

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.files[index]

    def load(self, index: int) -> tuple[Image.Image, tuple[int, int]]:
        pixels = read_rgb(self.image_path(index))
        height, width = pixels.shape[:2]
        return Image.fromarray(squash_rgb(pixels, self.presize)), (width, height)

    def eval_extras(self, index: int, size: tuple[int, int]) -> dict[str, Any]:
        width, height = size
        points = squash_points(self.landmarks[index], width, height, self.image_size, divide_first=True)
        return {"keypoints": torch.from_numpy(points),
                "visible": torch.ones(CELEBA_NUM_LANDMARKS, dtype=torch.bool)}


# ---------------------------------------------------------------------------------------------------------------
class PartImageNetDataset(ImageDataset):
    """PartImageNet in COCO format: PDiscoFormer's OOD split or the official Seg split.

    - ``variant='ood'``: ``train_train.json`` / ``train_test.json``, images under ``train/<wnid>/<file>``.
    - ``variant='seg'``: ``annotations/{train,test}/{train,test}.json``, images under ``images/{train,test}/``.

    Images without any annotation are dropped (the reference's 1,658 of 1,659 OOD test images); their names are in
    ``dropped``.  Labels: 'wnid' (the ImageNet class, from the file's base name).  Eval extras: 'annotations' (the
    image's raw COCO annotation dicts: variable length, so batch with :func:`training.data.collate`), 'height' and
    'width' (the annotated size), and 'gt_mask' = ``gt_mask_fn(annotations, height, width)`` when that callable is
    given (the GT protocol lives in training/metrics.py).  Nothing of this is computed in training.  In evaluation
    every annotation the ground truth uses is checked at construction (:func:`check_gt_annotation`), so a malformed
    one is reported with its id and file before any image is loaded.
    """

    dataset_name = "PartImageNet"
    opencv_decode = True
    VARIANTS = ("ood", "seg")
    SPLITS = ("train", "test")
    ADVICE = {"ood": "download the PartImageNet OOD train images and write train_train.json / train_test.json with "
                     "PDiscoFormer's prepare_partimagenet_ood.py into that folder",
              "seg": "download PartImageNet_Seg (its annotations/ and images/ folders) into that folder"}

    def __init__(self, root: str | os.PathLike, variant: str = "ood", split: str = "train", image_size: int = 224,
                 train: bool = True, augment: AugmentConfig | None = None, gt_mask_fn: GTMaskFn | None = None) -> None:
        super().__init__(image_size, train, augment)
        if variant not in self.VARIANTS:
            raise ValueError(f"PartImageNet: unknown variant {variant!r}; choose 'ood' or 'seg'.")
        self.variant, self.gt_mask_fn = variant, gt_mask_fn
        self.dataset_name = "PartImageNet OOD" if variant == "ood" else "PartImageNet Seg"
        self.split = _check_split(self.dataset_name, split, self.SPLITS)
        self.root = dataset_root(root)
        advice = self.ADVICE[variant]
        require_dir(self.root, self.dataset_name, f"the {self.dataset_name} dataset folder", advice)
        if variant == "ood":
            json_path, self.images_dir = self.root / f"train_{split}.json", self.root / "train"
            images_what = "train/<wnid>/<file>.JPEG"
        else:
            json_path = self.root / "annotations" / split / f"{split}.json"
            self.images_dir = self.root / "images" / split
            images_what = f"images/{split}/<file>.JPEG"
        require_file(json_path, self.dataset_name, "COCO json with 'images', 'annotations' and 'categories'", advice)
        require_dir(self.images_dir, self.dataset_name, images_what, advice)
        self.json_path = json_path
        self._read_coco(json_path)
        if not train:
            for image_annotations in self.annotations:
                for ann in image_annotations:
                    check_gt_annotation(ann, f"{self.dataset_name}: {json_path}")
        self._resolved: dict[int, Path] = {}

    def _read_coco(self, path: Path) -> None:
        try:
            with open(path, encoding="utf-8-sig") as f:
                coco = json.load(f)
            images, annotations = coco["images"], coco["annotations"]
            by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for ann in annotations:
                by_image[ann["image_id"]].append(ann)
            kept = [img for img in images if by_image.get(img["id"])]
            self.dropped = [str(img["file_name"]) for img in images if not by_image.get(img["id"])]
            self.files = [relative_path(str(img["file_name"]), path) for img in kept]
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{self.dataset_name}: {path} is not valid JSON ({exc}); re-create it.") from None
        except (KeyError, TypeError) as exc:
            raise DatasetFormatError(f"{self.dataset_name}: {path} is not a COCO annotation file (missing or "
                                     f"malformed {exc}); expected 'images' with id/file_name and 'annotations' "
                                     "with image_id.") from None
        self.annotations = [by_image[img["id"]] for img in kept]
        self.sizes = [(img.get("height"), img.get("width")) for img in kept]
        self.categories: list[dict[str, Any]] = list(coco.get("categories", []))
        if self.dropped:
            logger.info("%s %s: dropped %d image(s) without annotations (e.g. %s).",
                        self.dataset_name, self.split, len(self.dropped), self.dropped[0])
        if not self.files:
            raise DatasetFormatError(f"{self.dataset_name}: {path} has no annotated images; "
                                     "check that it is the right file.")

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> Path:
        """``<images_dir>/<file_name>``; a bare OOD/ImageNet name also resolves under ``<images_dir>/<wnid>/``."""
        path = self._resolved.get(index)
        if path is None:
            rel = self.files[index]
            path = self.images_dir / rel
            if len(rel.parts) == 1 and not path.exists():
                nested = self.images_dir / _wnid(rel) / rel
                path = nested if nested.exists() else path
            self._resolved[index] = path
        return path

    def labels(self, index: int) -> dict[str, Any]:
        return {"wnid": _wnid(self.files[index])}

    def eval_extras(self, index: int, size: tuple[int, int]) -> dict[str, Any]:
        height, width = self.sizes[index]
        height, width = int(height or size[1]), int(width or size[0])
        anns = self.annotations[index]
        extras: dict[str, Any] = {"annotations": anns, "height": height, "width": width}
        if self.gt_mask_fn is not None:
            try:
                extras["gt_mask"] = torch.as_tensor(np.asarray(self.gt_mask_fn(anns, height, width)))
            except Exception as exc:  # noqa: BLE001 - pycocotools and numpy raise many types for malformed data
                raise DatasetFormatError(
                    f"{self.dataset_name}: the annotations of {self.files[index]} in {self.json_path} cannot be made "
                    f"into its ground-truth mask ({type(exc).__name__}: {exc}); fix or remove them.") from exc
        return extras


def check_gt_annotation(ann: Any, where: str) -> None:
    """DatasetFormatError unless ``ann`` has what the ground-truth mask reads from it (``where`` names the file).

    Crowd and zero-area annotations are skipped by the protocol and not checked further.  A used one needs an
    integer 'category_id' and a 'segmentation' that is RLE (a dict) or a list of polygons (lists of numbers); a
    4-number polygon stands for the annotation's 'bbox' (the reference's handling), which then must be 4 numbers.
    """
    if not isinstance(ann, dict):
        raise DatasetFormatError(f"{where} has an annotation that is not an object ({ann!r:.60}); fix the file.")
    name = f"annotation {ann.get('id')!r} (image {ann.get('image_id')!r})"
    area = ann.get("area", 1)
    if not _is_number(area):
        raise DatasetFormatError(f"{where}: {name} has area {area!r:.60}; expected a number.")
    if ann.get("iscrowd", 0) or area <= 0:
        return
    category = ann.get("category_id")
    if not isinstance(category, int) or isinstance(category, bool):
        raise DatasetFormatError(f"{where}: {name} has category_id {category!r:.60}; expected an integer part "
                                 "category id.")
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        return
    if not isinstance(seg, list) or not all(isinstance(poly, list) and all(map(_is_number, poly)) for poly in seg):
        raise DatasetFormatError(f"{where}: {name} has segmentation {seg!r:.60}; expected RLE or a list of polygons "
                                 "[x1, y1, x2, y2, ...].")
    bbox = ann.get("bbox")
    if any(len(poly) == 4 for poly in seg) and not (
            isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        raise DatasetFormatError(f"{where}: {name} has a 4-number polygon, which stands for its bbox, but its bbox "
                                 f"is {bbox!r:.60}; give it a bbox [x, y, w, h] or a full polygon.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _wnid(rel: Path) -> str:
    """ImageNet class of a PartImageNet file: 'n01440764_123.JPEG' → 'n01440764' (basename only, any OS)."""
    return rel.name.split("_")[0]


# ---------------------------------------------------------------------------------------------------------------
class ImageFolderDataset(ImageDataset):
    """Any folder of images (sub-folders too when ``recursive``), no labels: for training on one's own data."""

    dataset_name = "Image folder"

    def __init__(self, root: str | os.PathLike, image_size: int = 224, train: bool = True, recursive: bool = True,
                 augment: AugmentConfig | None = None) -> None:
        super().__init__(image_size, train, augment)
        self.root = dataset_root(root)
        require_dir(self.root, "Image folder", "the images to train on", "check the path")
        self.files = list_images(self.root, recursive=recursive)
        if not self.files:
            where = "it or its sub-folders" if recursive else "it (sub-folders were not searched)"
            raise DatasetLayoutError(f"Image folder: found no image files (.jpg, .png, ...) in {self.root}, "
                                     f"looking in {where}; choose the folder that holds the images.")

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, index: int) -> Path:
        return self.files[index]

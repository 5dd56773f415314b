"""PNG and COCO exports of part label maps: the one code path that the app and the batch CLI both call.

Everything streams: exporters take an iterator of (relpath, label map) and never hold more than one image's map;
:class:`CocoWriter` keeps images and annotations in temporary files until it is closed, so 100,000 images cost
no more memory than one. Label maps hold label values (0 background, k + 1 slot k, IGNORE_LABEL); the part table
turns them into export indices (0 background, 1..N labels, 255 ignore).

COCO has no "ignore": ignored pixels (255 in the PNGs) get no annotation, so they decode as background there.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .formats import check_coco_style, export_timestamp, parse_export_formats
from .formats.coco_polygons import coco_polygon_annotations
from .formats.image import ExportImage
from .labels import EXPORT_IGNORE
from .parts import BACKGROUND_COLOR, BACKGROUND_NAME, IGNORE_COLOR, IGNORE_NAME, ExportLabel, PartTable
from .project import AnnotationProject
from .storage import atomic_write, atomic_write_bytes, atomic_write_json, write_png
from ..palette import color_to_hex

logger = logging.getLogger(__name__)

Source = AnnotationProject | Iterable[tuple[str, np.ndarray]]
COCO_SUPERCATEGORY = "part"


# ----- file names ---------------------------------------------------------------------------------------------------
def mask_relpath(relpath: str) -> str:
    """Where an image's mask goes under ``masks/``: the same relative path with a .png suffix (VOC style)."""
    path = PurePosixPath(relpath)
    return path.with_suffix(".png").as_posix() if path.suffix else f"{path.as_posix()}.png"


def unique_mask_relpaths(relpaths: Iterable[str]) -> dict[str, str]:
    """Mask names for a whole image list; images whose masks would clash (a.jpg and a.png) keep their full name
    (a.jpg.png, a.png.png). Compared case-insensitively, since Windows and macOS folders are."""
    relpaths = list(relpaths)
    owners: dict[str, int] = {}
    for rel in relpaths:
        key = mask_relpath(rel).casefold()
        owners[key] = owners.get(key, 0) + 1
    return {rel: mask_relpath(rel) if owners[mask_relpath(rel).casefold()] == 1 else f"{rel}.png" for rel in relpaths}


# ----- labels files -------------------------------------------------------------------------------------------------
def palette_for(labels: Sequence[ExportLabel]) -> list[int]:
    """768-entry PNG palette: background black, each label its colour, 255 (ignore) white."""
    palette = [0] * 768
    palette[0:3] = BACKGROUND_COLOR
    for label in labels:
        palette[3 * label.index : 3 * label.index + 3] = label.color
    palette[3 * EXPORT_IGNORE : 3 * EXPORT_IGNORE + 3] = IGNORE_COLOR
    return palette


def write_label_files(labels: Sequence[ExportLabel], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``labels.txt`` (line i = name of index i, line 0 background) and ``labels.json`` ({index: {name, color}})."""
    out_dir = Path(out_dir)
    lines = [BACKGROUND_NAME, *(label.name for label in labels)]
    txt = atomic_write_bytes(out_dir / "labels.txt", ("\n".join(lines) + "\n").encode("utf-8"))
    table: dict[str, Any] = {"0": {"name": BACKGROUND_NAME, "color": color_to_hex(BACKGROUND_COLOR)}}
    for label in labels:
        table[str(label.index)] = {"name": label.name, "color": color_to_hex(label.color),
                                   "slots": sorted(label.slots)}
    table[str(EXPORT_IGNORE)] = {"name": IGNORE_NAME, "color": color_to_hex(IGNORE_COLOR)}
    js = atomic_write_json(out_dir / "labels.json", table, fsync=False, indent=2)
    return txt, js


def coco_categories(labels: Sequence[ExportLabel]) -> list[dict[str, Any]]:
    return [{"id": label.index, "name": label.name, "supercategory": COCO_SUPERCATEGORY} for label in labels]


# ----- PNG ----------------------------------------------------------------------------------------------------------
class IndexPngWriter:
    """Writes export-index maps as 8-bit palette PNGs under ``out_dir/<folder>/``, one image at a time."""

    def __init__(self, out_dir: str | os.PathLike, palette: Sequence[int], *, folder: str = "masks",
                 mask_names: Mapping[str, str] | None = None, compress_level: int = 1) -> None:
        self.out_dir = Path(out_dir)
        self.palette = list(palette)
        self.folder = folder
        self.mask_names = mask_names
        self.compress_level = compress_level
        self.count = 0
        self._taken: dict[str, str] = {}

    def mask_path(self, relpath: str) -> Path:
        name = self.mask_names.get(relpath) if self.mask_names is not None else None
        return self.out_dir / self.folder / (name or mask_relpath(relpath))

    def add_indices(self, relpath: str, indices: np.ndarray, *, name: str | None = None) -> Path:
        """Write a map that already holds export indices (uint8), e.g. one shared with a CocoWriter; ``name``
        (relative to the folder) overrides the mask name."""
        path = self.out_dir / self.folder / name if name is not None else self.mask_path(relpath)
        key = path.relative_to(self.out_dir).as_posix().casefold()
        if self._taken.setdefault(key, relpath) != relpath:
            raise ValueError(f"Images '{self._taken[key]}' and '{relpath}' would both be exported as '{path}'; pass "
                             "mask_names=unique_mask_relpaths(all image paths) to keep them apart.")
        if indices.dtype != np.uint8 or indices.ndim != 2:
            raise ValueError(f"Export indices of '{relpath}' must be a 2-D uint8 map, got {indices.dtype} "
                             f"{indices.shape}.")
        image = Image.fromarray(indices)
        image.putpalette(self.palette)
        write_png(path, image, compress_level=self.compress_level)
        self.count += 1
        return path


class PngMaskWriter(IndexPngWriter):
    """Writes ``out_dir/masks/<relpath>.png`` one image at a time, plus the labels files when it starts.

    The part table is copied when the writer starts, so a table edited meanwhile in the app cannot mix two
    labelings into one export.
    """

    def __init__(self, out_dir: str | os.PathLike, part_table: PartTable, *,
                 mask_names: Mapping[str, str] | None = None, write_labels: bool = True,
                 compress_level: int = 1) -> None:
        self.table = part_table.copy()
        self.labels = self.table.export_labels()
        super().__init__(out_dir, palette_for(self.labels), mask_names=mask_names, compress_level=compress_level)
        if write_labels:
            write_label_files(self.labels, self.out_dir)

    def add(self, relpath: str, label_map: np.ndarray) -> Path:
        """Label values → export indices → palette PNG; returns the mask's path."""
        return self.add_indices(relpath, self.table.to_export(label_map))


# ----- COCO ---------------------------------------------------------------------------------------------------------
def coco_annotations_for(indices: np.ndarray) -> list[dict[str, Any]]:
    """One id-less COCO annotation (compressed RLE, area, bbox) per label present in an export-index map.

    The runs of the column-major map are found once, grouped by label with one stable sort, and each label's RLE
    counts read off its runs, instead of comparing and encoding the whole map once per label (5-8x faster, same
    strings as ``mask.encode``). Cheap enough for the batch encoders; :meth:`CocoWriter.add_encoded` numbers them.
    """
    height, width = indices.shape
    flat = np.ascontiguousarray(indices.T).ravel()
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    ends = np.append(starts[1:], flat.size)
    values = flat[starts]
    order = np.argsort(values, kind="stable")  # each label's runs, in image order, side by side
    groups = np.split(order, np.flatnonzero(np.diff(values[order])) + 1)
    present, uncompressed = [], []
    for group in groups:
        index = int(values[group[0]])
        if not 0 < index < EXPORT_IGNORE:
            continue
        s, e = starts[group], ends[group]
        counts = np.empty(2 * s.size + (e[-1] < flat.size), dtype=np.int64)
        counts[0 : 2 * s.size : 2] = s - np.concatenate(([0], e[:-1]))  # zeros before each run
        counts[1 : 2 * s.size : 2] = e - s
        if e[-1] < flat.size:
            counts[-1] = flat.size - e[-1]
        present.append(index)
        uncompressed.append({"size": [height, width], "counts": counts.tolist()})
    if not present:
        return []
    rles = mask_utils.frPyObjects(uncompressed, height, width)
    areas, boxes = mask_utils.area(rles), mask_utils.toBbox(rles)
    return [{
        "category_id": index,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(area),
        "bbox": [float(v) for v in box],
        "iscrowd": 0,
    } for index, rle, area, box in zip(present, rles, areas, boxes)]


class CocoWriter:
    """Builds a COCO instances file image by image without holding the dataset (temporary files until ``close``).

    Use as a context manager: the file appears, atomically, only when the block ends without an error.
    ``style`` "rle" writes compressed RLE masks, "polygons" polygon outlines (:mod:`.formats.coco_polygons`).
    """

    def __init__(self, out_path: str | os.PathLike, part_table: PartTable | None = None, *,
                 categories: Sequence[Mapping[str, Any]] | None = None, description: str = "MPAE Annotator part masks",
                 first_image_id: int = 1, first_annotation_id: int = 1, style: str = "rle") -> None:
        if (part_table is None) == (categories is None):
            raise ValueError("Give a CocoWriter either a part table or a list of COCO categories.")
        self.style = check_coco_style(style)
        self.out_path = Path(out_path)
        self.table = part_table.copy() if part_table is not None else None
        self.categories = [dict(c) for c in categories] if categories is not None else coco_categories(
            self.table.export_labels())  # type: ignore[union-attr]
        self._category_ids = {int(c["id"]) for c in self.categories}
        self.description = description
        self.next_image_id = first_image_id
        self.next_annotation_id = first_annotation_id
        self.num_images = 0
        self.num_annotations = 0
        self._file_names: set[str] = set()
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self._parts: list[tuple[TextIO, str]] = []
        for kind in ("images", "annotations"):
            fd, name = tempfile.mkstemp(prefix=f".{self.out_path.name}.{kind}.", suffix=".tmp",
                                        dir=self.out_path.parent)
            self._parts.append((os.fdopen(fd, "w", encoding="utf-8"), name))
        self._closed = False

    def __enter__(self) -> "CocoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, relpath: str, label_map: np.ndarray) -> int:
        """Add one image from its label values; returns its image id."""
        if self.table is None:
            raise ValueError("This CocoWriter has no part table; add export indices with add_indices instead.")
        return self.add_indices(relpath, self.table.to_export(label_map))

    def add_indices(self, relpath: str, indices: np.ndarray) -> int:
        """Add one image from its export-index map (uint8, 255 = ignore); returns its image id."""
        return self.add_image(ExportImage(relpath, indices, mask_relpath(relpath)))

    def add_image(self, image: ExportImage) -> int:
        """Add one image in this writer's style (polygons reuse the image's traced outlines); returns its id."""
        annotations = (coco_polygon_annotations(image.polygons) if self.style == "polygons"
                       else coco_annotations_for(image.indices))
        return self.add_encoded(image.relpath, (image.height, image.width), annotations)

    def add_encoded(self, relpath: str, size: tuple[int, int], annotations: Iterable[Mapping[str, Any]]) -> int:
        """Add one image and its id-less annotations (from :func:`coco_annotations_for`); returns its image id."""
        self._check_open()
        if relpath in self._file_names:
            raise ValueError(f"'{relpath}' was already added to '{self.out_path}'; each image goes in once.")
        self._file_names.add(relpath)
        image_id = self.next_image_id
        self.next_image_id += 1
        image = {"id": image_id, "width": int(size[1]), "height": int(size[0]), "file_name": relpath}
        self._write(0, image)
        for annotation in annotations:
            if int(annotation["category_id"]) not in self._category_ids:
                raise ValueError(f"An annotation of '{relpath}' has category {annotation['category_id']}, which "
                                 f"'{self.out_path}' does not define.")
            self._write(1, {"id": self.next_annotation_id, "image_id": image_id, **annotation})
            self.next_annotation_id += 1
            self.num_annotations += 1
        self.num_images += 1
        return image_id

    def close(self) -> Path:
        """Assemble the final JSON from the temporary files and move it into place."""
        self._check_open()
        self._closed = True
        for handle, _ in self._parts:
            handle.close()
        header = {
            "info": {"description": self.description, "version": "1.0",
                     "date_created": export_timestamp("%Y-%m-%dT%H:%M:%S")},
            "licenses": [],
            "categories": self.categories,
        }

        def write(f) -> None:
            f.write(json.dumps(header, ensure_ascii=False)[:-1].encode("utf-8"))
            for key, (_, name) in zip(("images", "annotations"), self._parts):
                f.write(f', "{key}": ['.encode("utf-8"))
                with open(name, encoding="utf-8") as part:
                    for i, line in enumerate(part):
                        f.write(((",\n" if i else "\n") + line.rstrip("\n")).encode("utf-8"))
                f.write(b"]")
            f.write(b"}\n")

        try:
            atomic_write(self.out_path, write)
        finally:
            self._remove_parts()
        return self.out_path

    def abort(self) -> None:
        """Drop everything written so far; the output file is left as it was."""
        if not self._closed:
            self._closed = True
            for handle, _ in self._parts:
                handle.close()
            self._remove_parts()

    def _write(self, which: int, obj: Mapping[str, Any]) -> None:
        self._parts[which][0].write(json.dumps(obj, ensure_ascii=False) + "\n")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"The COCO writer for '{self.out_path}' is already closed.")

    def _remove_parts(self) -> None:
        for _, name in self._parts:
            Path(name).unlink(missing_ok=True)


def merge_coco_parts(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> Path:
    """Join COCO files written by several workers (e.g. torchrun ranks) into one, renumbering image and annotation
    ids from 1; categories must be identical and no image may appear twice. Reads one part at a time."""
    if not paths:
        raise ValueError("merge_coco_parts needs at least one COCO file.")
    writer: CocoWriter | None = None
    try:
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    part = json.load(f)
                categories, images, annotations = part["categories"], part["images"], part["annotations"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"Cannot merge '{path}': it is not a readable COCO file ({exc}).") from exc
            if writer is None:
                writer = CocoWriter(out_path, categories=categories,
                                    description=part.get("info", {}).get("description", "MPAE Annotator part masks"))
            elif _category_key(categories) != _category_key(writer.categories):
                raise ValueError(f"Cannot merge '{path}': its categories differ from '{paths[0]}' (different part "
                                 "tables); export all parts with the same table.")
            by_image: dict[int, list[dict[str, Any]]] = {int(image["id"]): [] for image in images}
            for annotation in annotations:
                owner = by_image.get(int(annotation["image_id"]))
                if owner is None:
                    raise ValueError(f"Cannot merge '{path}': annotation {annotation.get('id')} refers to image "
                                     f"{annotation['image_id']}, which the file does not list.")
                owner.append({k: v for k, v in annotation.items() if k not in ("id", "image_id")})
            for image in images:
                writer.add_encoded(image["file_name"], (image["height"], image["width"]), by_image[int(image["id"])])
            del part, images, annotations, by_image
        assert writer is not None
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def _category_key(categories: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    return [(int(c["id"]), str(c["name"])) for c in categories]


# ----- whole exports ------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What an export wrote; ``images`` counts the label maps exported, ``outputs`` maps each format to its main
    file or folder (coco.json, masks/, yolo/, labelme/, cvat/annotations.xml, voc/)."""

    out_dir: Path
    labels: list[ExportLabel]
    images: int = 0
    masks_dir: Path | None = None
    coco_path: Path | None = None
    annotations: int = 0
    files: list[Path] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)


def export_annotations(source: Source, part_table: PartTable | None, out_dir: str | os.PathLike, *,
                       formats: Iterable[str] | str = ("png", "coco"), mask_names: Mapping[str, str] | None = None,
                       coco_name: str = "coco.json", coco_style: str = "rle",
                       images_dir: str | os.PathLike | None = None,
                       on_image: Callable[[str], None] | None = None) -> ExportResult:
    """Export every label map of ``source`` (a project, or (relpath, label map) pairs) in one pass.

    ``part_table`` defaults to the project's; ``images_dir`` (the photos' folder, the project's by default) is
    needed by the formats that point at the photos (yolo, labelme). ``on_image(relpath)`` runs after each image
    (progress; raise in it to cancel: the COCO, CVAT and list files are then not written, per-image files already
    written stay).
    """
    items, table, names = _resolve(source, part_table, mask_names)
    table = table.copy()  # one labeling for the whole export, even if the app's table changes meanwhile
    if images_dir is None and isinstance(source, AnnotationProject):
        images_dir = source.images_folder
    indices = ((relpath, table.to_export(label_map)) for relpath, label_map in items)
    return export_indices(indices, table.export_labels(), out_dir, formats=formats, mask_names=names,
                          coco_name=coco_name, coco_style=coco_style, images_dir=images_dir, on_image=on_image)


def export_indices(items: Iterable[tuple[str, np.ndarray]], labels: Sequence[ExportLabel],
                   out_dir: str | os.PathLike, *, formats: Iterable[str] | str = ("png", "coco"),
                   mask_names: Mapping[str, str] | None = None, coco_name: str = "coco.json",
                   coco_style: str = "rle", images_dir: str | os.PathLike | None = None, write_labels: bool = True,
                   on_image: Callable[[str], None] | None = None) -> ExportResult:
    """The one export loop under the app's dialog and the batch: (relpath, export-index map) pairs → every chosen
    format, one image in memory at a time (see :func:`export_annotations`; ``write_labels`` False skips
    labels.txt/json, which the batch writes itself)."""
    from .formats import cvat, labelme, voc, yolo

    chosen = parse_export_formats(formats)
    coco_style = check_coco_style(coco_style)
    out_dir = Path(out_dir)
    labels = list(labels)
    if images_dir is None and {"yolo", "labelme"} & set(chosen):
        raise ValueError("The YOLO and labelme exports point at the photos; give the images folder (images_dir).")
    result = ExportResult(out_dir, labels)
    writers: dict[str, Any] = {}
    taken: dict[str, str] = {}
    try:
        if "png" in chosen:
            writers["png"] = IndexPngWriter(out_dir, palette_for(labels), mask_names=mask_names)
            result.masks_dir = result.outputs["png"] = out_dir / "masks"
            if write_labels:
                result.files += list(write_label_files(labels, out_dir))
        if "coco" in chosen:
            writers["coco"] = CocoWriter(out_dir / coco_name, categories=coco_categories(labels), style=coco_style)
        for name, writer_class in (("yolo", yolo.YoloWriter), ("labelme", labelme.LabelmeWriter),
                                   ("cvat", cvat.CvatWriter), ("voc", voc.VocWriter)):
            if name in chosen:
                writers[name] = writer_class(out_dir, labels)
        for relpath, indices in items:
            stem = (mask_names.get(relpath) if mask_names is not None else None) or mask_relpath(relpath)
            stem = stem[: -len(".png")]
            if taken.setdefault(stem.casefold(), relpath) != relpath:
                raise ValueError(f"Images '{taken[stem.casefold()]}' and '{relpath}' would both be exported as "
                                 f"'{stem}'; pass mask_names=unique_mask_relpaths(all image paths) to keep them apart.")
            photo = Path(images_dir) / relpath if images_dir is not None else None
            image = ExportImage(relpath, indices, stem, photo)
            for name, writer in writers.items():
                if name == "png":
                    result.files.append(writer.add_indices(relpath, indices))
                elif name == "coco":
                    writer.add_image(image)
                else:
                    result.files += writer.add(image)
            result.images += 1
            if on_image is not None:
                on_image(relpath)
        for name, writer in writers.items():
            if name == "coco":
                result.coco_path = result.outputs["coco"] = writer.close()
                result.annotations = writer.num_annotations
                result.files.append(result.coco_path)
            elif name != "png":
                result.files += writer.close()
                result.outputs[name] = writer.path if name == "cvat" else writer.root
    except BaseException:
        for name, writer in writers.items():
            if name != "png":
                writer.abort()
        raise
    logger.info("Exported %d images (%s) to %s", result.images, ", ".join(chosen), out_dir)
    return result


def export_png(source: Source, part_table: PartTable | None, out_dir: str | os.PathLike, *,
               mask_names: Mapping[str, str] | None = None,
               on_image: Callable[[str], None] | None = None) -> ExportResult:
    """8-bit palette PNG per image under ``out_dir/masks/``, plus ``labels.txt`` and ``labels.json``."""
    return export_annotations(source, part_table, out_dir, formats=("png",), mask_names=mask_names,
                              on_image=on_image)


def export_coco(source: Source, part_table: PartTable | None, out_dir: str | os.PathLike, *,
                coco_name: str = "coco.json", coco_style: str = "rle",
                on_image: Callable[[str], None] | None = None) -> ExportResult:
    """``out_dir/coco.json`` with one annotation per (image, present label): compressed RLE or polygons."""
    return export_annotations(source, part_table, out_dir, formats=("coco",), coco_name=coco_name,
                              coco_style=coco_style, on_image=on_image)


def _resolve(source: Source, part_table: PartTable | None, mask_names: Mapping[str, str] | None
             ) -> tuple[Iterator[tuple[str, np.ndarray]], PartTable, Mapping[str, str] | None]:
    if isinstance(source, AnnotationProject):
        table = part_table if part_table is not None else source.parts
        if table is None:
            raise ValueError(f"The project '{source.project_dir}' has no part table yet; predict some images first.")
        if mask_names is None:
            mask_names = unique_mask_relpaths(source.relpaths())
        return source.iter_label_maps(), table, mask_names
    if part_table is None:
        raise ValueError("Exporting label maps needs the part table that names their slots.")
    return iter(source), part_table, mask_names

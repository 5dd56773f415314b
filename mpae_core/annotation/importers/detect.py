"""Which format a source is, from its file name, a peek at its first bytes, or its folder's layout.

A folder may hold several formats (one of our exports with every format ticked): the most complete one is taken,
in :data:`PREFERENCE` order (PNG label maps and VOC keep colours and "ignore", CVAT keeps colours, labelme keeps
"ignore", COCO and YOLO neither), and the others are named so the person can pick one with ``--format``. A format
given explicitly is looked for in the folder and in its conventional subfolder (``yolo/``, ``voc/``, ...), which is
where our exports put it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .coco import CocoSource
from .cvat import CvatSource
from .label_maps import MasksSource, VocSource
from .labelme import LabelmeSource
from .source import ImportSource, ImportSourceError, files_under
from .yolo import YoloSource, find_yaml

#: Every import format, most complete first (what auto-detection prefers when a folder holds several).
IMPORT_FORMATS = ("png", "voc", "cvat", "coco", "labelme", "yolo")
PREFERENCE = IMPORT_FORMATS
#: The subfolder our exports write each format to (``png`` lives in the export folder itself).
SUBFOLDERS = {"png": "", "voc": "voc", "cvat": "cvat", "coco": "", "labelme": "labelme", "yolo": "yolo"}
_PEEK_BYTES = 1 << 16


def peek_json_kind(path: Path) -> str | None:
    """'coco' or 'labelme' from the keys near the start of a JSON file (a large COCO file is not parsed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_PEEK_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    if '"shapes"' in head and ('"imagePath"' in head or '"version"' in head):
        return "labelme"
    if '"categories"' in head or ('"images"' in head and '"annotations"' in head):
        return "coco"
    if len(head) < _PEEK_BYTES:  # small file: the keys may come late, so parse it
        try:
            data = json.loads(head)
        except ValueError:
            return None
        if isinstance(data, dict) and isinstance(data.get("shapes"), list):
            return "labelme"
        if isinstance(data, dict) and "images" in data and "categories" in data:
            return "coco"
    return None


def _is_cvat(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return "<annotations" in head


_MAX_PEEKED = 20  # a folder of thousands of labelme files is not opened file by file looking for a COCO one


def _coco_file(folder: Path) -> Path | None:
    """``coco.json``, or the one COCO file among the folder's (or ``annotations/``'s) first JSON files."""
    if (folder / "coco.json").is_file():
        return folder / "coco.json"
    candidates = [p for p in sorted(folder.glob("*.json")) + sorted(folder.glob("annotations/*.json"))
                  if p.name != "labels.json"][:_MAX_PEEKED]
    found = [p for p in candidates if peek_json_kind(p) == "coco"]
    return found[0] if len(found) == 1 else None


def _find(folder: Path, fmt: str) -> Path | None:
    """Where ``fmt`` lives in ``folder`` (the path its reader opens), or None."""
    if fmt == "png":
        ok = (folder / "masks").is_dir() and ((folder / "labels.txt").is_file() or (folder / "labels.json").is_file())
        return folder if ok else None
    if fmt == "voc":
        return folder if (folder / "SegmentationClass").is_dir() else None
    if fmt == "cvat":
        path = folder / "annotations.xml"
        return path if path.is_file() and _is_cvat(path) else None
    if fmt == "coco":
        return _coco_file(folder)
    if fmt == "labelme":
        for relpath in files_under(folder, ".json"):
            if relpath != "labels.json" and peek_json_kind(folder / relpath) == "labelme":
                return folder
        return None
    if fmt == "yolo":
        ok = (folder / "labels").is_dir() and (find_yaml(folder) is not None or (folder / "classes.txt").is_file())
        return folder if ok else None
    raise ValueError(fmt)


def _file_format(path: Path) -> tuple[str, Path] | None:
    suffix, name = path.suffix.lower(), path.name.lower()
    if name in ("labels.txt", "labels.json"):
        return "png", path.parent
    if name == "labelmap.txt":
        return "voc", path.parent
    if suffix == ".json":
        kind = peek_json_kind(path)
        return (kind, path) if kind else None
    if suffix == ".xml" and _is_cvat(path):
        return "cvat", path
    if suffix in (".yaml", ".yml"):
        return "yolo", path
    return None


OPENERS: dict[str, Callable[[Path], ImportSource]] = {
    "png": MasksSource, "voc": VocSource, "cvat": CvatSource, "coco": CocoSource, "labelme": LabelmeSource,
    "yolo": YoloSource}


def check_import_format(fmt: str) -> str:
    fmt = str(fmt).strip().lower()
    if fmt not in IMPORT_FORMATS:
        raise ImportSourceError(f"Unknown import format '{fmt}'; choose one of {', '.join(IMPORT_FORMATS)}.")
    return fmt


def _places(path: Path, fmt: str) -> tuple[Path, ...]:
    """Where to look for ``fmt``: our export's subfolder for it first, then the folder itself."""
    sub = SUBFOLDERS[fmt]
    return (path / sub, path) if sub and (path / sub).is_dir() else (path,)


def locate(source: str | Path, fmt: str | None = None) -> tuple[str, Path, list[str]]:
    """(format, the path its reader opens, other formats the folder also holds) for ``source``."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ImportSourceError(f"'{path}' does not exist; choose an annotation file or folder.")
    if fmt is not None:
        fmt = check_import_format(fmt)
    if path.is_file():
        found = _file_format(path)
        if fmt is not None and (found is None or found[0] != fmt):
            if fmt in ("labelme", "coco", "cvat", "yolo"):
                return fmt, path, []  # the person says so: the reader will say if it is not
            raise ImportSourceError(f"'{path}' is a file; the {fmt} format is a folder, choose it instead.")
        if found is None:
            raise ImportSourceError(f"'{path}' is not an annotation file this app reads (COCO or labelme JSON, CVAT "
                                    "XML, YOLO data.yaml, labels.txt); choose another, or its folder.")
        return found[0], found[1], []
    if fmt is not None:
        for folder in _places(path, fmt):
            where = _find(folder, fmt)
            if where is not None:
                return fmt, where, []
        raise ImportSourceError(f"'{path}' holds no {fmt} annotations in the layout this app reads (see the README's "
                                "Import section); choose the folder that holds them.")
    found = []
    for name in PREFERENCE:
        for folder in _places(path, name):
            where = _find(folder, name)
            if where is not None:
                found.append((name, where))
                break
    if not found:
        raise ImportSourceError(f"'{path}' holds no annotations this app reads (COCO, PNG label maps with "
                                "labels.txt, VOC, labelme, YOLO or CVAT); choose another folder or a file.")
    return found[0][0], found[0][1], [name for name, _ in found[1:]]


def open_source(source: str | Path, fmt: str | None = None) -> tuple[ImportSource, list[str]]:
    """The reader for ``source`` and the other formats its folder holds (auto-detected unless ``fmt``)."""
    name, where, others = locate(source, fmt)
    return OPENERS[name](where), others

"""The annotation store (Qt-free): part table, per-image edits, the project on disk, and PNG/COCO exports.

The app and the batch CLI share these modules, so what a person does in the window and what a script does to a
folder produce the same files.
"""
from .edits import EditLayer
from .export import (
    CocoWriter,
    ExportResult,
    PngMaskWriter,
    coco_annotations_for,
    export_annotations,
    export_coco,
    export_png,
    mask_relpath,
    merge_coco_parts,
    unique_mask_relpaths,
    write_label_files,
)
from .labels import BACKGROUND, EXPORT_IGNORE, IGNORE_LABEL, UNSET, USER_LABEL_BASE
from .parts import ExportLabel, PartSlot, PartTable, UserLabel
from .project import AnnotationProject, ModelFit
from .records import FileState, ImageRecord, ImageStatus

__all__ = [
    "AnnotationProject", "ModelFit", "ImageRecord", "ImageStatus", "FileState", "EditLayer", "PartTable", "PartSlot",
    "UserLabel", "ExportLabel",
    "PngMaskWriter", "CocoWriter", "ExportResult", "export_annotations", "export_png", "export_coco",
    "merge_coco_parts", "coco_annotations_for", "mask_relpath", "unique_mask_relpaths", "write_label_files",
    "BACKGROUND", "IGNORE_LABEL", "UNSET", "USER_LABEL_BASE", "EXPORT_IGNORE",
]

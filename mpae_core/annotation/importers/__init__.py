"""Annotations made elsewhere → a project's edit layers: COCO (RLE or polygons), PNG label maps (ours and Pascal
VOC/CVAT), labelme JSON, YOLO segmentation and CVAT for images 1.1 XML.

One small module per format turns its files into key maps (:mod:`.source`); :mod:`.detect` finds the format of a
file or folder; :mod:`.matching` finds the project image of each annotation and the project label of each name;
:mod:`.run` is the loop the CLI (``mpae-annotate import``) and the app's File ▸ Import share. Polygons are drawn in
the convention each exporter traced them with (:mod:`.rasterise`), so export → import → export gives the same files.
"""
from __future__ import annotations

from .detect import IMPORT_FORMATS, check_import_format, locate, open_source
from .matching import LabelMatch, plan_labels
from .run import ImportCancelled, ImportPreview, ImportReport, SkippedImage, import_annotations, preview_import
from .source import AnnotationReadError, ImportSource, ImportSourceError

__all__ = ["IMPORT_FORMATS", "AnnotationReadError", "ImportCancelled", "ImportPreview", "ImportReport",
           "ImportSource", "ImportSourceError", "LabelMatch", "SkippedImage", "check_import_format",
           "import_annotations", "locate", "open_source", "plan_labels", "preview_import"]

"""The formats a run writes at its end from its PNG masks: yolo, labelme, cvat, voc, and COCO as polygons.

They go through the app's exporter (:func:`mpae_core.annotation.export.export_indices`), so a batch and an export
from the window give the same files. Written from the masks of every finished image (skipped ones included, as
coco.json is), one image in memory at a time, after the encoders are done: the masks hold the exact export
indices, and a re-run rebuilds these files for the whole folder without predicting anything again.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..annotation.export import export_indices
from .config import DONE_STATUSES, ERROR, BatchConfig, ImageResult
from .encode import Outputs

logger = logging.getLogger(__name__)


def write_derived(config: BatchConfig, outputs: Outputs, results: Sequence[ImageResult]) -> dict[str, Path]:
    """Every derived format of the run (none: nothing written); returns format → file or folder. An image whose
    mask cannot be read becomes an error of the report, so the next run redoes it."""
    formats = outputs.derived
    if not formats:
        return {}

    def finished():
        for result in results:
            if result.status not in DONE_STATUSES:
                continue
            path = outputs.out / outputs.mask_relpath(result.file)
            try:
                with Image.open(path) as mask:
                    if mask.mode not in ("P", "L"):
                        raise ValueError(f"it is a {mask.mode} image, not an 8-bit mask")
                    indices = np.array(mask)
            except (OSError, ValueError) as exc:
                result.status, result.mask = ERROR, None
                result.error = f"Cannot read the mask '{path}' ({exc}); the next run redoes '{result.file}'."
                continue
            yield result.file, indices

    exported = export_indices(finished(), outputs.table.export_labels(), config.out, formats=formats,
                              mask_names=outputs.mask_names, coco_style=config.coco_style, images_dir=config.images,
                              write_labels=False)
    logger.info("Wrote %s for %d images", ", ".join(formats), exported.images)
    return exported.outputs


def derived_writer(config: BatchConfig, outputs: Outputs) -> Callable[[Sequence[ImageResult]], Path | None]:
    """For rank 0 of a torchrun job: writes the derived formats once every rank's masks are there; returns the
    COCO file when COCO was derived (polygons)."""
    return lambda results: write_derived(config, outputs, results).get("coco")

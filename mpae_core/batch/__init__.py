"""Headless batch pre-annotation: a folder of images → part masks (PNG), COCO RLE, a per-image report, and an
annotation project (``OUT/.mpae``, :mod:`.store`) that the app opens for review without predicting again.

A package of one job per module (``config``, ``listing``, ``decode``, ``encode``, ``report``, ``shards``,
``derived``, ``store``, ``run``). Qt-free so the CLI (``mpae-annotate batch``) and, later, the desktop app share
it. The work overlaps in three stages, so decoding and encoding hide behind the model instead of adding to it:

1. a torch DataLoader with worker processes decodes (:func:`load_image`, EXIF applied) and resizes each image to
   the model's uint8 input (normalised later, on the device); on a GPU the workers only decode and the device
   resizes, with the same arithmetic (:mod:`mpae_core.resize`); a file that cannot be read comes back as an error
   record and the run goes on;
2. the calling thread runs the model on whole batches; on a GPU it also makes each image's full-resolution
   export-index map there (:meth:`Predictor.maps_at_sizes`), on the CPU it hands the small logits on;
3. encoder processes write the palette PNG, the COCO RLE annotations and the project's prediction file (the
   logits and a per-part summary), first making the label map from the logits (:func:`label_map_at`, export
   indices through one lookup) when the device did not; maps made on the device reach them through shared memory
   (:class:`~mpae_core.batch.encode.MapArena`), not a pipe. Processes, not threads: these steps hold the GIL for
   much of their time; on a 16-core H100 machine threads of one process capped the pipeline at 190 images/s,
   processes reached 340 (825 once started).

At the end, the formats derived from the masks (YOLO, labelme, CVAT, VOC, and COCO as polygons) are written by the
app's exporter from the PNG masks (``derived``), one image at a time; the masks are then written even without
``png``.

Re-runs: an image is skipped when ``OUT/report.json`` (written by the same checkpoint) says it was done, its
outputs are still there and the project holds its prediction of the file as it is now; an image a person edited or
reviewed in the project is never predicted again. The COCO RLE of every finished image is cached in
``OUT/.mpae-batch/<mask path>.json``, so the ``coco.json`` of a re-run still lists every finished image without
redoing it; when a cache file is missing (e.g. the earlier run wrote PNGs only) the annotations are derived again
from the PNG mask, which holds the same export indices. Images under OUT (when it lies inside IMAGES) or under any
earlier batch output or export (a folder holding ``.mpae-batch/`` or ``.mpae-export.json``) are not listed. OUT's
export list (``.mpae-export-files.jsonl``, :mod:`mpae_core.annotation.export_folder`) records what the runs wrote:
after a complete run, an earlier run's masks and cached RLE of images that are no longer listed are deleted, so the
masks match the smaller COCO file (the project in ``OUT/.mpae`` is never part of that list).

Under ``torchrun`` (``WORLD_SIZE`` > 1) rank r takes images r, r + N, … of the sorted list, one device each, writes
``coco.rank{r}.json``, ``report.rank{r}.json`` and the prediction files of its images, and rank 0 merges them after
a barrier and records every rank's images in the project's index.
"""
from __future__ import annotations

from .config import (CANCELLED, ERROR, FORMATS, OK, SKIPPED, BatchConfig, BatchProgress, BatchReport,
                     BatchUsageError, ImageResult, ProgressCallback, parse_formats)
from .run import run_batch
from .shards import Shard

__all__ = ["CANCELLED", "ERROR", "FORMATS", "OK", "SKIPPED", "BatchConfig", "BatchProgress", "BatchReport",
           "BatchUsageError", "ImageResult", "ProgressCallback", "Shard", "parse_formats", "run_batch"]

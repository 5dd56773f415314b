"""Stage 3: encoder processes turn predictions into label maps, palette PNGs and cached COCO RLE."""
from __future__ import annotations

import functools
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..annotation.export import PngMaskWriter, coco_annotations_for
from ..annotation.parts import PartTable
from ..annotation.storage import atomic_write_json
from ..inference import channel_lut, label_map_at
from ..worker_signals import ignore_stop_signals
from .config import CACHE_DIR, ERROR, OK, ImageResult


# ----- stage 3: label maps and encoding in encoder processes ---------------------------------------------------
@dataclass
class Outputs:
    """Where one run writes, and the writers the encoders use (each encoder process holds a copy)."""

    out: Path
    table: PartTable
    mask_names: dict[str, str]
    formats: tuple[str, ...]
    png: PngMaskWriter | None = None

    @functools.cached_property
    def channel_to_export(self) -> np.ndarray:
        """Model channel → export index, so label maps come out as export indices in one lookup."""
        return channel_lut(self.table.num_parts + 1, self.table.slot_to_export_index())

    def mask_relpath(self, relpath: str) -> str:
        return f"masks/{self.mask_names[relpath]}"

    def cache_path(self, relpath: str) -> Path:
        return self.out / CACHE_DIR / f"{self.mask_names[relpath]}.json"


@dataclass
class EncodeJob:
    """One predicted image on its way to an encoder process: its logits (small: Q × 16 × 16 floats), from which the
    encoder makes the label map, or the export-index map already made on the device."""

    index: int
    relpath: str
    size: tuple[int, int]
    seconds: float  # decoding + this image's share of the model call
    logits: np.ndarray | None = None
    indices: np.ndarray | None = None


def encode_image(outputs: Outputs, job: EncodeJob) -> ImageResult:
    """Logits → full-resolution export-index map (unless the device made it) → PNG and/or cached RLE; a write
    failure fails this image only."""
    start = time.perf_counter()
    relpath = job.relpath
    try:
        indices = job.indices
        if indices is None:
            indices = label_map_at(job.logits, job.size, lut=outputs.channel_to_export)
        if outputs.png is not None:
            outputs.png.add_indices(relpath, indices)
        if "coco" in outputs.formats:
            write_cache(outputs.cache_path(relpath), relpath, indices.shape, coco_annotations_for(indices))
    except OSError as exc:
        return ImageResult(relpath, ERROR, f"Cannot write the outputs of '{relpath}': {exc.strerror or exc}.",
                           seconds=job.seconds + time.perf_counter() - start)
    mask = outputs.mask_relpath(relpath) if outputs.png is not None else None
    return ImageResult(relpath, OK, mask=mask, seconds=job.seconds + time.perf_counter() - start)


_ENCODER_OUTPUTS: Outputs | None = None


def _init_encoder(outputs: Outputs) -> None:
    global _ENCODER_OUTPUTS
    _ENCODER_OUTPUTS = outputs
    ignore_stop_signals()  # Ctrl-C stops the main loop, which lets queued jobs finish
    torch.set_num_threads(1)


def _encode_jobs(jobs: list[EncodeJob]) -> list[ImageResult]:
    assert _ENCODER_OUTPUTS is not None, "encoder process not initialised"
    return [encode_image(_ENCODER_OUTPUTS, job) for job in jobs]


def _encode_jobs_here(outputs: Outputs, jobs: list[EncodeJob]) -> list[ImageResult]:
    return [encode_image(outputs, job) for job in jobs]


class Encoders:
    """Runs encode jobs in ``processes`` processes (0: one thread of this process).

    A batch is sent as a few tasks of ``chunk`` images, so that one batch keeps several processes busy (a whole
    batch per task left most of them idle at batch size 32) while the per-task cost stays small."""

    def __init__(self, outputs: Outputs, processes: int, batch_size: int) -> None:
        self.outputs = outputs
        self.chunk = max(2, -(-batch_size // max(1, processes)))
        if processes > 0:
            # fork on Linux starts in milliseconds; elsewhere the platform's default (spawn) re-imports this module
            context = mp.get_context("fork") if sys.platform.startswith("linux") else None
            self.pool: Executor = ProcessPoolExecutor(processes, mp_context=context, initializer=_init_encoder,
                                                      initargs=(outputs,))
            self.pool.submit(int).result()  # start the processes now, before the DataLoader adds threads to fork
        else:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="mpae-encode")
        self.in_process = processes == 0

    def submit(self, jobs: list[EncodeJob]) -> Future:
        if self.in_process:
            return self.pool.submit(_encode_jobs_here, self.outputs, jobs)
        return self.pool.submit(_encode_jobs, jobs)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def write_cache(path: Path, relpath: str, size: tuple[int, int], annotations: list[dict[str, Any]]) -> None:
    atomic_write_json(path, {"file_name": relpath, "height": int(size[0]), "width": int(size[1]),
                             "annotations": annotations}, fsync=False, indent=None)


def cached_annotations(outputs: Outputs, relpath: str) -> tuple[tuple[int, int], list[dict[str, Any]]]:
    """An image's COCO annotations from its cache file, or derived again from its PNG mask."""
    path = outputs.cache_path(relpath)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("file_name") == relpath:
            return (int(data["height"]), int(data["width"])), list(data["annotations"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    mask = outputs.out / outputs.mask_relpath(relpath)
    with Image.open(mask) as im:
        indices = np.asarray(im)
    annotations = coco_annotations_for(indices)
    write_cache(path, relpath, indices.shape, annotations)
    return indices.shape, annotations  # type: ignore[return-value]



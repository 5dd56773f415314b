"""Stage 3: encoder processes turn predictions into label maps, palette PNGs and cached COCO RLE."""
from __future__ import annotations

import functools
import json
import mmap
import multiprocessing as mp
import sys
import time
from collections import deque
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
from .config import CACHE_DIR, ERROR, OK, ImageResult, derived_formats
from .store import PredictionFiles

ARENA_BYTES_PER_MAP = 2 * 2**20  # room for a 2 MP map (1600x1200) per image of a chunk; larger ones are pickled


# ----- stage 3: label maps and encoding in encoder processes ---------------------------------------------------
@dataclass
class Outputs:
    """Where one run writes, and the writers the encoders use (each encoder process holds a copy)."""

    out: Path
    table: PartTable
    mask_names: dict[str, str]
    formats: tuple[str, ...]
    png: PngMaskWriter | None = None
    coco_style: str = "rle"
    predictions: PredictionFiles | None = None  # the project's prediction files (batch.store)

    @property
    def coco_rle(self) -> bool:
        """COCO RLE, cached per image by the encoders; COCO polygons are derived at the end like yolo etc."""
        return "coco" in self.formats and self.coco_style == "rle"

    @property
    def derived(self) -> tuple[str, ...]:
        return derived_formats(self.formats, self.coco_style)

    @property
    def writes_masks(self) -> bool:
        """PNG masks are written when asked for and whenever a format is derived from them at the end."""
        return "png" in self.formats or bool(self.derived)

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
    encoder makes the label map unless the device made it (``indices``), and the project's prediction file."""

    index: int
    relpath: str
    size: tuple[int, int]
    seconds: float  # decoding + this image's share of the model call
    logits: np.ndarray | None = None
    indices: np.ndarray | None = None
    shared_at: int | None = None  # byte offset of the indices in the encoders' MapArena, instead of ``indices``
    stamp: tuple[int, int] | None = None  # the image file as it was read


class MapArena:
    """Memory shared with forked encoder processes, for handing them export-index maps.

    A 640x480 map is 300 kB. Pickled, every map goes through the pool's one call pipe; on a 2-core machine that
    pipe carried 1,600-3,600 maps/s (benchmarks/bench_batch_handover.py), about what an H100 makes. Here the main process copies a chunk's maps into a free
    slot and sends only offsets; a slot is reused once the chunk's future is done. A chunk that does not fit, or
    finds every slot in use, is pickled as before.
    """

    def __init__(self, slots: int, slot_bytes: int) -> None:
        self.buffer = mmap.mmap(-1, slots * slot_bytes)  # anonymous and shared: forked children see these pages
        self.slot_bytes = slot_bytes
        self._free = deque(range(slots))

    def put(self, maps: list[np.ndarray]) -> tuple[int, list[int]] | None:
        """Copy ``maps`` (uint8) into a free slot: (slot, byte offset of each), or None to send them pickled."""
        if sum(m.nbytes for m in maps) > self.slot_bytes or not self._free:
            return None
        slot = self._free.popleft()
        offsets, offset = [], slot * self.slot_bytes
        for m in maps:
            self.view(offset, m.shape)[...] = m
            offsets.append(offset)
            offset += m.nbytes
        return slot, offsets

    def view(self, offset: int, shape: tuple[int, ...]) -> np.ndarray:
        return np.frombuffer(self.buffer, dtype=np.uint8, count=int(np.prod(shape)), offset=offset).reshape(shape)

    def release(self, slot: int) -> None:
        self._free.append(slot)  # deque.append is atomic: futures' callbacks may run on another thread


def encode_image(outputs: Outputs, job: EncodeJob) -> ImageResult:
    """Logits → full-resolution export-index map (unless the device made it) → PNG and/or cached RLE, and the
    project's prediction file; a write failure fails this image only."""
    start = time.perf_counter()
    relpath = job.relpath
    try:
        indices = job.indices
        if job.shared_at is not None:
            assert _ENCODER_ARENA is not None, "a shared map reached an encoder without the arena"
            indices = _ENCODER_ARENA.view(job.shared_at, job.size)
        elif indices is None:
            indices = label_map_at(job.logits, job.size, lut=outputs.channel_to_export)
        if outputs.png is not None:
            outputs.png.add_indices(relpath, indices)
        if outputs.coco_rle:
            write_cache(outputs.cache_path(relpath), relpath, indices.shape, coco_annotations_for(indices))
        stored = None
        if outputs.predictions is not None and job.logits is not None:
            stored = outputs.predictions.write(relpath, job.logits, job.size, job.stamp)
    except OSError as exc:
        return ImageResult(relpath, ERROR, f"Cannot write the outputs of '{relpath}': {exc.strerror or exc}.",
                           seconds=job.seconds + time.perf_counter() - start)
    mask = outputs.mask_relpath(relpath) if outputs.png is not None else None
    return ImageResult(relpath, OK, mask=mask, seconds=job.seconds + time.perf_counter() - start, stored=stored)


_ENCODER_OUTPUTS: Outputs | None = None
_ENCODER_ARENA: MapArena | None = None


def _init_encoder(outputs: Outputs, arena: MapArena | None) -> None:
    global _ENCODER_OUTPUTS, _ENCODER_ARENA
    _ENCODER_OUTPUTS, _ENCODER_ARENA = outputs, arena
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

    def __init__(self, outputs: Outputs, processes: int, batch_size: int, max_pending: int = 0) -> None:
        self.outputs = outputs
        self.chunk = max(2, -(-batch_size // max(1, processes)))
        self.arena: MapArena | None = None
        if processes > 0:
            # fork on Linux starts in milliseconds; elsewhere the platform's default (spawn) re-imports this module
            fork = sys.platform.startswith("linux")
            if fork and max_pending > 0:  # every chunk that may be in flight, one batch's worth beyond max_pending
                slots = max_pending + -(-batch_size // self.chunk) + 1
                self.arena = MapArena(slots, self.chunk * ARENA_BYTES_PER_MAP)
            self.pool: Executor = ProcessPoolExecutor(processes, mp_context=mp.get_context("fork") if fork else None,
                                                      initializer=_init_encoder, initargs=(outputs, self.arena))
            self.pool.submit(int).result()  # start the processes now, before the DataLoader adds threads to fork
        else:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="mpae-encode")
        self.in_process = processes == 0

    def submit(self, jobs: list[EncodeJob]) -> Future:
        if self.in_process:  # a thread of this process: the maps need no copy
            return self.pool.submit(_encode_jobs_here, self.outputs, jobs)
        placed = self._share_maps(jobs)
        future = self.pool.submit(_encode_jobs, jobs)
        if placed is not None:
            future.add_done_callback(lambda _, slot=placed: self.arena.release(slot))  # type: ignore[union-attr]
        return future

    def _share_maps(self, jobs: list[EncodeJob]) -> int | None:
        """Move the jobs' maps into the arena when they fit; returns the slot to release once they are encoded."""
        if self.arena is None or any(job.indices is None for job in jobs):
            return None
        placed = self.arena.put([job.indices for job in jobs])  # type: ignore[misc]
        if placed is None:
            return None
        slot, offsets = placed
        for job, offset in zip(jobs, offsets):
            job.indices, job.shared_at = None, offset
        return slot

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



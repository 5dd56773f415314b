"""Headless batch pre-annotation: a folder of images → part masks (PNG), COCO RLE and a per-image report.

Qt-free so the CLI (``mpae-annotate batch``) and, later, the desktop app share it. The work overlaps in three
stages, so decoding and encoding hide behind the model instead of adding to it:

1. a torch DataLoader with worker processes decodes (:func:`load_image`, EXIF applied) and preprocesses each image;
   a file that cannot be read comes back as an error record and the run goes on;
2. the calling thread runs the model on whole batches (:meth:`Predictor.logits`);
3. encoder processes turn each image's logits into its full-resolution label map (:func:`label_map_at`), the
   export indices (:meth:`PartTable.to_export`), the palette PNG and the COCO RLE annotations. Processes, not
   threads: these steps hold the GIL for much of their time; on a 16-core H100 machine threads of one process
   capped the pipeline at 190 images/s, processes reached 340 (825 once started).

Re-runs: an image is skipped when ``OUT/report.json`` (written by the same checkpoint) says it was done and its
outputs are still there. The COCO RLE of every finished image is cached in ``OUT/.mpae-batch/<mask path>.json``,
so the ``coco.json`` of a re-run still lists every finished image without redoing it; when a cache file is missing
(e.g. the earlier run wrote PNGs only) the annotations are derived again from the PNG mask, which holds the same
export indices. Images under OUT (when it lies inside IMAGES) or under any earlier batch output (a folder holding
``.mpae-batch/``) are not listed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) rank r takes images r, r + N, … of the sorted list, one device each, writes
``coco.rank{r}.json`` and ``report.rank{r}.json``, and rank 0 merges them after a barrier.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .annotation.export import (
    CocoWriter,
    PngMaskWriter,
    coco_annotations_for,
    coco_categories,
    merge_coco_parts,
    unique_mask_relpaths,
    write_label_files,
)
from .annotation.parts import PartTable
from .annotation.storage import atomic_write_json
from .checkpoint import load_checkpoint
from .errors import MPAEError
from .images import ImageLoadError, list_images, load_image
from .inference import Predictor, label_map_at, preprocess
from .worker_signals import ignore_stop_signals

logger = logging.getLogger(__name__)

FORMATS = ("png", "coco")
REPORT_FORMAT = "mpae-batch-report"
REPORT_VERSION = 1
CACHE_DIR = ".mpae-batch"
OK, ERROR, SKIPPED, CANCELLED = "ok", "error", "skipped", "cancelled"
DONE_STATUSES = (OK, SKIPPED)  # what a re-run may skip (skipped = finished by an earlier run)
DIST_TIMEOUT = datetime.timedelta(hours=12)  # ranks wait at the barrier for the slowest one


class BatchUsageError(MPAEError):
    """The run cannot start (bad folder, option or device): the CLI exits with code 2."""


# ----- configuration and results ------------------------------------------------------------------------------------
@dataclass
class BatchConfig:
    """Everything ``mpae-annotate batch`` can be told; paths may be str or Path."""

    images: Path
    checkpoint: Path | None
    out: Path
    formats: tuple[str, ...] = FORMATS
    device: str = "auto"
    batch_size: int = 8
    recursive: bool = False
    overwrite: bool = False
    workers: int | None = None  # decoding processes (DataLoader); None = a third of the CPUs, 0 = in this process
    encoders: int | None = None  # label map + PNG + RLE processes; None = half the CPUs, 0 = a thread of this one
    backbone_weights: Path | None = None
    allow_random_backbone: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.images, self.out = Path(self.images), Path(self.out)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        self.backbone_weights = Path(self.backbone_weights) if self.backbone_weights else None
        self.formats = parse_formats(self.formats)
        if self.batch_size < 1:
            raise BatchUsageError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.workers is not None and self.workers < 0:
            raise BatchUsageError(f"--workers must be 0 or more, got {self.workers}.")
        if self.encoders is not None and self.encoders < 0:
            raise BatchUsageError(f"The number of encoder processes must be 0 or more, got {self.encoders}.")

    @property
    def num_workers(self) -> int:
        """Decoding costs about 2/3 of encoding per image (see benchmarks/bench_batch.py), hence 1/3 vs 1/2."""
        return self.workers if self.workers is not None else min(8, max(1, available_cpus() // 3))

    @property
    def num_encoders(self) -> int:
        return self.encoders if self.encoders is not None else min(12, max(1, available_cpus() // 2))


def available_cpus() -> int:
    """CPUs this process may use, shared with the other torchrun ranks on this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """'png,coco' or a sequence → a tuple in canonical order; unknown names are a usage error."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = {n.strip().lower() for n in names if n.strip()}
    unknown = chosen - set(FORMATS)
    if unknown or not chosen:
        raise BatchUsageError(f"Unknown output format(s) {sorted(unknown) or 'none'}; choose png, coco or png,coco.")
    return tuple(f for f in FORMATS if f in chosen)


@dataclass
class ImageResult:
    """One image's line of the report; ``mask`` is relative to OUT."""

    file: str
    status: str
    error: str | None = None
    mask: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "error": self.error, "mask": self.mask,
                "seconds": round(self.seconds, 4)}


@dataclass
class BatchProgress:
    """Passed to the progress callback after every image (``done`` counts skipped and failed images too)."""

    done: int
    total: int
    ok: int
    failed: int
    skipped: int
    file: str
    status: str


@dataclass
class BatchReport:
    """What a run did; on rank 0 of a torchrun job it covers all ranks."""

    out: Path
    images: list[ImageResult]
    seconds: float
    device: str
    cancelled: bool = False
    report_path: Path | None = None
    coco_path: Path | None = None
    rank: int = 0
    world_size: int = 1

    def count(self, status: str) -> int:
        return sum(1 for r in self.images if r.status == status)

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.images if r.status == ERROR]

    @property
    def succeeded(self) -> bool:
        return not self.failed and not self.cancelled and not self.count(CANCELLED)

    def totals(self) -> dict[str, Any]:
        processed = self.count(OK)
        return {"images": len(self.images), "ok": processed, "error": self.count(ERROR),
                "skipped": self.count(SKIPPED), "cancelled": self.count(CANCELLED),
                "seconds": round(self.seconds, 3),
                "images_per_second": round(processed / self.seconds, 3) if self.seconds > 0 else None}


ProgressCallback = Callable[[BatchProgress], None]


# ----- distributed context ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Which part of the image list this process handles (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Shard":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def take(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.rank :: self.world_size])

    def device(self, requested: str) -> str:
        """One GPU per rank (cuda:LOCAL_RANK) when CUDA is there and the device is auto/cuda; else as asked."""
        name = requested.strip().lower()
        if self.distributed and name in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        if self.distributed and name == "auto":
            return "cpu"
        return requested


def _init_distributed(shard: Shard, device: torch.device) -> bool:
    """Join the torchrun process group (gloo on the CPU, nccl on CUDA); False when already joined by the caller."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=shard.rank, world_size=shard.world_size, timeout=DIST_TIMEOUT)
    return True


def _barrier(device: torch.device) -> None:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[device.index or 0])
    else:
        dist.barrier()


# ----- the image list -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageItem:
    """One listed image; ``relpath`` (POSIX) names it in the report, the COCO file and the mask path."""

    index: int  # position in the full sorted list (all ranks)
    relpath: str
    path: str


def collect_images(images: Path, out: Path, recursive: bool) -> list[ImageItem]:
    """The sorted image list, without anything under OUT (when OUT lies inside IMAGES) or under an earlier batch
    output (a folder holding ``.mpae-batch/``): masks are never annotated as images."""
    try:
        found = list_images(images, recursive=recursive)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BatchUsageError(str(exc)) from None
    except OSError as exc:
        raise BatchUsageError(f"Cannot list the image folder '{images}': {exc.strerror or exc}.") from None
    out_dir = out.resolve()
    outputs = _OutputFolders(images)
    kept = [p for p in found if not p.resolve().is_relative_to(out_dir) and not outputs.contains(p)]
    if not kept:
        hint = "" if recursive else " (add --recursive to include subfolders)"
        raise BatchUsageError(f"No images found in '{images}'{hint}.")
    return [ImageItem(i, p.relative_to(images).as_posix(), str(p)) for i, p in enumerate(kept)]


class _OutputFolders:
    """Answers "is this file inside a batch output folder under the image root?", one stat per folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[Path, bool] = {}

    def contains(self, path: Path) -> bool:
        return any(self._is_output(folder) for folder in path.relative_to(self.root).parents
                   if folder != Path("."))

    def _is_output(self, relative: Path) -> bool:
        if relative not in self._known:
            self._known[relative] = (self.root / relative / CACHE_DIR).is_dir()
        return self._known[relative]


# ----- stage 1: decoding in DataLoader workers ------------------------------------------------------------------------
class ImageDataset(torch.utils.data.Dataset):
    """Decodes and preprocesses one image per item; a bad file becomes an error record, never an exception."""

    def __init__(self, items: Sequence[ImageItem], image_size: int) -> None:
        self.items, self.image_size = list(items), image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        start = time.perf_counter()
        record: dict[str, Any] = {"index": item.index, "relpath": item.relpath, "pixels": None, "size": None,
                                  "error": None}
        try:
            image = load_image(item.path)
            record["size"] = (image.height, image.width)
            record["pixels"] = preprocess(image, self.image_size)
        except ImageLoadError as exc:
            record["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop a run of thousands
            record["error"] = f"Cannot read '{item.path}': {type(exc).__name__}: {exc}."
        record["seconds"] = time.perf_counter() - start
        return record


def collate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good images into one tensor (in the worker, off the model's thread); keep the rest as records."""
    good = [r for r in records if r["error"] is None]
    pixels = torch.stack([r.pop("pixels") for r in good]) if good else torch.empty(0)
    for r in records:
        r.pop("pixels", None)
    return {"pixels": pixels, "records": records}


def make_loader(items: Sequence[ImageItem], image_size: int, batch_size: int, workers: int,
                pin_memory: bool) -> torch.utils.data.DataLoader:
    extra = {"prefetch_factor": 4} if workers > 0 else {}
    return torch.utils.data.DataLoader(ImageDataset(items, image_size), batch_size=batch_size, shuffle=False,
                                       num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                                       worker_init_fn=ignore_stop_signals, **extra)


# ----- stage 3: label maps and encoding in encoder processes ---------------------------------------------------
@dataclass
class Outputs:
    """Where one run writes, and the writers the encoders use (each encoder process holds a copy)."""

    out: Path
    table: PartTable
    mask_names: dict[str, str]
    formats: tuple[str, ...]
    png: PngMaskWriter | None = None

    def mask_relpath(self, relpath: str) -> str:
        return f"masks/{self.mask_names[relpath]}"

    def cache_path(self, relpath: str) -> Path:
        return self.out / CACHE_DIR / f"{self.mask_names[relpath]}.json"


@dataclass
class EncodeJob:
    """One predicted image on its way to an encoder process (logits are small: Q × 16 × 16 floats)."""

    index: int
    relpath: str
    size: tuple[int, int]
    logits: np.ndarray
    seconds: float  # decoding + this image's share of the model call


def encode_image(outputs: Outputs, job: EncodeJob) -> ImageResult:
    """Logits → full-resolution label map → export indices → PNG and/or cached RLE; a write failure fails this
    image only."""
    start = time.perf_counter()
    relpath = job.relpath
    try:
        indices = outputs.table.to_export(label_map_at(job.logits, job.size))
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


# ----- stage 2: the model loop ------------------------------------------------------------------------------------
class _Tally:
    """Counts results and reports progress; results are kept by their index in the full list."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.total, self.progress = total, progress
        self.results: dict[int, ImageResult] = {}
        self.counts = {OK: 0, ERROR: 0, SKIPPED: 0, CANCELLED: 0}

    def add(self, index: int, result: ImageResult) -> None:
        self.results[index] = result
        self.counts[result.status] += 1
        if result.status == ERROR:
            logger.info("%s", result.error)
        if self.progress is not None and result.status != CANCELLED:  # a cancelled image made no progress
            self.progress(BatchProgress(len(self.results), self.total, self.counts[OK], self.counts[ERROR],
                                        self.counts[SKIPPED], result.file, result.status))


def _pad(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a short batch to the usual size so CUDA graphs replay one captured shape instead of capturing more."""
    if pixels.shape[0] >= size:
        return pixels
    return torch.cat([pixels, pixels.new_zeros((size - pixels.shape[0], *pixels.shape[1:]))])


def predict_and_encode(predictor: Predictor, loader: torch.utils.data.DataLoader, encoders: Encoders,
                       tally: _Tally, max_pending: int, cancel: threading.Event | None) -> bool:
    """The main loop: model calls here, encoding in ``encoders``; returns True when it stopped early (cancel flag
    or Ctrl-C). At most ``max_pending`` encode jobs wait, which bounds memory."""
    pending: deque[tuple[list[int], Future]] = deque()
    pad_to = loader.batch_size if predictor.device.type == "cuda" else 0
    stopped = False

    def collect(block: bool) -> None:
        while pending and (block or pending[0][1].done() or len(pending) > max_pending):
            indices, future = pending.popleft()
            for index, result in zip(indices, future.result()):
                tally.add(index, result)

    try:
        for batch in loader:
            if cancel is not None and cancel.is_set():
                stopped = True
                break
            records = batch["records"]
            good = [r for r in records if r["error"] is None]
            for r in records:
                if r["error"] is not None:
                    tally.add(r["index"], ImageResult(r["relpath"], ERROR, r["error"], seconds=r["seconds"]))
            if good:
                start = time.perf_counter()
                logits = predictor.logits(_pad(batch["pixels"], pad_to))[: len(good)].numpy()
                share = (time.perf_counter() - start) / len(good)
                jobs = [EncodeJob(r["index"], r["relpath"], r["size"], row, r["seconds"] + share)
                        for r, row in zip(good, logits)]
                for start in range(0, len(jobs), encoders.chunk):  # spread a batch over the encoders
                    chunk = jobs[start : start + encoders.chunk]
                    pending.append(([job.index for job in chunk], encoders.submit(chunk)))
            collect(block=False)
    except KeyboardInterrupt:
        logger.warning("Interrupted; finishing the images already predicted.")
        stopped = True
    finally:
        collect(block=True)
    return stopped


# ----- the run ------------------------------------------------------------------------------------------------------
def checkpoint_fingerprint(path: Path) -> str:
    """A cheap identity of a checkpoint file (size + first and last MiB), so a re-run with another model redoes
    every image instead of mixing two models' masks."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(2**20))
        if size > 2**20:
            f.seek(max(2**20, size - 2**20))
            digest.update(f.read(2**20))
    return digest.hexdigest()[:32]


def previous_statuses(out: Path, fingerprint: str | None) -> dict[str, str]:
    """file → status from an earlier ``report.json`` of the same checkpoint; empty when there is none."""
    path = out / "report.json"
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        statuses = {str(e["file"]): str(e["status"]) for e in data["images"]}
        previous = data.get("checkpoint", {}).get("fingerprint")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("Ignoring the unreadable earlier report %s (%s); every image is done again.", path, exc)
        return {}
    if previous != fingerprint:
        logger.warning("The earlier run in %s used another checkpoint; every image is done again.", out)
        return {}
    return statuses


def is_finished(outputs: Outputs, relpath: str, previous: dict[str, str]) -> bool:
    """Done by an earlier run: the report says so and the outputs this run needs are there."""
    if previous.get(relpath) not in DONE_STATUSES:
        return False
    mask_there = (outputs.out / outputs.mask_relpath(relpath)).is_file()
    if "png" in outputs.formats and not mask_there:
        return False
    return "coco" not in outputs.formats or mask_there or outputs.cache_path(relpath).is_file()


def versions() -> dict[str, str]:
    import timm

    from . import __version__

    return {"mpae_annotator": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "pillow": Image.__version__}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _load_model(config: BatchConfig, device: torch.device):
    if config.checkpoint is None:
        raise BatchUsageError("No checkpoint given; pass --checkpoint.")
    return load_checkpoint(config.checkpoint, backbone_weights=config.backbone_weights,
                           allow_random_backbone=config.allow_random_backbone, device=device)


def _resolve_device(name: str) -> torch.device:
    from .devices import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise BatchUsageError(str(exc).split("\n")[0]) from None


def _check_out(out: Path, create: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BatchUsageError(f"The output '{out}' is a file; choose a folder.")
    if not create:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchUsageError(f"Cannot create the output folder '{out}': {exc.strerror or exc}.") from None


def run_batch(config: BatchConfig, *, progress: ProgressCallback | None = None,
              cancel: threading.Event | None = None, model=None, predictor: Predictor | None = None,
              shard: Shard | None = None) -> BatchReport:
    """Pre-annotate ``config.images`` into ``config.out``; see the module docstring.

    ``model`` (or a ready ``predictor``, whose device wins) skips loading the checkpoint: the app and the benchmark
    pass theirs. ``cancel`` stops the run between batches and still writes the report of what was done; ``shard``
    defaults to torchrun's environment. Raises BatchUsageError / CheckpointError / BackboneWeightsError before
    anything is written when the run cannot start.
    """
    started = time.perf_counter()
    shard = shard or Shard.from_env()
    items = collect_images(config.images, config.out, config.recursive)
    _check_out(config.out, create=False)  # created only once the model has loaded
    device = predictor.device if predictor is not None else _resolve_device(shard.device(config.device))
    joined = _init_distributed(shard, device) if shard.distributed else False
    try:
        if predictor is None:
            predictor = Predictor(model if model is not None else _load_model(config, device), device,
                                  precision=config.precision)
        model = predictor.model
        _check_out(config.out, create=True)
        table = PartTable.from_model_info(model.info.part_names, model.info.part_colors)
        fingerprint = (checkpoint_fingerprint(config.checkpoint) if config.checkpoint is not None
                       and config.checkpoint.is_file() else None)
        outputs = Outputs(config.out, table, unique_mask_relpaths(i.relpath for i in items), config.formats)
        if shard.rank == 0:
            write_label_files(table.export_labels(), config.out)
        (config.out / CACHE_DIR).mkdir(exist_ok=True)  # also marks OUT as a batch output for later listings
        if "png" in config.formats:
            outputs.png = PngMaskWriter(config.out, table, mask_names=outputs.mask_names, write_labels=False)
        mine = shard.take(items)
        report = _run_shard(config, predictor, outputs, mine, fingerprint, progress, cancel, started, shard)
        _write_rank_files(config, outputs, report, model, fingerprint, shard)
        if shard.distributed:
            _barrier(device)
            if shard.rank == 0:
                report = _merge_ranks(config, report, items, started, shard)
        return report
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_shard(config: BatchConfig, predictor: Predictor, outputs: Outputs, mine: list[ImageItem],
               fingerprint: str | None, progress: ProgressCallback | None, cancel: threading.Event | None,
               started: float, shard: Shard) -> BatchReport:
    previous = {} if config.overwrite else previous_statuses(config.out, fingerprint)
    tally = _Tally(len(mine), progress)
    todo = []
    for item in mine:
        if is_finished(outputs, item.relpath, previous):
            mask = outputs.mask_relpath(item.relpath) if "png" in config.formats else None
            tally.add(item.index, ImageResult(item.relpath, SKIPPED, mask=mask))
        else:
            todo.append(item)
    logger.info("%d images to predict, %d finished earlier (rank %d of %d)", len(todo), len(mine) - len(todo),
                shard.rank, shard.world_size)
    stopped = False
    if todo:
        encoders = Encoders(outputs, config.num_encoders, config.batch_size)  # forked before the loader's threads
        try:
            loader = make_loader(todo, predictor.image_size, config.batch_size, config.num_workers,
                                 pin_memory=predictor.device.type == "cuda")
            stopped = predict_and_encode(predictor, loader, encoders, tally, 2 * max(1, config.num_encoders),
                                         cancel)
        finally:
            encoders.close()
    for item in todo:
        if item.index not in tally.results:
            tally.add(item.index, ImageResult(item.relpath, CANCELLED))
    results = [tally.results[i.index] for i in mine]
    return BatchReport(config.out, results, time.perf_counter() - started, describe_device(predictor.device),
                       cancelled=stopped, rank=shard.rank, world_size=shard.world_size)


def _part_names(out: Path, shard: Shard) -> tuple[Path, Path]:
    if not shard.distributed:
        return out / "coco.json", out / "report.json"
    return out / f"coco.rank{shard.rank}.json", out / f"report.rank{shard.rank}.json"


def _write_rank_files(config: BatchConfig, outputs: Outputs, report: BatchReport, model, fingerprint: str | None,
                      shard: Shard) -> None:
    """This process's coco and report files (the final ones when there is one rank)."""
    coco_path, report_path = _part_names(config.out, shard)
    if "coco" in config.formats:
        report.coco_path = write_coco(outputs, report.images, coco_path)
    report.report_path = write_report(report_path, report_dict(config, report, model, fingerprint))


def write_coco(outputs: Outputs, results: Sequence[ImageResult], path: Path) -> Path:
    """COCO file of every finished image, in list order, from the per-image caches (one image in memory).

    An image whose cache and mask are both unreadable becomes an error of the report, so the next run redoes it."""
    with CocoWriter(path, categories=coco_categories(outputs.table.export_labels())) as writer:
        for result in results:
            if result.status not in DONE_STATUSES:
                continue
            try:
                size, annotations = cached_annotations(outputs, result.file)
            except (OSError, ValueError) as exc:
                result.status, result.mask = ERROR, None
                result.error = (f"Cannot read the earlier results of '{result.file}' ({exc}); the next run redoes "
                                "it.")
                continue
            writer.add_encoded(result.file, size, annotations)
    return path


def report_dict(config: BatchConfig, report: BatchReport, model, fingerprint: str | None) -> dict[str, Any]:
    info = model.info
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "images_dir": str(config.images.resolve()), "out_dir": str(config.out.resolve()),
        "checkpoint": {"path": str(config.checkpoint.resolve()) if config.checkpoint else info.source,
                       "format": info.source_format, "fingerprint": fingerprint, "num_parts": model.cfg.num_parts,
                       "backbone": model.cfg.backbone, "image_size": model.cfg.image_size},
        "device": report.device, "world_size": report.world_size, "formats": list(config.formats),
        "batch_size": config.batch_size, "versions": versions(), "cancelled": report.cancelled,
        "totals": report.totals(),
        "errors": [{"file": r.file, "error": r.error} for r in report.failed],
        "images": [r.to_dict() for r in report.images],
    }


def write_report(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write_json(path, data, fsync=False, indent=1)


def _merge_ranks(config: BatchConfig, mine: BatchReport, items: Sequence[ImageItem], started: float,
                 shard: Shard) -> BatchReport:
    """Rank 0: one coco.json and report.json from every rank's parts, which are then removed."""
    coco_parts = [config.out / f"coco.rank{r}.json" for r in range(shard.world_size)]
    report_parts = [config.out / f"report.rank{r}.json" for r in range(shard.world_size)]
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in report_parts]
    order = {item.relpath: item.index for item in items}
    entries = sorted((e for part in parts for e in part["images"]), key=lambda e: order[e["file"]])
    results = [ImageResult(e["file"], e["status"], e["error"], e["mask"], e["seconds"]) for e in entries]
    devices = sorted({part["device"] for part in parts})
    merged = BatchReport(config.out, results, time.perf_counter() - started, ", ".join(devices),
                         cancelled=any(part["cancelled"] for part in parts), world_size=shard.world_size)
    if "coco" in config.formats:
        merged.coco_path = merge_coco_parts(coco_parts, config.out / "coco.json")
    data = dict(parts[0], device=merged.device, cancelled=merged.cancelled, totals=merged.totals(),
                errors=[{"file": r.file, "error": r.error} for r in merged.failed],
                images=[r.to_dict() for r in results], devices=[part["device"] for part in parts])
    merged.report_path = write_report(config.out / "report.json", data)
    for path in (*coco_parts, *report_parts):
        path.unlink(missing_ok=True)
    return merged

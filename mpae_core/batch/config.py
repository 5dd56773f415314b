"""Batch settings, result records and a run's report: what the CLI, the app and the benchmark pass in and get."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..annotation.formats import EXPORT_FORMATS, check_coco_style, parse_export_formats
from ..errors import MPAEError


FORMATS = EXPORT_FORMATS
DEFAULT_FORMATS = ("png", "coco")
#: Formats written at the end of a run from the PNG masks (which the run then writes even without 'png').
DERIVED_FORMATS = ("yolo", "labelme", "cvat", "voc")
REPORT_FORMAT = "mpae-batch-report"
REPORT_VERSION = 1
CACHE_DIR = ".mpae-batch"
OK, ERROR, SKIPPED, CANCELLED = "ok", "error", "skipped", "cancelled"
DONE_STATUSES = (OK, SKIPPED)  # what a re-run may skip (skipped = finished by an earlier run)


class BatchUsageError(MPAEError):
    """The run cannot start (bad folder, option or device) or cannot go on (a decoding worker process failed): the
    CLI exits with code 2."""


# ----- configuration and results ------------------------------------------------------------------------------------
@dataclass
class BatchConfig:
    """Everything ``mpae-annotate batch`` can be told; paths may be str or Path."""

    images: Path
    checkpoint: Path | None
    out: Path
    formats: tuple[str, ...] = DEFAULT_FORMATS
    coco_style: str = "rle"  # "polygons": coco.json with polygon outlines, derived at the end like yolo etc.
    device: str = "auto"
    batch_size: int = 8
    recursive: bool = False
    overwrite: bool = False
    workers: int | None = None  # decoding processes (DataLoader); None = a third of the CPUs, 0 = in this process
    encoders: int | None = None  # label map + PNG + RLE processes; None = half the CPUs, 0 = a thread of this one
    backbone_weights: Path | None = None
    allow_random_backbone: bool = False
    precision: str = "auto"
    # full-resolution label maps on the model's device (True), in the encoder processes (False), or None: on the
    # device unless it is the CPU, where the encoders' label_map_at is the faster way
    maps_on_device: bool | None = None
    # resize images to the model's input on its device (decoding processes then only decode), or in the decoding
    # processes; None: on the device when it is CUDA. Same pixels either way (mpae_core.resize).
    resize_on_device: bool | None = None

    def __post_init__(self) -> None:
        self.images, self.out = Path(self.images), Path(self.out)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        self.backbone_weights = Path(self.backbone_weights) if self.backbone_weights else None
        self.formats = parse_formats(self.formats)
        try:
            self.coco_style = check_coco_style(self.coco_style)
        except ValueError as exc:
            raise BatchUsageError(f"--coco-style: {exc}") from None
        if self.batch_size < 1:
            raise BatchUsageError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.workers is not None and self.workers < 0:
            raise BatchUsageError(f"--workers must be 0 or more, got {self.workers}.")
        if self.encoders is not None and self.encoders < 0:
            raise BatchUsageError(f"The number of encoder processes must be 0 or more, got {self.encoders}.")

    @property
    def num_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return self._cpu_split()[0]

    @property
    def num_encoders(self) -> int:
        if self.encoders is not None:
            return self.encoders
        return self._cpu_split()[1]

    def _cpu_split(self) -> tuple[int, int]:
        """(decoding, encoding) processes sharing the CPUs but one (the model loop's) in proportion to each
        stage's CPU time per image, which depends on what the device takes over."""
        decode = STAGE_MS["decode"] + (0.0 if self.resize_on_device else STAGE_MS["resize"])
        encode = STAGE_MS["encode"] + (0.0 if self.maps_on_device else STAGE_MS["label map"])
        cpus = max(1, available_cpus() - 1)
        workers = max(1, round(cpus * decode / (decode + encode)))
        return min(MAX_WORKERS, workers), min(MAX_ENCODERS, max(1, cpus - workers))


# CPU milliseconds per 640x480 JPEG on one core (benchmarks/bench_batch.py, second table): decoding + EXIF, the
# PIL resize, PNG + RLE, and the label map that the encoders make unless the device does
STAGE_MS = {"decode": 2.2, "resize": 2.3, "encode": 3.3, "label map": 4.4}
MAX_WORKERS, MAX_ENCODERS = 12, 16


def available_cpus() -> int:
    """CPUs this process may use, shared with the other torchrun ranks on this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """'png,coco' or a sequence → a tuple in canonical order; unknown names are a usage error."""
    try:
        return parse_export_formats(formats)
    except ValueError as exc:
        raise BatchUsageError(str(exc).replace("export format", "output format")) from None


def derived_formats(formats: Sequence[str], coco_style: str) -> tuple[str, ...]:
    """The formats a run writes at its end from the PNG masks: yolo, labelme, cvat, voc, and coco as polygons."""
    return tuple(f for f in formats if f in DERIVED_FORMATS or (f == "coco" and coco_style == "polygons"))


@dataclass
class ImageResult:
    """One image's line of the report; ``mask`` is relative to OUT."""

    file: str
    status: str
    error: str | None = None
    mask: str | None = None
    seconds: float = 0.0
    # what an encoder wrote into the batch's project for this image (see batch.store); not part of the report
    stored: dict[str, Any] | None = None

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
    project_dir: Path | None = None  # the project to open in the app for review (OUT/.mpae)
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


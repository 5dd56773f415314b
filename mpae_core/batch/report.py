"""report.json and coco.json of a run, and what a re-run may skip (same checkpoint, outputs still there)."""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from ..annotation.export import CocoWriter, coco_categories
from ..annotation.storage import atomic_write_json
from .config import DONE_STATUSES, ERROR, REPORT_FORMAT, REPORT_VERSION, BatchConfig, BatchReport, ImageResult
from .encode import Outputs, cached_annotations

logger = logging.getLogger(__name__)


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
    return previous.get(relpath) in DONE_STATUSES and has_outputs(outputs, relpath)


def has_outputs(outputs: Outputs, relpath: str) -> bool:
    """The outputs this run needs for the image are there (made by an earlier run)."""
    mask_there = (outputs.out / outputs.mask_relpath(relpath)).is_file()
    if outputs.writes_masks and not mask_there:
        return False
    return not outputs.coco_rle or mask_there or outputs.cache_path(relpath).is_file()


def versions() -> dict[str, str]:
    import timm

    from .. import __version__

    return {"mpae_annotator": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "pillow": Image.__version__}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)



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
        "coco_style": config.coco_style,
        "batch_size": config.batch_size, "versions": versions(), "cancelled": report.cancelled,
        "totals": report.totals(),
        "errors": [{"file": r.file, "error": r.error} for r in report.failed],
        "images": [r.to_dict() for r in report.images],
    }


def write_report(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write_json(path, data, fsync=False, indent=1)



"""torchrun sharding: which images a rank handles, its device, the process group, and rank 0 merging the parts."""
from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..annotation.export import merge_coco_parts
from .config import BatchConfig, BatchReport, ImageResult
from .listing import ImageItem
from .report import write_report


DIST_TIMEOUT = datetime.timedelta(hours=12)  # ranks wait at the barrier for the slowest one


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


def init_distributed(shard: Shard, device: torch.device) -> bool:
    """Join the torchrun process group (gloo on the CPU, nccl on CUDA); False when already joined by the caller."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=shard.rank, world_size=shard.world_size, timeout=DIST_TIMEOUT)
    return True


def barrier(device: torch.device) -> None:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[device.index or 0])
    else:
        dist.barrier()


def rank_file_paths(out: Path, shard: Shard) -> tuple[Path, Path]:
    if not shard.distributed:
        return out / "coco.json", out / "report.json"
    return out / f"coco.rank{shard.rank}.json", out / f"report.rank{shard.rank}.json"



def merge_ranks(config: BatchConfig, mine: BatchReport, items: Sequence[ImageItem], started: float,
                shard: Shard, finish: Callable[[list[ImageResult]], Path | None] | None = None) -> BatchReport:
    """Rank 0: one coco.json and report.json from every rank's parts, which are then removed. ``finish(results)``
    runs before the report is written (the formats derived from the masks; it returns a COCO file it wrote)."""
    coco_parts = [config.out / f"coco.rank{r}.json" for r in range(shard.world_size)]
    report_parts = [config.out / f"report.rank{r}.json" for r in range(shard.world_size)]
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in report_parts]
    order = {item.relpath: item.index for item in items}
    entries = sorted((e for part in parts for e in part["images"]), key=lambda e: order[e["file"]])
    results = [ImageResult(e["file"], e["status"], e["error"], e["mask"], e["seconds"]) for e in entries]
    devices = sorted({part["device"] for part in parts})
    merged = BatchReport(config.out, results, time.perf_counter() - started, ", ".join(devices),
                         cancelled=any(part["cancelled"] for part in parts), world_size=shard.world_size)
    if "coco" in config.formats and config.coco_style == "rle":
        merged.coco_path = merge_coco_parts(coco_parts, config.out / "coco.json")
    if finish is not None:
        merged.coco_path = finish(results) or merged.coco_path
    data = dict(parts[0], device=merged.device, cancelled=merged.cancelled, totals=merged.totals(),
                errors=[{"file": r.file, "error": r.error} for r in merged.failed],
                images=[r.to_dict() for r in results], devices=[part["device"] for part in parts])
    merged.report_path = write_report(config.out / "report.json", data)
    for path in (*coco_parts, *report_parts):
        path.unlink(missing_ok=True)
    return merged

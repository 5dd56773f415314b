"""Stage 1: DataLoader workers decode and resize each image; a bad file becomes an error record."""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from ..images import ImageLoadError, load_image
from ..inference import resize_for_model
from ..worker_signals import ignore_stop_signals
from .listing import ImageItem


# ----- stage 1: decoding in DataLoader workers ------------------------------------------------------------------------
class ImageDataset(torch.utils.data.Dataset):
    """Decodes and resizes one image per item; a bad file becomes an error record, never an exception."""

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
            record["pixels"] = resize_for_model(image, self.image_size)  # uint8: normalised on the device
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



"""Stage 1: DataLoader workers decode and resize each image; a bad file becomes an error record.

With ``resize_on_device`` the workers only decode, and ship images of up to FULL_SIZE_MAX_PIXELS at full size for
the model's device to resize (:func:`model_input`, exactly Pillow's arithmetic, so the same input pixels); larger
ones are still resized in the worker, which bounds the shared memory a batch in flight holds.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from ..annotation.records import file_stamp
from ..images import ImageLoadError, load_image
from ..inference import resize_for_model
from ..resize import resize_like_pillow
from ..worker_signals import ignore_stop_signals
from .listing import ImageItem

FULL_SIZE_MAX_PIXELS = 4_000_000  # 12 MB of RGB; a 24 MP photo would hold 72 MB of shared memory per image


# ----- stage 1: decoding in DataLoader workers ------------------------------------------------------------------------
class ImageDataset(torch.utils.data.Dataset):
    """Decodes and resizes one image per item; a bad file becomes an error record, never an exception."""

    def __init__(self, items: Sequence[ImageItem], image_size: int, resize_on_device: bool = False) -> None:
        self.items, self.image_size, self.resize_on_device = list(items), image_size, resize_on_device

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        start = time.perf_counter()
        record: dict[str, Any] = {"index": item.index, "relpath": item.relpath, "pixels": None, "size": None,
                                  "error": None, "stamp": file_stamp(item.path)}  # the file as read (the project)
        try:
            image = load_image(item.path)
            record["size"] = (image.height, image.width)
            record["resized"] = not (self.resize_on_device and image.width * image.height <= FULL_SIZE_MAX_PIXELS)
            if record["resized"]:
                record["pixels"] = resize_for_model(image, self.image_size)  # uint8: normalised on the device
            else:  # [H, W, 3] uint8, resized by model_input
                record["pixels"] = _as_tensor(image)
        except ImageLoadError as exc:
            record["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop a run of thousands
            record["error"] = f"Cannot read '{item.path}': {type(exc).__name__}: {exc}."
        record["seconds"] = time.perf_counter() - start
        return record


def _as_tensor(image) -> torch.Tensor:
    """[H, W, 3] uint8 view of an RGB image's bytes, without the extra copy (and page faults) of ``np.array``:
    the DataLoader copies it into shared memory anyway, and nothing writes to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable NumPy array": it is only read
        return torch.from_numpy(np.asarray(image))


def collate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """In the worker: stack the resized images into one tensor and the full-size ones into one tensor per size
    (``default_collate`` stacks straight into shared memory, and the main process then receives a few tensors,
    not one per image); keep the rest as records."""
    good = [r for r in records if r["error"] is None]
    resized = [r["pixels"] for r in good if r["resized"]]
    by_size: dict[tuple[int, ...], list[int]] = {}
    for row, r in enumerate(good):
        if not r["resized"]:
            by_size.setdefault(tuple(r["pixels"].shape), []).append(row)
    full = [(rows, default_collate([good[row]["pixels"] for row in rows])) for rows in by_size.values()]
    for r in records:
        r.pop("pixels", None)
    pixels = default_collate(resized) if resized else torch.empty(0, dtype=torch.uint8)
    return {"pixels": pixels, "full": full, "records": records}


def model_input(batch: dict[str, Any], good: list[dict[str, Any]], image_size: int,
                device: torch.device) -> torch.Tensor:
    """[n, 3, S, S] uint8 model input of a batch's readable images, in ``good`` order; full-size images are
    resized on ``device``, all those of one size at once."""
    if not batch["full"]:
        return batch["pixels"]
    out = torch.empty((len(good), 3, image_size, image_size), dtype=torch.uint8, device=device)
    resized_rows = [i for i, r in enumerate(good) if r["resized"]]
    if resized_rows:
        out[resized_rows] = batch["pixels"].to(device, non_blocking=True)
    for rows, stacked in batch["full"]:
        images = stacked.to(device, non_blocking=True).permute(0, 3, 1, 2)
        out[rows] = resize_like_pillow(images, (image_size, image_size))
    return out


def make_loader(items: Sequence[ImageItem], image_size: int, batch_size: int, workers: int,
                pin_memory: bool, resize_on_device: bool = False) -> torch.utils.data.DataLoader:
    extra = {"prefetch_factor": 4} if workers > 0 else {}
    dataset = ImageDataset(items, image_size, resize_on_device)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                       num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                                       worker_init_fn=ignore_stop_signals, **extra)



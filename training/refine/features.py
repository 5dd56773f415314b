"""A cache of what the frozen backbone computes for each image, so refinement runs it once per image, not per step.

The backbone is frozen during refinement and is most of a forward pass, so its patch tokens are computed once per
image (and per *view*: view 0 is the image as the model sees it, view 1 its mirror image, which the backbone does
not see as mirrored tokens) and kept:

* in memory, in an LRU bounded by ``memory_bytes`` (a 5,000-photo folder at ViT-B/224 would need ~4 GB otherwise);
* on disk, when a folder is given (the CLI uses ``<project>/cache/features/``), as one small ``.npz`` per image and
  view, written atomically, so a second refinement of the same folder skips the backbone entirely.

Each entry also keeps the S×S uint8 model input (``resize_for_model``), which the PartFormer reads, so a step never
decodes a photo again. An entry is valid for one image file version and one backbone: it records the file's size
and modification time (a replaced or touched image is encoded again) and lives in a folder named after the
backbone's identity (name, options, input size and a digest of its weights), so a different backbone never reads it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mpae_core.annotation.storage import atomic_write_bytes
from mpae_core.backbone import FrozenBackbone
from mpae_core.config import MPAEConfig
from mpae_core.images import load_image
from mpae_core.inference import imagenet_stats, normalise, resize_for_model

logger = logging.getLogger(__name__)

VIEWS = (0, 1)  # 0: the image; 1: its horizontal mirror
DEFAULT_MEMORY_BYTES = 512 * 2**20
CACHE_FORMAT = 1


def backbone_identity(backbone: FrozenBackbone, cfg: MPAEConfig) -> str:
    """A digest naming exactly what produces the tokens: backbone name, options, input size and weights."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, "backbone": cfg.backbone, "kwargs": cfg.backbone_kwargs,
                              "image_size": cfg.image_size}, sort_keys=True, default=str).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def file_signature(path: Path) -> tuple[int, int]:
    """(size, mtime in ns): what changes when an image file is replaced or rewritten."""
    stat = path.stat()
    return int(stat.st_size), int(stat.st_mtime_ns)


@dataclass
class EncodedView:
    """One view of one image: the S×S model input and the frozen backbone's tokens of it."""

    pixels: torch.Tensor  # [3, S, S] uint8
    tokens: torch.Tensor  # [D, h, w] float16
    signature: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.pixels.numel() + 2 * self.tokens.numel()


class FeatureCache:
    """Backbone tokens per (image, view), computed on ``device`` in batches, kept in memory and optionally on disk."""

    def __init__(self, backbone: FrozenBackbone, cfg: MPAEConfig, folder: str | os.PathLike | None = None, *,
                 device: torch.device | str = "cpu", memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 batch_size: int = 16, amp_dtype: torch.dtype | None = None) -> None:
        self.backbone = backbone
        self.image_size = cfg.image_size
        self.device = torch.device(device)
        self.identity = backbone_identity(backbone, cfg)
        self.folder = None if folder is None else Path(folder) / self.identity
        self.memory_bytes = memory_bytes
        self.batch_size = max(1, batch_size)
        self.amp_dtype = amp_dtype
        self._memory: OrderedDict[tuple[str, int], EncodedView] = OrderedDict()
        self._held = 0
        self.encoded = 0  # views the backbone ran for (statistics and tests)
        self.read_from_disk = 0

    def get(self, items: Sequence[tuple[str, Path, int]]) -> list[EncodedView]:
        """The views of ``items`` = (key, image path, view); missing ones are encoded in batches.

        Raises ImageLoadError (an MPAEError) for an image that vanished or cannot be read.
        """
        found: dict[int, EncodedView] = {}
        missing: list[int] = []
        for i, (key, path, view) in enumerate(items):
            entry = self._lookup(key, Path(path), view)
            if entry is None:
                missing.append(i)
            else:
                found[i] = entry
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for i, entry in zip(chunk, self._encode([items[i] for i in chunk])):
                found[i] = entry
        return [found[i] for i in range(len(items))]

    # ----- internals -------------------------------------------------------------------------------------------
    def _lookup(self, key: str, path: Path, view: int) -> EncodedView | None:
        try:
            signature = file_signature(path)
        except OSError:
            return None  # vanished: _encode raises the loader's clear error
        entry = self._memory.get((key, view))
        if entry is not None and entry.signature == signature:
            self._memory.move_to_end((key, view))
            return entry
        entry = self._read(key, view, signature)
        if entry is not None:
            self._remember(key, view, entry)
        return entry

    def _disk_path(self, key: str, view: int) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.{view}.npz"

    def _read(self, key: str, view: int, signature: tuple[int, int]) -> EncodedView | None:
        path = self._disk_path(key, view)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if tuple(int(v) for v in data["signature"]) != signature:
                    return None  # the image changed since: encode it again (and overwrite this entry)
                entry = EncodedView(torch.from_numpy(data["pixels"].copy()), torch.from_numpy(data["tokens"].copy()),
                                    signature)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            logger.info("Ignoring the damaged feature cache entry %s (%s)", path, exc)
            return None
        if tuple(entry.pixels.shape) != (3, self.image_size, self.image_size):
            return None
        self.read_from_disk += 1
        return entry

    def tokens_of(self, pixels: torch.Tensor) -> torch.Tensor:
        """float16 backbone tokens [B, D, h, w] on the cache's device of uint8 [B, 3, S, S] model inputs, not
        cached: also what refinement uses for transformed views of the corrected images."""
        mean, std = imagenet_stats(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                             enabled=self.amp_dtype is not None):
            return self.backbone(normalise(pixels.to(self.device), mean, std)).to(torch.float16)

    def _encode(self, items: Sequence[tuple[str, Path, int]]) -> list[EncodedView]:
        pixels, signatures = [], []
        for _key, path, view in items:
            path = Path(path)
            try:  # before reading: a file replaced meanwhile then looks stale next time, never fresh
                signatures.append(file_signature(path))
            except OSError:
                signatures.append((-1, -1))
            image = load_image(path)  # ImageLoadError names the file when it vanished or is unreadable
            tensor = resize_for_model(image, self.image_size)
            pixels.append(torch.flip(tensor, dims=(-1,)) if view == 1 else tensor)
        batch = torch.stack(pixels)
        tokens = self.tokens_of(batch).to("cpu")
        self.encoded += len(items)
        entries = []
        for (key, _path, view), px, tok, signature in zip(items, batch, tokens, signatures):
            entry = EncodedView(px.clone(), tok.clone(), signature)
            self._write(key, view, entry)
            self._remember(key, view, entry)
            entries.append(entry)
        return entries

    def _write(self, key: str, view: int, entry: EncodedView) -> None:
        path = self._disk_path(key, view)
        if path is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, pixels=entry.pixels.numpy(), tokens=entry.tokens.numpy(),
                 signature=np.asarray(entry.signature, dtype=np.int64))
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as exc:  # a full or read-only disk costs speed, not the run
            logger.warning("Cannot write the feature cache entry %s (%s); continuing without it", path, exc)

    def _remember(self, key: str, view: int, entry: EncodedView) -> None:
        old = self._memory.pop((key, view), None)
        if old is not None:
            self._held -= old.nbytes
        self._memory[(key, view)] = entry
        self._held += entry.nbytes
        while self._held > self.memory_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._held -= dropped.nbytes

    @property
    def memory_held(self) -> int:
        """Bytes of tokens and pixels held in memory now (never above ``memory_bytes`` but for one entry)."""
        return self._held

"""Inference: part predictions for images, at any resolution, on any device.

The network runs once per image at S×S (squashed, as the reference's test transform). A ``PartPrediction`` keeps
only the Q logits at feature resolution (16×16 or 32×32), so probabilities, label maps and confidence at any size
are computed on demand by upsampling the logits, never the 256-channel features. Large maps (a 24 MP photo) are
computed in row bands so memory stays bounded.

Label maps use 0 for background and k + 1 for part slot k (model channel k); names ``part_01``… follow that.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .devices import autocast_dtype, resolve_device
from .cuda_graphs import GraphedFunction
from .model import MPAE, upsample_logits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BAND_BYTES = 64 * 2**20  # working memory for one band of upsampled logits
#: A pixel is labelled clearly when its runner-up channel's logit lies at least this share of the pixel's logit range
#: (best minus worst channel) below the best one (see :func:`clear_pixel_share`).
CLEAR_MARGIN = 0.2


def resize_for_model(image: Image.Image, image_size: int) -> torch.Tensor:
    """RGB PIL image → [3, S, S] uint8 (bilinear squash, like the reference's ``Resize((S, S))``).

    Kept as bytes until it reaches the device: a quarter of the float tensor to move between processes and to the
    GPU, and the normalisation runs there (``normalise``) instead of on a busy CPU.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image
    resized = rgb.resize((image_size, image_size), Image.BILINEAR)
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1)


def normalise(pixels: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [..., 3, S, S] → ImageNet-normalised float32, bit for bit what ``preprocess`` gives.

    ``mean``/``std`` are [3, 1, 1] tensors on the pixels' device (a CUDA graph capture cannot create them).
    """
    if mean is None or std is None:
        mean, std = imagenet_stats(pixels.device)
    return (pixels.float() / 255.0 - mean) / std


def imagenet_stats(device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std as [3, 1, 1] float32 tensors on ``device``."""
    return (torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1))


def preprocess(image: Image.Image, image_size: int) -> torch.Tensor:
    """RGB PIL image → ImageNet-normalised [3, S, S] float tensor (bilinear squash, like ``Resize((S, S))``)."""
    return normalise(resize_for_model(image, image_size))


def bilinear_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """[out, in] weights of 1-D bilinear resampling, identical to ``F.interpolate(align_corners=False)``."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
    lo = src.floor().long().clamp_max(in_size - 1)
    hi = (lo + 1).clamp_max(in_size - 1)
    frac = (src - lo).to(torch.float64)
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.float()


def upsampled_bands(logits: torch.Tensor, size: tuple[int, int]) -> Iterable[tuple[int, torch.Tensor]]:
    """Yield (first row, [..., Q, rows, W] upsampled logits) bands covering [..., Q, H, W] maps: one image's
    [Q, h, w] logits, or several images' [B, Q, h, w] upsampled together."""
    height, width = size
    h, w = logits.shape[-2:]
    columns = torch.einsum("...hw,xw->...hx", logits.float(), _bilinear_on(width, w, logits.device))
    row_weights = _bilinear_on(height, h, logits.device)
    band = max(1, BAND_BYTES // (4 * logits.shape[:-2].numel() * max(width, 1)))
    for start in range(0, height, band):
        yield start, torch.einsum("rh,...hx->...rx", row_weights[start : start + band], columns)


@functools.lru_cache(maxsize=128)
def _bilinear_on(out_size: int, in_size: int, device: torch.device) -> torch.Tensor:
    """``bilinear_matrix`` kept on its device: photos of one camera share a few sizes, and a GPU loop over a
    batch should not build and upload the same small matrix for every image."""
    return bilinear_matrix(out_size, in_size).to(device)


def channel_lut(num_slots: int, label_to_value: np.ndarray | None = None) -> np.ndarray:
    """Model channel → label value (background, the last channel, → 0; slot k → k + 1), optionally followed by
    ``label_to_value`` (e.g. :meth:`PartTable.slot_to_export_index`), so one lookup gives export indices."""
    lut = np.arange(1, num_slots + 1, dtype=np.uint16 if num_slots > 256 else np.uint8)
    lut[num_slots - 1] = 0
    return lut if label_to_value is None else np.asarray(label_to_value)[lut]


def device_label_maps(logits: torch.Tensor, sizes: Sequence[tuple[int, int]], lut: np.ndarray) -> list[np.ndarray]:
    """Full-resolution maps of a batch, computed where the logits are and brought back in one copy.

    ``logits`` [B, Q, h, w] (any device), ``sizes`` each image's (H, W), ``lut`` channel → value
    (:func:`channel_lut`). The labels are the argmax of the full bilinear upsampling, as ``_labels_and_confidence``;
    on a GPU this takes the per-pixel work of the batch pipeline off the CPU, which then only encodes. Images of
    one size (a camera's photos) are upsampled together, so a batch costs a few kernels, not a few per image.
    """
    device = logits.device
    table = torch.as_tensor(lut, device=device)
    offsets = np.concatenate(([0], np.cumsum([h * w for h, w in sizes])))
    out = torch.empty(int(offsets[-1]), dtype=table.dtype, device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault((int(size[0]), int(size[1])), []).append(i)
    for (height, width), members in groups.items():
        for start, band in upsampled_bands(logits[members], (height, width)):
            labels = table[band.argmax(dim=1)]  # [b, rows, W]
            rows = labels.shape[1]
            for j, i in enumerate(members):
                first = int(offsets[i]) + start * width
                out[first : first + rows * width] = labels[j].reshape(-1)
    host = out.cpu().numpy()
    return [host[offsets[i] : offsets[i + 1]].reshape(size) for i, size in enumerate(sizes)]


@dataclass
class PartPrediction:
    """The model's answer for one image; maps at any size are derived from ``logits`` on demand."""

    logits: torch.Tensor  # [Q, h, w] fp32 on the CPU, background last
    image_size: tuple[int, int]  # (height, width) of the source image, EXIF orientation applied
    presence: np.ndarray  # [K] bool: the part covers at least one pixel of the summary label map
    area: np.ndarray  # [K] fraction of the image labelled with each part
    part_confidence: np.ndarray  # [K] mean max-probability over each part's pixels (0 where absent)
    confidence: float  # share of clearly labelled pixels (clear_pixel_share): how sure the model is of the image

    @property
    def num_parts(self) -> int:
        return self.logits.shape[0] - 1

    @classmethod
    def from_logits(cls, logits: torch.Tensor, image_size: tuple[int, int],
                    summary_size: tuple[int, int] = (128, 128)) -> "PartPrediction":
        """Compute the per-part summary on a ``summary_size`` map (the reference's 128×128 by default)."""
        logits = logits.detach().float().cpu()
        k = logits.shape[0] - 1
        labels, confidence = _labels_and_confidence(logits, summary_size)
        counts = np.bincount(labels.ravel(), minlength=k + 1)[1:]
        conf_sums = np.bincount(labels.ravel(), weights=confidence.ravel(), minlength=k + 1)[1:]
        return cls(
            logits=logits,
            image_size=(int(image_size[0]), int(image_size[1])),
            presence=counts > 0,
            area=counts / labels.size,
            part_confidence=np.divide(conf_sums, counts, out=np.zeros(k), where=counts > 0),
            confidence=clear_pixel_share(logits, summary_size),
        )

    def probabilities(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """[Q, H, W] float32 probabilities (background last) at ``size`` (default: the image's own size)."""
        height, width = size or self.image_size
        out = np.empty((self.logits.shape[0], height, width), dtype=np.float32)
        for start, band in upsampled_bands(self.logits, (height, width)):
            out[:, start : start + band.shape[1]] = band.softmax(dim=0).numpy()
        return out

    def label_map(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """[H, W] labels, 0 = background, k + 1 = part slot k (uint8, or uint16 beyond 255 parts)."""
        return label_map_at(self.logits, size or self.image_size)

    def confidence_map(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """[H, W] float32 max-probability: how sure the model is of each pixel's label."""
        return _labels_and_confidence(self.logits, size or self.image_size)[1]


def clear_pixel_share(logits: torch.Tensor, size: tuple[int, int] = (128, 128)) -> float:
    """The share of a ``size`` map's pixels whose label is clear: best logit − runner-up > CLEAR_MARGIN × (best −
    worst), for [Q, h, w] logits upsampled as the label maps are.

    Why not the mean max-probability: MPAE's logits are unscaled dot products (hundreds apart), so the softmax is
    saturated and that mean reads ~100 % on every image. The margin measured against the pixel's own logit range is
    scale-free: it is small where two parts (or a part and the background) compete, which is what makes an image
    worth reviewing first. A summary only: labels and probabilities do not depend on it.
    """
    clear = 0
    for _, band in upsampled_bands(logits.detach().float().cpu(), size):
        top2 = band.topk(2, dim=0).values
        spread = top2[0] - band.min(dim=0).values
        clear += int(((top2[0] - top2[1]) > CLEAR_MARGIN * spread).sum())
    return clear / float(size[0] * size[1])


def _row_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(first source row, weight of the next row) per output row, as ``bilinear_matrix`` (align_corners=False)."""
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.intp), in_size - 1)
    return lo, (src - lo).astype(np.float32)


def label_map_at(logits: torch.Tensor | np.ndarray, size: tuple[int, int], lut: np.ndarray | None = None, *,
                 rows: slice | None = None) -> np.ndarray:
    """[H, W] label values of bilinearly upsampled logits: the same labels as taking the argmax of
    the full bilinear upsampling (``_labels_and_confidence``), 10-20x faster on the CPU, which is what lets the
    batch encoders keep up with the model.

    The logits are upsampled along x exactly (a small [Q, h, W] array). Each output row lies between two of those
    rows; where one channel is the maximum in both, it is the maximum of every convex combination too, so only the
    pixels between rows that disagree (a part boundary, typically 10-20 % of the image) need all Q channels. The
    labels equal the full computation's except where two channels tie to float rounding (tests check this).
    Working memory stays under BAND_BYTES however large the image. ``lut`` (channel → value, :func:`channel_lut`)
    replaces the default label values, e.g. by export indices, at no extra cost. ``rows`` computes only those rows of
    the [H, W] map (a band: the app builds a large map in steps it can abandon).
    """
    height, width = size
    values = logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor) else logits.astype(np.float32)
    q, h, w = values.shape
    lut = channel_lut(q) if lut is None else np.asarray(lut)
    cols = values @ _column_matrix(width, w)  # [Q, h, W]
    grid = cols.argmax(axis=0)  # [h, W] channel that wins on each upsampled row
    lo, frac = _row_taps(height, h)
    if rows is not None:
        lo, frac = lo[rows], frac[rows]
    labels = lut[grid][lo]  # right wherever the two rows around a pixel agree (or it lies on a row)
    between = (frac > 0) & (lo < h - 1)
    for i in np.unique(lo[between]):
        mixed = np.flatnonzero(grid[i] != grid[i + 1])
        if not mixed.size:
            continue
        a = np.ascontiguousarray(cols[:, i, mixed].T)  # [n, Q]
        d = np.ascontiguousarray(cols[:, i + 1, mixed].T) - a
        all_rows = np.flatnonzero(between & (lo == i))
        step = max(1, BAND_BYTES // (4 * q * mixed.size))
        for first in range(0, all_rows.size, step):
            rows = all_rows[first : first + step]
            blend = np.multiply(frac[rows, None, None], d[None])
            blend += a[None]  # [rows, n, Q], in place: this loop is most of the function's time
            labels[np.ix_(rows, mixed)] = lut[blend.argmax(axis=-1)]
    return labels


def confidence_grid(logits: torch.Tensor | np.ndarray, size: tuple[int, int], rows: np.ndarray | None = None,
                    cols: np.ndarray | None = None) -> np.ndarray:
    """[len(rows), len(cols)] float32 max-probability of the [H, W] map at only those pixel rows and columns (all by
    default): a hovered pixel, a painted box or a band of rows costs what it shows, not the whole image.

    Equal to ``confidence_map(size)[np.ix_(rows, cols)]`` up to float rounding: the logits are upsampled along x by
    the same bilinear weights, then each wanted row blends its two source rows (the only non-zero taps).
    """
    height, width = size
    values = logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor) else logits.astype(np.float32)
    q, h, w = values.shape
    rows = np.arange(height) if rows is None else np.asarray(rows, dtype=np.intp)
    cols = np.arange(width) if cols is None else np.asarray(cols, dtype=np.intp)
    sampled = values @ _column_matrix(width, w)[:, cols]  # [Q, h, n]
    lo, frac = _row_taps(height, h)
    lo, frac = lo[rows], frac[rows]
    hi = np.minimum(lo + 1, h - 1)
    out = np.empty((rows.size, cols.size), dtype=np.float32)
    step = max(1, BAND_BYTES // (4 * q * max(cols.size, 1)))
    for first in range(0, rows.size, step):
        band = slice(first, first + step)
        near = sampled[:, lo[band]]  # [Q, r, n]
        blend = sampled[:, hi[band]] - near
        blend *= frac[band][None, :, None]
        blend += near
        blend -= blend.max(axis=0, keepdims=True)
        np.exp(blend, out=blend)
        out[band] = 1.0 / blend.sum(axis=0)  # max softmax probability = 1 / sum_q exp(l_q - l_max)
    return out


@functools.lru_cache(maxsize=64)
def _column_matrix(out_size: int, in_size: int) -> np.ndarray:
    """[in, out] float32 weights of bilinear resampling along x (photos of one camera share a few sizes)."""
    matrix = bilinear_matrix(out_size, in_size).numpy().T.copy()
    matrix.flags.writeable = False
    return matrix


def channels_to_labels(index: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Model channel → label value: background (the last channel) → 0, part slot k → k + 1."""
    return torch.where(index == num_slots - 1, torch.zeros_like(index), index + 1)


def _labels_and_confidence(logits: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    height, width = size
    q = logits.shape[0]
    labels = np.empty((height, width), dtype=np.uint8 if q <= 256 else np.uint16)
    confidence = np.empty((height, width), dtype=np.float32)
    for start, band in upsampled_bands(logits, (height, width)):
        top, index = band.max(dim=0)
        # max softmax probability = 1 / Σ_q exp(l_q − l_max)
        conf = 1.0 / torch.exp(band - top.unsqueeze(0)).sum(dim=0)
        slot = channels_to_labels(index, q)
        rows = slice(start, start + band.shape[1])
        labels[rows] = slot.numpy().astype(labels.dtype)
        confidence[rows] = conf.numpy()
    return labels, confidence


class Predictor:
    """Runs an MPAE model on batches of images: device choice, autocast and CUDA graphs on CUDA, inference mode.

    ``logits``/``predict`` return CPU results for the app and the store; ``probs`` and ``label_maps`` keep the
    per-pixel work on the device and move only the answer.
    """

    def __init__(self, model: MPAE, device: str | torch.device = "auto", *, precision: str = "auto",
                 cuda_graphs: bool = True) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.amp_dtype = autocast_dtype(self.device, precision)
        self._mean, self._std = imagenet_stats(self.device)
        self._logits = GraphedFunction(self._forward, enabled=cuda_graphs and self.device.type == "cuda")

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[B, 3, S, S] uint8 model input; every method here accepts it (normalised on the device)."""
        return torch.stack([resize_for_model(image, self.image_size) for image in images])

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype == torch.uint8:
            batch = normalise(batch, self._mean, self._std)
        # cache_enabled=False: autocast's weight cast cache must not outlive a CUDA graph capture
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None, cache_enabled=False):
            return self.model.part_logits(batch)

    def _device_logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self._logits(batch.to(self.device, non_blocking=True))

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, Q, h, w] fp32 logits on the CPU for a uint8 (``prepare``) or already normalised batch."""
        return self._device_logits(batch).float().cpu()

    @torch.inference_mode()
    def probs(self, batch: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """[B, Q, H, W] probabilities on the device (background last), as ``MPAE.predict_probs``."""
        size = output_size or self.model.cfg.default_output_size
        return upsample_logits(self._device_logits(batch), size).softmax(dim=1)

    @torch.inference_mode()
    def maps_at_sizes(self, batch: torch.Tensor, sizes: Sequence[tuple[int, int]], lut: np.ndarray) -> list[np.ndarray]:
        """One map per image at its own (H, W), through ``lut`` (channel → value), computed on the device; rows of
        ``batch`` past ``len(sizes)`` (padding) are ignored."""
        return device_label_maps(self._device_logits(batch)[: len(sizes)], sizes, lut)

    @torch.inference_mode()
    def logits_and_maps(self, batch: torch.Tensor, sizes: Sequence[tuple[int, int]],
                        lut: np.ndarray) -> tuple[torch.Tensor, list[np.ndarray]]:
        """``maps_at_sizes`` plus the [n, Q, h, w] fp32 logits on the CPU, from one model call (the batch keeps
        both: the maps for its masks, the logits for its project)."""
        logits = self._device_logits(batch)[: len(sizes)]
        maps = device_label_maps(logits, sizes, lut)
        return logits.float().cpu(), maps

    @torch.inference_mode()
    def label_maps(self, batch: torch.Tensor, output_size: tuple[int, int]) -> np.ndarray:
        """[B, H, W] label maps (0 = background, k + 1 = slot k) computed on the device, returned as uint8/16."""
        logits = upsample_logits(self._device_logits(batch), output_size)
        q = logits.shape[1]
        labels = channels_to_labels(logits.argmax(dim=1), q)
        if q <= 256:
            return labels.to(torch.uint8).cpu().numpy()
        return labels.to(torch.int32).cpu().numpy().astype(np.uint16)

    def predict(self, images: Sequence[Image.Image], batch_size: int = 8) -> list[PartPrediction]:
        """One PartPrediction per image, computed ``batch_size`` images at a time."""
        results: list[PartPrediction] = []
        summary = self.model.cfg.default_output_size
        for start in range(0, len(images), max(1, batch_size)):
            chunk = images[start : start + batch_size]
            for image, logits in zip(chunk, self.logits(self.prepare(chunk))):
                results.append(PartPrediction.from_logits(logits, (image.height, image.width), summary))
        return results

    def predict_one(self, image: Image.Image) -> PartPrediction:
        return self.predict([image], batch_size=1)[0]

"""Label map → RGBA overlay pixels, with numpy lookup tables only (no Qt widgets, no model maths).

The canvas asks for whole overlays when an image or the style changes, and for small boxes while a person paints,
so rendering is split into "build a few tiny tables from the part table" (:func:`colour_lut`) and "index them with
the label map" (:func:`render_overlay`). Label values are 0 (background), k + 1 (slot k), IGNORE_LABEL ("don't
care") and USER_LABEL_BASE + j (the person's own label j); the tables have K + 2 + U rows (row K + 1 is IGNORE_LABEL,
row K + 2 + j user label j), so a 65 k-entry table is never built.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PySide6.QtGui import QImage

from mpae_core.annotation.labels import IGNORE_LABEL, USER_LABEL_BASE
from mpae_core.annotation.parts import PartTable

if TYPE_CHECKING:  # PIL is only needed by pil_to_qimage's callers
    from PIL import Image

logger = logging.getLogger(__name__)

Box = tuple[slice, slice]
#: (rows, cols) → [len(rows), len(cols)] confidence of those pixels, computed on demand (never a whole map up front).
ConfidenceSource = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Byte offsets of red, green, blue and alpha in a 32-bit QImage pixel (0xAARRGGBB in the machine's byte order).
_R, _G, _B, _A = (2, 1, 0, 3) if sys.byteorder == "little" else (1, 2, 3, 0)
BAND_PIXELS = 2**20  # whole images are converted in bands of this many pixels

#: Colour of "don't care" pixels (IGNORE_LABEL) and, dimmer, of slots whose part is exported as background.
IGNORE_RGB = (128, 128, 128)
IGNORED_SLOT_RGB = (96, 96, 96)

# A viridis-like perceptual ramp (dark blue → green → yellow), interpolated to 256 entries below.
_HEAT_ANCHORS = np.array([
    (68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37),
], dtype=np.float64)
HEAT_COLORMAP: np.ndarray = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_HEAT_ANCHORS)), _HEAT_ANCHORS[:, c]) for c in range(3)],
    axis=1,
).round().astype(np.uint8)  # [256, 3]


@dataclass(frozen=True)
class OverlayStyle:
    """How the label overlay is drawn; frozen so a canvas can cache lookup tables per style."""

    opacity: float = 0.5
    outline_only: bool = False
    hidden_slots: frozenset[int] = frozenset()
    hidden_user_labels: frozenset[int] = frozenset()  # label values of the person's own labels not drawn
    heatmap: bool = False  # per-pixel model confidence instead of part colours
    show_ignored: bool = True


def _base_alpha(style: OverlayStyle) -> int:
    if style.outline_only:
        return 255
    return int(round(min(max(float(style.opacity), 0.0), 1.0) * 255))


def _slot_hidden(parts: PartTable, slot: int, style: OverlayStyle) -> bool:
    return slot in style.hidden_slots or parts.root(slot) in style.hidden_slots


def lut_rows(parts: PartTable) -> int:
    """Rows of the lookup tables: background, K slots, don't care, then one per user label."""
    return parts.num_parts + 2 + len(parts.user_labels)


def colour_lut(parts: PartTable, style: OverlayStyle) -> np.ndarray:
    """uint8 [K + 2 + U, 4] RGBA per row: row 0 background, row k + 1 slot k, row K + 1 IGNORE_LABEL, row K + 2 + j
    user label j.

    Alpha already holds the style's opacity (255 in outline mode); hidden labels and background are transparent,
    parts and user labels exported as background are a dim grey at half alpha (or transparent without
    ``show_ignored``). Use :func:`lut_indices` to turn a label map into row numbers.
    """
    k = parts.num_parts
    alpha = _base_alpha(style)
    lut = np.zeros((lut_rows(parts), 4), dtype=np.uint8)
    dim = (*IGNORED_SLOT_RGB, alpha // 2) if style.show_ignored else (0, 0, 0, 0)
    for slot in range(k):
        if not _slot_hidden(parts, slot, style):
            lut[slot + 1] = dim if parts.is_background(slot) else (*parts.display_color(slot), alpha)
    if style.show_ignored:
        lut[k + 1] = (*IGNORE_RGB, alpha)
    for label in parts.user_labels:
        if label.value not in style.hidden_user_labels:
            lut[k + 2 + label.index] = dim if label.as_background else (*label.color, alpha)
    return lut


def display_lut(parts: PartTable) -> np.ndarray:
    """int32 [K + 2 + U]: row → the label drawn there after merges (root slot + 1), so outlines skip merged seams."""
    k = parts.num_parts
    lut = np.arange(lut_rows(parts), dtype=np.int32)
    for slot in range(k):
        lut[slot + 1] = parts.root(slot) + 1
    return lut


def heat_lut(parts: PartTable, style: OverlayStyle) -> np.ndarray:
    """bool [K + 2 + U]: rows the heat map colours (visible part slots not exported as background; a user label
    keeps its colour: the model has no confidence for it)."""
    lut = np.zeros(lut_rows(parts), dtype=bool)
    for slot in range(parts.num_parts):
        lut[slot + 1] = not _slot_hidden(parts, slot, style) and not parts.is_background(slot)
    return lut


def lut_indices(labels: np.ndarray, num_parts: int, num_user: int = 0) -> np.ndarray:
    """Label values → rows of the K + 2 + U tables: IGNORE_LABEL → K + 1, user label j → K + 2 + j, unknown values
    → 0 (drawn as background)."""
    labels = np.asarray(labels)
    if labels.size == 0 or (int(labels.max()) <= num_parts and (labels.dtype.kind == "u" or int(labels.min()) >= 0)):
        return labels
    index = labels.astype(np.int32)
    user = (index >= USER_LABEL_BASE) & (index < USER_LABEL_BASE + num_user)
    index[user] -= USER_LABEL_BASE - (num_parts + 2)
    index[labels == IGNORE_LABEL] = num_parts + 1
    unknown = (index < 0) | ((index > num_parts + 1) & ~user)
    if unknown.any():
        logger.debug("Label map holds values beyond the part table's %d slots and %d user labels; drawn as "
                     "background", num_parts, num_user)
        index[unknown] = 0
    return index


def _normalise_box(box: Box | None, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    height, width = shape
    if box is None:
        return 0, height, 0, width
    y0, y1, _ = box[0].indices(height)
    x0, x1, _ = box[1].indices(width)
    return y0, max(y0, y1), x0, max(x0, x1)


def _edges(display: np.ndarray) -> np.ndarray:
    """Pixels whose display label differs from a 4-neighbour (both sides of each boundary)."""
    edge = np.zeros(display.shape, dtype=bool)
    vertical = display[1:] != display[:-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    horizontal = display[:, 1:] != display[:, :-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def render_overlay(labels: np.ndarray, parts: PartTable, style: OverlayStyle, confidence: np.ndarray | None = None,
                   box: Box | None = None, *, lut: np.ndarray | None = None) -> np.ndarray:
    """[h, w, 4] uint8 RGBA overlay of ``labels`` (or of its ``box``, for repainting just what a brush touched).

    ``lut`` may pass a cached :func:`colour_lut` of the same parts and style. Outline pixels look one pixel past
    the box so a partial render equals the same crop of a full one.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"A label map must be [H, W], got shape {labels.shape}.")
    colours = colour_lut(parts, style) if lut is None else lut
    y0, y1, x0, x1 = _normalise_box(box, labels.shape)
    pad = 1 if style.outline_only else 0
    py0, py1 = max(0, y0 - pad), min(labels.shape[0], y1 + pad)
    px0, px1 = max(0, x0 - pad), min(labels.shape[1], x1 + pad)
    index = lut_indices(labels[py0:py1, px0:px1], parts.num_parts, len(parts.user_labels))

    rgba32 = np.ascontiguousarray(colours, dtype=np.uint8).view(np.uint32).reshape(-1)
    out = rgba32[index]  # [h, w] uint32: one lookup per pixel, four channels at once

    if style.heatmap and confidence is not None:
        conf = np.asarray(confidence)
        if conf.shape != labels.shape:
            logger.warning("Confidence map %s does not match the label map %s; showing part colours",
                           conf.shape, labels.shape)
        else:
            heat_rgba = np.empty((256, 4), dtype=np.uint8)
            heat_rgba[:, :3] = HEAT_COLORMAP
            heat_rgba[:, 3] = _base_alpha(style)
            levels = np.clip(conf[py0:py1, px0:px1], 0.0, 1.0) * np.float32(255)
            heat = heat_rgba.view(np.uint32).reshape(-1)[levels.astype(np.uint8)]
            out = np.where(heat_lut(parts, style)[index], heat, out)

    if style.outline_only:
        display = display_lut(parts)
        display = display.astype(np.uint8 if len(display) <= 256 else np.uint16)[index]
        out = np.where(_edges(display), out, np.uint32(0))

    out = out.view(np.uint8).reshape(out.shape + (4,))
    return np.ascontiguousarray(out[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0])


def render_region(labels: np.ndarray, parts: PartTable, style: OverlayStyle, confidence: ConfidenceSource | None,
                  box: Box | None = None, *, lut: np.ndarray | None = None) -> np.ndarray:
    """:func:`render_overlay` of ``box`` that asks ``confidence`` for only the pixels it draws (plus the outline's
    one-pixel margin), so a brush stroke or a band of a 12 MP overlay never needs an image-sized confidence map."""
    y0, y1, x0, x1 = _normalise_box(box, labels.shape)
    pad = 1 if style.outline_only else 0
    py0, py1 = max(0, y0 - pad), min(labels.shape[0], y1 + pad)
    px0, px1 = max(0, x0 - pad), min(labels.shape[1], x1 + pad)
    conf = None
    if style.heatmap and confidence is not None:
        conf = confidence(np.arange(py0, py1), np.arange(px0, px1))
    inner = (slice(y0 - py0, y1 - py0), slice(x0 - px0, x1 - px0))
    return render_overlay(labels[py0:py1, px0:px1], parts, style, conf, inner, lut=lut)


def render_overlay_image(labels: np.ndarray, parts: PartTable, style: OverlayStyle,
                         confidence: ConfidenceSource | None = None, *, lut: np.ndarray | None = None,
                         check: Callable[[], None] | None = None) -> QImage:
    """The whole overlay as the premultiplied ARGB32 QImage a canvas draws, rendered and written in bands of rows:
    memory stays bounded, ``check()`` (called between bands) lets a worker abandon a render nobody will see, and
    numpy does the writing, so the GIL is free for the GUI thread all along."""
    height, width = labels.shape
    lut = colour_lut(parts, style) if lut is None else lut
    image = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
    pixels = _pixels_of(image)
    for top, bottom in _bands(height, width):
        if check is not None:
            check()
        rgba = render_region(labels, parts, style, confidence, (slice(top, bottom), slice(0, width)), lut=lut)
        alpha = rgba[..., 3].astype(np.uint16)
        for channel, offset in ((0, _R), (1, _G), (2, _B)):
            t = rgba[..., channel] * alpha + np.uint16(128)  # Qt's qPremultiply: round(x * a / 255)
            pixels[top:bottom, :, offset] = (t + (t >> 8)) >> 8
        pixels[top:bottom, :, _A] = rgba[..., 3]
    return image


def pil_to_rgb32(image: "Image.Image", check: Callable[[], None] | None = None) -> QImage:
    """An RGB PIL image as an RGB32 QImage (the format the raster engine draws without converting), written band by
    band with numpy: one QImage.convertToFormat of a 12 MP photo would hold the GIL, and so the GUI, for ~50 ms."""
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    height, width = rgb.shape[:2]
    qimage = QImage(width, height, QImage.Format.Format_RGB32)
    pixels = _pixels_of(qimage)
    for top, bottom in _bands(height, width):
        if check is not None:
            check()
        band = pixels[top:bottom]
        for channel, offset in ((0, _R), (1, _G), (2, _B)):
            band[..., offset] = rgb[top:bottom, :, channel]
        band[..., _A] = 255
    return qimage


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    rows = max(1, BAND_PIXELS // max(width, 1))
    return [(top, min(height, top + rows)) for top in range(0, height, rows)]


def _pixels_of(image: QImage) -> np.ndarray:
    """A writable [H, W, 4] uint8 view of a 32-bit QImage's pixels, bytes in memory order (see _R, _G, _B, _A)."""
    height, width = image.height(), image.width()
    rows = np.frombuffer(image.bits(), dtype=np.uint8).reshape(height, image.bytesPerLine())
    return rows[:, : 4 * width].reshape(height, width, 4)


def rgba_to_qimage(array: np.ndarray) -> QImage:
    """An [H, W, 4] uint8 RGBA array as a QImage that owns its pixels (safe after the array is gone)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 4:
        raise ValueError(f"Expected an [H, W, 4] RGBA array, got shape {array.shape}.")
    height, width = array.shape[:2]
    return QImage(array.data, width, height, width * 4, QImage.Format.Format_RGBA8888).copy()


def pil_to_qimage(image: "Image.Image") -> QImage:
    """A PIL image as an owning QImage (RGB, RGBA or 8-bit grey; other modes are converted first)."""
    mode = image.mode
    if mode not in ("RGB", "RGBA", "L"):
        keep_alpha = "A" in mode or "transparency" in image.info
        image = image.convert("RGBA" if keep_alpha else "RGB")
        mode = image.mode
    formats = {"RGB": (QImage.Format.Format_RGB888, 3), "RGBA": (QImage.Format.Format_RGBA8888, 4),
               "L": (QImage.Format.Format_Grayscale8, 1)}
    fmt, channels = formats[mode]
    width, height = image.size
    data = image.tobytes("raw", mode)
    return QImage(data, width, height, width * channels, fmt).copy()

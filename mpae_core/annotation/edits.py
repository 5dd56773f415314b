"""A person's corrections to one image: an integer override layer over the model's label map, with undo/redo.

The layer has the image's size; :data:`UNSET` means "use the prediction", any other value is a label value
(0 background, k + 1 slot k, a user label from :data:`USER_LABEL_BASE`, :data:`IGNORE_LABEL`). Keeping edits apart from the prediction means a part-table
change or a re-prediction never destroys the person's work, and "erase to prediction" is just writing UNSET.

Undo history stores, per step, only the bounding box of the pixels that changed (compressed when large), so a long
editing session costs kilobytes, not one full mask per stroke. A GUI drag becomes one undo step with
``with layer.group(): ...``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .fill import flood_region
from .labels import BACKGROUND, IGNORE_LABEL, UNSET, USER_LABEL_BASE

logger = logging.getLogger(__name__)

_COMPRESS_ABOVE = 256 * 1024  # bytes: patches larger than this are kept zlib-compressed


@dataclass
class _Patch:
    """Pixels of one box before (on the undo stack) or after (on the redo stack) a change."""

    y0: int
    x0: int
    shape: tuple[int, int]
    payload: np.ndarray | bytes

    @classmethod
    def pack(cls, y0: int, x0: int, array: np.ndarray) -> "_Patch":
        payload: np.ndarray | bytes = array.copy()
        if array.nbytes > _COMPRESS_ABOVE:
            payload = zlib.compress(np.ascontiguousarray(array).tobytes(), 1)
        return cls(y0, x0, array.shape, payload)  # type: ignore[arg-type]

    def unpack(self) -> np.ndarray:
        if isinstance(self.payload, bytes):
            return np.frombuffer(zlib.decompress(self.payload), dtype=np.uint16).reshape(self.shape)
        return self.payload

    @property
    def nbytes(self) -> int:
        return len(self.payload) if isinstance(self.payload, bytes) else self.payload.nbytes

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.shape[0]), slice(self.x0, self.x0 + self.shape[1])


class EditLayer:
    """Override layer of one image with brush, stroke, erase, fill, and undo/redo of changed boxes only."""

    def __init__(self, size: tuple[int, int], data: np.ndarray | None = None, *, num_parts: int | None = None,
                 max_undo_steps: int = 200, max_undo_bytes: int = 256 * 2**20) -> None:
        self.size = (int(size[0]), int(size[1]))
        if data is not None:
            data = np.asarray(data)
            if data.shape != self.size:
                raise ValueError(f"The edit layer is {data.shape[1]}×{data.shape[0]} but the image is "
                                 f"{self.size[1]}×{self.size[0]}.")
            data = data.astype(np.uint16, copy=True)
        self._data = data  # allocated on the first edit: unedited images cost nothing
        self.num_parts = num_parts
        if data is not None:
            self._check_values(data)
        self.max_undo_steps = max_undo_steps
        self.max_undo_bytes = max_undo_bytes
        self._undo: deque[list[_Patch]] = deque()
        self._redo: list[list[_Patch]] = []
        self._group: list[_Patch] | None = None
        self._group_depth = 0
        self._edited = 0 if data is None else int(np.count_nonzero(data != UNSET))
        #: Bumped by every change, undo and redo, so the project knows what to save.
        self.version = 0
        #: Called with the layer after every change, undo and redo (the project marks the image edited).
        self.on_change: Callable[["EditLayer"], None] | None = None
        #: (rows, cols) bounding box of the pixels the last change, undo or redo touched, so a view redraws only that.
        self.changed_box: tuple[slice, slice] | None = None

    # ----- reading ------------------------------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The [H, W] uint16 override values (a full UNSET array when nothing was edited); read-only by contract."""
        return self._data if self._data is not None else np.full(self.size, UNSET, dtype=np.uint16)

    @property
    def edited_pixels(self) -> int:
        return self._edited

    @property
    def has_edits(self) -> bool:
        return self._edited > 0

    def composed(self, prediction_labels: np.ndarray) -> np.ndarray:
        """The final [H, W] uint16 label map: the prediction where there is no edit, the edit elsewhere."""
        pred = self._check_prediction(prediction_labels)
        if self._data is None or not self._edited:
            return pred.astype(np.uint16)
        return np.where(self._data == UNSET, pred, self._data).astype(np.uint16, copy=False)

    def composed_at(self, rows: np.ndarray, cols: np.ndarray, prediction_labels: np.ndarray) -> np.ndarray:
        """The composed labels at a grid of pixels (``rows`` × ``cols``), over a prediction already sampled there:
        how a summary of an edited image is made without composing it at full size."""
        base = np.asarray(prediction_labels).astype(np.uint16)
        if self._data is None or not self._edited:
            return base
        sampled = self._data[np.ix_(rows, cols)]
        return np.where(sampled == UNSET, base, sampled)

    # ----- painting -----------------------------------------------------------------------------------------------
    def brush(self, x: float, y: float, radius: float, label: int) -> int:
        """Paint a disc (pixels whose centre is within ``radius`` of (x, y)); returns the pixels changed."""
        return self.stroke(x, y, x, y, radius, label)

    def stroke(self, x0: float, y0: float, x1: float, y1: float, radius: float, label: int) -> int:
        """Paint the brush dragged from (x0, y0) to (x1, y1); long segments are cut so each undo box stays small."""
        self._check_label(label)
        if radius < 0 or not all(math.isfinite(v) for v in (x0, y0, x1, y1, radius)):
            raise ValueError(f"A brush needs finite coordinates and a radius >= 0, got ({x0}, {y0})→({x1}, {y1}) "
                             f"r={radius}.")
        radius = max(float(radius), 0.5)  # at least the pixel under the cursor
        length = math.hypot(x1 - x0, y1 - y0)
        pieces = max(1, math.ceil(length / max(4 * radius, 64.0)))
        changed = 0
        with self.group():
            for i in range(pieces):
                ax, ay = x0 + (x1 - x0) * i / pieces, y0 + (y1 - y0) * i / pieces
                bx, by = x0 + (x1 - x0) * (i + 1) / pieces, y0 + (y1 - y0) * (i + 1) / pieces
                changed += self._paint_capsule(ax, ay, bx, by, radius, label)
        return changed

    def erase(self, x: float, y: float, radius: float) -> int:
        """Paint background (the pixels become background whatever the model says)."""
        return self.brush(x, y, radius, BACKGROUND)

    def restore(self, x: float, y: float, radius: float) -> int:
        """Erase the edits under the brush, so the prediction shows again."""
        return self.brush(x, y, radius, UNSET)

    def fill(self, x: int, y: int, label: int, prediction_labels: np.ndarray) -> int:
        """Set the connected region (4-connectivity) of the *composed* map around (x, y) to ``label``."""
        self._check_label(label)
        composed = self.composed(prediction_labels)
        box, inside = flood_region(composed, int(x), int(y))
        del composed
        return self.fill_region(box, inside, label)

    def fill_region(self, box: tuple[slice, slice], inside: np.ndarray, label: int) -> int:
        """Set the pixels of ``box`` where ``inside`` is true to ``label`` (one undo step): a region that a view
        flooded on the composed labels it already holds, e.g. to ask before a fill covers most of the image."""
        self._check_label(label)
        return self._apply(box, lambda patch: np.copyto(patch, np.uint16(label), where=inside))

    def set_all(self, labels: np.ndarray) -> int:
        """Set every pixel to ``labels`` (label values, the image's size): an imported annotation, which is the
        person's whole answer for the image. One undo step; returns the pixels changed."""
        labels = np.asarray(labels)
        if labels.shape != self.size:
            raise ValueError(f"The labels are {labels.shape[1]}×{labels.shape[0]} but the image is "
                             f"{self.size[1]}×{self.size[0]}.")
        if labels.dtype.kind not in "ui" or int(labels.min(initial=0)) < 0 or int(labels.max(initial=0)) > UNSET:
            raise ValueError(f"Labels must be integer label values 0..{UNSET}, got {labels.dtype}.")
        self._check_values(labels)
        return self._apply((slice(0, self.size[0]), slice(0, self.size[1])),
                           lambda patch: np.copyto(patch, labels, casting="unsafe"))

    def clear(self) -> int:
        """Remove every edit (one undo step)."""
        if not self._edited:
            return 0
        rows = np.flatnonzero((self._data != UNSET).any(axis=1))
        cols = np.flatnonzero((self._data != UNSET).any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        return self._apply(box, lambda patch: patch.fill(UNSET))

    # ----- undo / redo --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Everything painted inside the block is one undo step (a whole mouse drag)."""
        self._group_depth += 1
        if self._group_depth == 1:
            self._group = []
        try:
            yield
        finally:
            self._group_depth -= 1
            if self._group_depth == 0:
                patches, self._group = self._group, None
                if patches:
                    self._push_undo(patches)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Revert the last step; False when there is nothing to undo."""
        if self._group_depth:
            raise RuntimeError("Cannot undo while a group of edits is still open.")
        if not self._undo:
            return False
        step = self._undo.pop()
        for patch in reversed(step):
            self._swap(patch)
        self._redo.append(step)
        self._changed(_union_box(step))
        return True

    def redo(self) -> bool:
        """Re-apply the last undone step; False when there is nothing to redo."""
        if self._group_depth:
            raise RuntimeError("Cannot redo while a group of edits is still open.")
        if not self._redo:
            return False
        step = self._redo.pop()
        for patch in step:
            self._swap(patch)
        self._undo.append(step)
        self._changed(_union_box(step))
        return True

    @property
    def history_bytes(self) -> int:
        """Memory held by the undo and redo stacks."""
        return sum(p.nbytes for step in (*self._undo, *self._redo) for p in step)

    # ----- internals ----------------------------------------------------------------------------------------------
    def _paint_capsule(self, ax: float, ay: float, bx: float, by: float, radius: float, label: int) -> int:
        height, width = self.size
        top, bottom = max(0, math.ceil(min(ay, by) - radius)), min(height, math.floor(max(ay, by) + radius) + 1)
        left, right = max(0, math.ceil(min(ax, bx) - radius)), min(width, math.floor(max(ax, bx) + radius) + 1)
        if top >= bottom or left >= right:
            return 0
        yy = np.arange(top, bottom, dtype=np.float64)[:, None]
        xx = np.arange(left, right, dtype=np.float64)[None, :]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        t = 0.0 if seg2 == 0 else np.clip(((xx - ax) * dx + (yy - ay) * dy) / seg2, 0.0, 1.0)
        inside = (xx - ax - t * dx) ** 2 + (yy - ay - t * dy) ** 2 <= radius * radius + 1e-9
        box = (slice(top, bottom), slice(left, right))
        return self._apply(box, lambda patch: np.copyto(patch, np.uint16(label), where=inside))

    def _apply(self, box: tuple[slice, slice], change: Callable[[np.ndarray], None]) -> int:
        """Run ``change`` on the box in place, record the changed pixels' box for undo; returns pixels changed."""
        if self._data is None:
            self._data = np.full(self.size, UNSET, dtype=np.uint16)
        region = self._data[box]
        before = region.copy()
        change(region)
        diff = before != region
        changed = int(np.count_nonzero(diff))
        if not changed:
            return 0
        rows = np.flatnonzero(diff.any(axis=1))
        cols = np.flatnonzero(diff.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        self._edited += int(np.count_nonzero(region[r0:r1, c0:c1] != UNSET)) - int(
            np.count_nonzero(before[r0:r1, c0:c1] != UNSET))
        patch = _Patch.pack(box[0].start + r0, box[1].start + c0, before[r0:r1, c0:c1])
        if self._group is not None:
            self._group.append(patch)
        else:
            self._push_undo([patch])
        self._redo.clear()
        self._changed(patch.box)
        return changed

    def _swap(self, patch: _Patch) -> None:
        """Exchange the layer's pixels in the patch box with the patch's: undo and redo are the same move."""
        region = self._data[patch.box]
        stored = patch.unpack()
        current = region.copy()
        self._edited += int(np.count_nonzero(stored != UNSET)) - int(np.count_nonzero(current != UNSET))
        region[...] = stored
        replacement = _Patch.pack(patch.y0, patch.x0, current)
        patch.payload = replacement.payload

    def _push_undo(self, step: list[_Patch]) -> None:
        self._undo.append(step)
        while len(self._undo) > self.max_undo_steps:
            self._undo.popleft()
        total = self.history_bytes
        while len(self._undo) > 1 and total > self.max_undo_bytes:
            total -= sum(p.nbytes for p in self._undo.popleft())
            logger.debug("Dropped the oldest undo step to keep the history under %d bytes", self.max_undo_bytes)

    def _changed(self, box: tuple[slice, slice]) -> None:
        self.changed_box = box
        self.version += 1
        if self.on_change is not None:
            self.on_change(self)

    def _check_label(self, label: int) -> None:
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise ValueError(f"A label must be an integer label value, got {label!r}.")
        if label in (UNSET, IGNORE_LABEL) or USER_LABEL_BASE <= label < IGNORE_LABEL:
            return
        top = self.num_parts if self.num_parts is not None else USER_LABEL_BASE - 1
        if not 0 <= label <= top:
            raise ValueError(f"Label value {label} does not exist: use 0 (background), 1..{top} (part k is k), "
                             f"{USER_LABEL_BASE}+ (your own labels), {IGNORE_LABEL} (don't care) or {UNSET} (erase "
                             "to prediction).")

    def _check_values(self, data: np.ndarray) -> None:
        if self.num_parts is None:
            return
        bad = (data > self.num_parts) & (data < USER_LABEL_BASE)
        if bad.any():
            raise ValueError(f"The edit layer holds label value {int(data[bad].flat[0])}, but the model has only "
                             f"{self.num_parts} part slots.")

    def _check_prediction(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != self.size:
            raise ValueError(f"The prediction is {labels.shape[1]}×{labels.shape[0]} but the edit layer is "
                             f"{self.size[1]}×{self.size[0]}.")
        return labels


def _union_box(patches: list[_Patch]) -> tuple[slice, slice]:
    """The bounding box of an undo step's patches."""
    boxes = [patch.box for patch in patches]
    return (slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
            slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)))

"""The project's part table: what each model slot is called, its colour, and whether it is merged or ignored.

A slot k means the same semantic part in every image, so names, colours, merges and "ignore" are kept once per
project and every export goes through this table: renaming a slot renames it in every image at once.

Merges are kept flat: ``merged_into`` always points at a *root* slot (one that is not merged itself), so cycles
cannot exist and un-merging one slot never splits anything else. A merged slot keeps its own name, colour and
ignore flag; they come back when it is un-merged, and meanwhile the slot is drawn and exported as its root.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..palette import color_to_hex, default_part_color, default_part_name, hex_to_color
from .labels import EXPORT_IGNORE, IGNORE_LABEL, MAX_EXPORT_LABELS, MAX_SLOTS

Color = tuple[int, int, int]

BACKGROUND_NAME = "background"
BACKGROUND_COLOR: Color = (0, 0, 0)
IGNORE_NAME = "ignore"
IGNORE_COLOR: Color = (255, 255, 255)


@dataclass
class PartSlot:
    """One model slot's entry; ``merged_into`` is a root slot or None."""

    slot: int
    name: str
    color: Color
    ignored: bool = False
    merged_into: int | None = None


@dataclass(frozen=True)
class ExportLabel:
    """One label of the exports: ``index`` (1..N) is the pixel value in PNGs and the COCO category id."""

    index: int
    name: str
    color: Color
    slots: frozenset[int] = field(default_factory=frozenset)


def _check_color(color: Color | str | Sequence[int]) -> Color:
    if isinstance(color, str):
        return hex_to_color(color)
    values = tuple(int(c) for c in color)
    if len(values) != 3 or any(c < 0 or c > 255 for c in values):
        raise ValueError(f"A colour must be three integers 0..255 (or '#rrggbb'), got {color!r}.")
    return values  # type: ignore[return-value]


def _check_name(name: str, reserved: bool = False) -> str:
    text = str(name).strip()
    if not text:
        raise ValueError("A part name cannot be empty.")
    if any(c in text for c in "\r\n\t"):
        raise ValueError(f"A part name cannot contain line breaks or tabs (labels.txt has one name per line): {name!r}.")
    if reserved and text.casefold() in (BACKGROUND_NAME, IGNORE_NAME):
        raise ValueError(f"'{text}' is reserved for label 0 or 255 of the exports; choose another part name.")
    return text


class PartTable:
    """Slot → name/colour/ignore/merge for one project; every change applies to all images at once."""

    def __init__(self, slots: Iterable[PartSlot]) -> None:
        self._slots = [copy.copy(s) for s in slots]
        if not self._slots:
            raise ValueError("A part table needs at least one slot.")
        if len(self._slots) > MAX_SLOTS:
            raise ValueError(f"A part table holds at most {MAX_SLOTS} slots, got {len(self._slots)}.")
        for i, entry in enumerate(self._slots):
            if entry.slot != i:
                raise ValueError(f"Slot entries must be numbered 0..K-1 in order; entry {i} says slot {entry.slot}.")
            entry.name = _check_name(entry.name)
            entry.color = _check_color(entry.color)
            entry.ignored = bool(entry.ignored)
        for entry in self._slots:
            target = entry.merged_into
            if target is None:
                continue
            if not isinstance(target, int) or not 0 <= target < len(self._slots):
                raise ValueError(f"Slot {entry.slot} is merged into slot {target!r}, which does not exist.")
            if target == entry.slot:
                raise ValueError(f"Slot {entry.slot} is merged into itself.")
            if self._slots[target].merged_into is not None:
                raise ValueError(f"Slot {entry.slot} is merged into slot {target}, which is itself merged; "
                                 "merges must point at a root slot.")
        #: Bumped by every change, so views and the project can tell that exports changed.
        self.version = 0

    # ----- construction -------------------------------------------------------------------------------------------
    @classmethod
    def default(cls, num_parts: int) -> "PartTable":
        """Names ``part_01``… and palette colours, nothing merged or ignored."""
        if num_parts < 1:
            raise ValueError(f"A part table needs at least one slot, got {num_parts}.")
        return cls(PartSlot(k, default_part_name(k), default_part_color(k)) for k in range(num_parts))

    @classmethod
    def from_model_info(cls, names: Sequence[str], colors: Sequence[Color | str] | None = None) -> "PartTable":
        """The table a checkpoint suggests (``model.info.part_names/part_colors``); missing colours from the palette."""
        if colors is not None and len(colors) != len(names):
            raise ValueError(f"The model names {len(names)} parts but gives {len(colors)} colours.")
        return cls(
            PartSlot(k, name, colors[k] if colors is not None else default_part_color(k))  # type: ignore[arg-type]
            for k, name in enumerate(names)
        )

    def copy(self) -> "PartTable":
        return PartTable(self._slots)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartTable) and self._slots == other._slots

    def __repr__(self) -> str:
        return f"PartTable({self._slots!r})"

    # ----- reading ------------------------------------------------------------------------------------------------
    @property
    def num_parts(self) -> int:
        return len(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, slot: int) -> PartSlot:
        """A copy of one slot's entry (change the table through its methods, never through entries)."""
        return copy.copy(self._slots[self._check_slot(slot)])

    def __iter__(self):
        return iter([copy.copy(s) for s in self._slots])

    def root(self, slot: int) -> int:
        """The slot whose name, colour and ignore flag ``slot`` shows and exports with (itself when not merged)."""
        target = self._slots[self._check_slot(slot)].merged_into
        return slot if target is None else target

    def members(self, slot: int) -> list[int]:
        """All slots of ``slot``'s group (its root and everything merged into it), in slot order."""
        root = self.root(slot)
        return [s.slot for s in self._slots if s.slot == root or s.merged_into == root]

    def display_name(self, slot: int) -> str:
        return self._slots[self.root(slot)].name

    def display_color(self, slot: int) -> Color:
        return self._slots[self.root(slot)].color

    def is_ignored(self, slot: int) -> bool:
        """True when the slot's pixels become background in exports (its root is ignored)."""
        return self._slots[self.root(slot)].ignored

    # ----- changes ------------------------------------------------------------------------------------------------
    def rename(self, slot: int, name: str) -> None:
        """Rename one slot; to rename a merged group, rename its root (``table.root(slot)``)."""
        entry = self._slots[self._check_slot(slot)]
        name = _check_name(name, reserved=True)
        clashes = [o for o in self._slots if o.slot != slot and o.merged_into is None and o.name == name]
        if entry.merged_into is None and clashes:
            other = clashes[0]
            raise ValueError(f"Slot {other.slot} is already called '{name}'; merge slot {slot} into it instead "
                             "of giving two labels the same name.")
        entry.name = name
        self.version += 1

    def recolor(self, slot: int, color: Color | str) -> None:
        self._slots[self._check_slot(slot)].color = _check_color(color)
        self.version += 1

    def ignore(self, slot: int, ignored: bool = True) -> None:
        """Mark a root slot (with its merged group) as ignored: its pixels export as background."""
        entry = self._slots[self._check_slot(slot)]
        if entry.merged_into is not None:
            root = self._slots[entry.merged_into]
            raise ValueError(f"Slot {slot} ({entry.name}) is merged into slot {root.slot} ({root.name}); ignore slot "
                             f"{root.slot} to drop the whole group, or unmerge slot {slot} first.")
        entry.ignored = bool(ignored)
        self.version += 1

    def unignore(self, slot: int) -> None:
        self.ignore(slot, False)

    def merge(self, slots: int | Iterable[int], target: int) -> None:
        """Merge ``slots`` (with anything merged into them) into ``target``'s group; the group keeps its root's name.

        A target that is itself merged resolves to its root. Nothing changes if any slot is invalid.
        """
        sources = [slots] if isinstance(slots, (int, np.integer)) else list(slots)
        self._check_slot(target)
        root = self.root(target)
        for s in sources:
            self._check_slot(s)
            if s == target:
                raise ValueError(f"Slot {s} ({self._slots[s].name}) cannot be merged into itself.")
            if s == root:
                raise ValueError(f"Slot {s} ({self._slots[s].name}) cannot be merged into slot {target}: slot {target} "
                                 f"is already merged into slot {s}; unmerge slot {target} first to swap them.")
        for s in sources:
            # a root brings its whole group along; a merged slot moves alone (its old group keeps the rest)
            moving = self.members(s) if self._slots[s].merged_into is None else [s]
            for member in moving:
                if member != root:
                    self._slots[member].merged_into = root
        self.version += 1

    def unmerge(self, slot: int) -> None:
        """Make a merged slot a label of its own again, with its own name, colour and ignore flag."""
        entry = self._slots[self._check_slot(slot)]
        if entry.merged_into is None:
            merged = [s for s in self.members(slot) if s != slot]
            hint = f"; to split its group, unmerge slots {merged}" if merged else ""
            raise ValueError(f"Slot {slot} ({entry.name}) is not merged into another slot{hint}.")
        entry.merged_into = None
        self.version += 1

    # ----- exports ------------------------------------------------------------------------------------------------
    def export_labels(self) -> list[ExportLabel]:
        """Labels 1..N of the exports: the un-ignored root slots in slot order, each with the slots it gathers."""
        labels: list[ExportLabel] = []
        for entry in self._slots:
            if entry.merged_into is None and not entry.ignored:
                labels.append(ExportLabel(len(labels) + 1, entry.name, entry.color, frozenset(self.members(entry.slot))))
        if len(labels) > MAX_EXPORT_LABELS:
            raise ValueError(f"The part table exports {len(labels)} labels, more than the {MAX_EXPORT_LABELS} an 8-bit "
                             "PNG can hold; merge or ignore some parts.")
        return labels

    def slot_to_export_index(self) -> np.ndarray:
        """uint8 [K + 1] table: label value (0 = background, k + 1 = slot k) → export index (0 when ignored)."""
        lut = np.zeros(self.num_parts + 1, dtype=np.uint8)
        for label in self.export_labels():
            for s in label.slots:
                lut[s + 1] = label.index
        return lut

    def to_export(self, label_map: np.ndarray) -> np.ndarray:
        """Label values → export indices (uint8), with IGNORE_LABEL → 255; unknown values raise ValueError."""
        labels = np.asarray(label_map)
        if labels.dtype.kind not in "ui":
            raise ValueError(f"A label map must hold integers, got {labels.dtype}.")
        lut = self.slot_to_export_index()
        top = int(labels.max(initial=0))
        if top < lut.size and int(labels.min(initial=0)) >= 0:
            return lut[labels]
        bad = (labels < 0) | ((labels >= lut.size) & (labels != IGNORE_LABEL))
        if bad.any():
            value = int(labels[bad].flat[0])
            raise ValueError(f"The label map holds the value {value}, but the part table has only {self.num_parts} "
                             f"slots (values 0..{self.num_parts}); the predictions and the table come from different "
                             "models.")
        full = np.zeros(IGNORE_LABEL + 1, dtype=np.uint8)
        full[: lut.size] = lut
        full[IGNORE_LABEL] = EXPORT_IGNORE
        return full[labels]

    # ----- JSON ---------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"slots": [
            {"slot": s.slot, "name": s.name, "color": color_to_hex(s.color), "ignored": s.ignored,
             "merged_into": s.merged_into}
            for s in self._slots
        ]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PartTable":
        """Inverse of :meth:`to_dict`; a damaged table raises ValueError saying what is wrong."""
        try:
            entries = [
                PartSlot(int(e["slot"]), str(e["name"]), hex_to_color(str(e["color"])), bool(e.get("ignored", False)),
                         None if e.get("merged_into") is None else int(e["merged_into"]))
                for e in data["slots"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"The part table is damaged ({exc!r}).") from exc
        return cls(entries)

    def _check_slot(self, slot: int) -> int:
        if not isinstance(slot, (int, np.integer)) or isinstance(slot, bool) or not 0 <= slot < len(self._slots):
            raise ValueError(f"There is no part slot {slot!r}; this model has slots 0..{len(self._slots) - 1}.")
        return int(slot)

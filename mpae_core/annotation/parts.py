"""The project's part table: what each model slot is called, its colour, whether it is merged or exported as
background, and the person's own labels for parts the model did not find.

A slot k means the same semantic part in every image, so names, colours and merges are kept once per project and
every export goes through this table: renaming a slot renames it in every image at once.

Two words are kept apart on purpose: a part *exported as background* (``as_background``) is a real part whose
pixels are written as background (0), while *don't care* (:data:`~.labels.IGNORE_LABEL`, 255 in the exports) is a
region a person painted so that no tool learns from it.

Merges are kept flat: ``merged_into`` always points at a *root* slot (one that is not merged itself), so cycles
cannot exist and un-merging one slot never splits anything else. A merged slot keeps its own name, colour and
background flag; they come back when it is un-merged, and meanwhile the slot is drawn and exported as its root.

User labels (:class:`UserLabel`) have no model slot: label value ``USER_LABEL_BASE + j``, named, coloured,
painted and exported like parts (after the model's parts), never merged and never refined.

A table may have no model slots at all (K = 0, :meth:`PartTable.empty`): a project that got its labels from an import
before any model predicted it. The first model then gives it slots (:meth:`PartTable.with_model_slots`) and its user
labels, with the values already painted, stay as they are.

People count parts from 1 (``part_01`` is slot 0), so every message names "part k + 1"; code uses slots from 0.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..palette import color_to_hex, default_part_color, default_part_name, hex_to_color
from .labels import (EXPORT_IGNORE, IGNORE_LABEL, MAX_EXPORT_LABELS, MAX_SLOTS, MAX_USER_LABELS, UNSET,
                     USER_LABEL_BASE)

logger = logging.getLogger(__name__)

Color = tuple[int, int, int]

BACKGROUND_NAME = "background"
BACKGROUND_COLOR: Color = (0, 0, 0)
#: The exports' name of index 255 (VOC's "ignore"); the app calls it "don't care".
IGNORE_NAME = "ignore"
DONT_CARE_NAME = "don't care"
IGNORE_COLOR: Color = (255, 255, 255)
_RESERVED_NAMES = (BACKGROUND_NAME, IGNORE_NAME, DONT_CARE_NAME)


@dataclass
class PartSlot:
    """One model slot's entry; ``merged_into`` is a root slot or None."""

    slot: int
    name: str
    color: Color
    as_background: bool = False
    merged_into: int | None = None


@dataclass
class UserLabel:
    """A label the person added for something the model has no slot for; label value ``USER_LABEL_BASE + index``."""

    index: int
    name: str
    color: Color
    as_background: bool = False

    @property
    def value(self) -> int:
        return USER_LABEL_BASE + self.index


@dataclass(frozen=True)
class ExportLabel:
    """One label of the exports: ``index`` (1..N) is the pixel value in PNGs and the COCO category id.

    ``slots`` are the model slots it gathers (empty for a user label); ``values`` every label value it exports."""

    index: int
    name: str
    color: Color
    slots: frozenset[int] = field(default_factory=frozenset)
    values: frozenset[int] = field(default_factory=frozenset)


def part_number(slot: int) -> int:
    """The number people see for a slot (the panel's #, ``part_01``): slot + 1."""
    return int(slot) + 1


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
    if reserved and text.casefold() in _RESERVED_NAMES:
        raise ValueError(f"'{text}' is reserved for label 0 or 255 of the exports; choose another part name.")
    return text


class PartTable:
    """Slot → name/colour/background/merge for one project, plus user labels; every change applies to all images."""

    def __init__(self, slots: Iterable[PartSlot], user_labels: Iterable[UserLabel] = ()) -> None:
        self._slots = [copy.copy(s) for s in slots]
        self._user = [copy.copy(u) for u in user_labels]
        if len(self._slots) > MAX_SLOTS:
            raise ValueError(f"A part table holds at most {MAX_SLOTS} slots, got {len(self._slots)}.")
        if len(self._user) > MAX_USER_LABELS:
            raise ValueError(f"A part table holds at most {MAX_USER_LABELS} user labels, got {len(self._user)}.")
        for i, entry in enumerate(self._slots):
            if entry.slot != i:
                raise ValueError(f"Slot entries must be numbered 0..K-1 in order; entry {i} says slot {entry.slot}.")
            entry.name = _check_name(entry.name)
            entry.color = _check_color(entry.color)
            entry.as_background = bool(entry.as_background)
        for i, label in enumerate(self._user):
            if label.index != i:
                raise ValueError(f"User labels must be numbered 0..n-1 in order; entry {i} says {label.index}.")
            label.name = _check_name(label.name, reserved=True)
            label.color = _check_color(label.color)
            label.as_background = bool(label.as_background)
        for entry in self._slots:
            target = entry.merged_into
            if target is None:
                continue
            if not isinstance(target, int) or not 0 <= target < len(self._slots):
                raise ValueError(f"Part {part_number(entry.slot)} is merged into part {target!r}, which does not "
                                 "exist.")
            if target == entry.slot:
                raise ValueError(f"Part {part_number(entry.slot)} is merged into itself.")
            if self._slots[target].merged_into is not None:
                raise ValueError(f"Part {part_number(entry.slot)} is merged into part {part_number(target)}, which is "
                                 "itself merged; merges must point at a root part.")
        #: Bumped by every change, so views and the project can tell that exports changed.
        self.version = 0

    # ----- construction -------------------------------------------------------------------------------------------
    @classmethod
    def default(cls, num_parts: int) -> "PartTable":
        """Names ``part_01``… and palette colours, nothing merged or exported as background."""
        if num_parts < 1:
            raise ValueError(f"A part table needs at least one slot, got {num_parts}.")
        return cls(PartSlot(k, default_part_name(k), default_part_color(k)) for k in range(num_parts))

    @classmethod
    def empty(cls) -> "PartTable":
        """No model slots yet, user labels only: what an import into a project without a model starts from."""
        return cls([])

    def with_model_slots(self, model_table: "PartTable") -> "PartTable":
        """This zero-slot table given a model's slots (names, colours, merges of ``model_table``), keeping its own
        user labels: their values are painted in the edits already. Refused when this table has slots."""
        if self.num_parts:
            raise ValueError(f"This part table has {self.num_parts} model slots already; only a table without slots "
                             "takes a model's.")
        clashes = sorted({u.name for u in self._user} & {s.name for s in model_table._slots if s.merged_into is None})
        if clashes:
            logger.warning("The model names parts %s like labels of this project; both are kept (rename one)", clashes)
        return PartTable(model_table._slots, self._user)

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
        return PartTable(self._slots, self._user)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartTable) and self._slots == other._slots and self._user == other._user

    def __repr__(self) -> str:
        return f"PartTable({self._slots!r}, user_labels={self._user!r})"

    # ----- reading ------------------------------------------------------------------------------------------------
    @property
    def num_parts(self) -> int:
        """The number of model slots (K); user labels are not counted."""
        return len(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, slot: int) -> PartSlot:
        """A copy of one slot's entry (change the table through its methods, never through entries)."""
        return copy.copy(self._slots[self._check_slot(slot)])

    def __iter__(self):
        return iter([copy.copy(s) for s in self._slots])

    def root(self, slot: int) -> int:
        """The slot whose name, colour and background flag ``slot`` shows and exports with (itself when not merged)."""
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

    def is_background(self, slot: int) -> bool:
        """True when the slot's pixels are exported as background (its root is marked so)."""
        return self._slots[self.root(slot)].as_background

    @property
    def user_labels(self) -> list[UserLabel]:
        """Copies of the person's own labels, in order."""
        return [copy.copy(u) for u in self._user]

    def user_label(self, value: int) -> UserLabel:
        """The user label with label value ``value`` (USER_LABEL_BASE + j)."""
        index = int(value) - USER_LABEL_BASE
        if not 0 <= index < len(self._user):
            raise ValueError(f"There is no user label with value {value}; this table has {len(self._user)}.")
        return copy.copy(self._user[index])

    def has_value(self, value: int) -> bool:
        """Whether a label value means something in this table (background, a slot, a user label, don't care)."""
        value = int(value)
        return (0 <= value <= self.num_parts or value == IGNORE_LABEL
                or USER_LABEL_BASE <= value < USER_LABEL_BASE + len(self._user))

    def value_info(self, value: int) -> tuple[str, Color, bool]:
        """Name, colour and "exported as background" of a label value: background, a part (after merges), a user
        label, or don't care."""
        value = int(value)
        if value == 0:
            return BACKGROUND_NAME, BACKGROUND_COLOR, True
        if value == IGNORE_LABEL:
            return DONT_CARE_NAME, IGNORE_COLOR, False
        if value >= USER_LABEL_BASE:
            label = self.user_label(value)
            return label.name, label.color, label.as_background
        root = self._slots[self.root(value - 1)]
        return root.name, root.color, root.as_background

    def value_name(self, value: int) -> str:
        return self.value_info(value)[0]

    def value_color(self, value: int) -> Color:
        return self.value_info(value)[1]

    def value_is_background(self, value: int) -> bool:
        """True when pixels of this label value export as background (0 itself, or a part/user label so marked)."""
        return self.value_info(value)[2]

    def label_names(self) -> list[str]:
        """Every name in use (root parts and user labels): new labels must not repeat one."""
        return [s.name for s in self._slots if s.merged_into is None] + [u.name for u in self._user]

    # ----- changes ------------------------------------------------------------------------------------------------
    def rename(self, slot: int, name: str) -> None:
        """Rename one slot; to rename a merged group, rename its root (``table.root(slot)``)."""
        entry = self._slots[self._check_slot(slot)]
        name = _check_name(name, reserved=True)
        if entry.merged_into is None:
            self._check_unique(name, skip_slot=slot)
        entry.name = name
        self.version += 1

    def recolor(self, slot: int, color: Color | str) -> None:
        self._slots[self._check_slot(slot)].color = _check_color(color)
        self.version += 1

    def set_as_background(self, slot: int, as_background: bool = True) -> None:
        """Export a root slot (with its merged group) as background (0), or as its own label again."""
        entry = self._slots[self._check_slot(slot)]
        if entry.merged_into is not None:
            root = self._slots[entry.merged_into]
            raise ValueError(f"Part {part_number(slot)} ({entry.name}) is merged into part {part_number(root.slot)} "
                             f"({root.name}); export part {part_number(root.slot)} as background to drop the whole "
                             f"group, or unmerge part {part_number(slot)} first.")
        entry.as_background = bool(as_background)
        self.version += 1

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
                raise ValueError(f"Part {part_number(s)} ({self._slots[s].name}) cannot be merged into itself.")
            if s == root:
                raise ValueError(f"Part {part_number(s)} ({self._slots[s].name}) cannot be merged into part "
                                 f"{part_number(target)}: part {part_number(target)} is already merged into part "
                                 f"{part_number(s)}; unmerge part {part_number(target)} first to swap them.")
        for s in sources:
            # a root brings its whole group along; a merged slot moves alone (its old group keeps the rest)
            moving = self.members(s) if self._slots[s].merged_into is None else [s]
            for member in moving:
                if member != root:
                    self._slots[member].merged_into = root
        self.version += 1

    def unmerge(self, slot: int) -> None:
        """Make a merged slot a label of its own again, with its own name, colour and background flag."""
        entry = self._slots[self._check_slot(slot)]
        if entry.merged_into is None:
            merged = [part_number(s) for s in self.members(slot) if s != slot]
            hint = f"; to split its group, unmerge parts {merged}" if merged else ""
            raise ValueError(f"Part {part_number(slot)} ({entry.name}) is not merged into another part{hint}.")
        entry.merged_into = None
        self.version += 1

    # ----- user labels ----------------------------------------------------------------------------------------------
    def add_user_label(self, name: str, color: Color | str | None = None) -> int:
        """Add a label the model has no slot for; returns its label value (USER_LABEL_BASE + j)."""
        name = _check_name(name, reserved=True)
        self._check_unique(name)
        if len(self._user) >= MAX_USER_LABELS:
            raise ValueError(f"A part table holds at most {MAX_USER_LABELS} user labels.")
        index = len(self._user)
        self._user.append(UserLabel(index, name, _check_color(color) if color is not None
                                    else default_part_color(self.num_parts + index)))
        self.version += 1
        return USER_LABEL_BASE + index

    def rename_user_label(self, value: int, name: str) -> None:
        label = self._user[self.user_label(value).index]
        name = _check_name(name, reserved=True)
        self._check_unique(name, skip_user=label.index)
        label.name = name
        self.version += 1

    def recolor_user_label(self, value: int, color: Color | str) -> None:
        self._user[self.user_label(value).index].color = _check_color(color)
        self.version += 1

    def set_user_label_as_background(self, value: int, as_background: bool = True) -> None:
        self._user[self.user_label(value).index].as_background = bool(as_background)
        self.version += 1

    def remove_last_user_label(self) -> int:
        """Drop the newest user label (values stay stable for the others); the project checks it is unused first."""
        if not self._user:
            raise ValueError("There is no user label to remove.")
        label = self._user.pop()
        self.version += 1
        return label.value

    # ----- exports ------------------------------------------------------------------------------------------------
    def export_labels(self) -> list[ExportLabel]:
        """Labels 1..N of the exports: the root slots not exported as background, in slot order, each with the slots
        it gathers; then the user labels not exported as background."""
        labels: list[ExportLabel] = []
        for entry in self._slots:
            if entry.merged_into is None and not entry.as_background:
                members = self.members(entry.slot)
                labels.append(ExportLabel(len(labels) + 1, entry.name, entry.color, frozenset(members),
                                          frozenset(s + 1 for s in members)))
        for label in self._user:
            if not label.as_background:
                labels.append(ExportLabel(len(labels) + 1, label.name, label.color, frozenset(),
                                          frozenset([label.value])))
        if len(labels) > MAX_EXPORT_LABELS:
            raise ValueError(f"The part table exports {len(labels)} labels, more than the {MAX_EXPORT_LABELS} an 8-bit "
                             "PNG can hold; merge some parts or export some as background.")
        return labels

    def slot_to_export_index(self) -> np.ndarray:
        """uint8 [K + 1] table: model label value (0 = background, k + 1 = slot k) → export index (0 = background)."""
        lut = np.zeros(self.num_parts + 1, dtype=np.uint8)
        for label in self.export_labels():
            for s in label.slots:
                lut[s + 1] = label.index
        return lut

    def value_to_export_index(self) -> np.ndarray:
        """uint8 [65536] table over every label value: slots, user labels, IGNORE_LABEL → 255; undefined values and
        UNSET → 0 (use :meth:`to_export`, which refuses them)."""
        lut = np.zeros(UNSET + 1, dtype=np.uint8)
        for label in self.export_labels():
            lut[list(label.values)] = label.index
        lut[IGNORE_LABEL] = EXPORT_IGNORE
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
        user_end = USER_LABEL_BASE + len(self._user)
        bad = ((labels < 0) | (labels > UNSET) | ((labels >= lut.size) & (labels != IGNORE_LABEL)
               & ((labels < USER_LABEL_BASE) | (labels >= user_end))))
        if bad.any():
            value = int(labels[bad].flat[0])
            raise ValueError(f"The label map holds the value {value}, but the part table has only {self.num_parts} "
                             f"parts (values 0..{self.num_parts}) and {len(self._user)} user labels; the predictions "
                             "and the table come from different models.")
        return self.value_to_export_index()[labels.astype(np.uint16, copy=False)]

    # ----- JSON ---------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"slots": [
            {"slot": s.slot, "name": s.name, "color": color_to_hex(s.color), "as_background": s.as_background,
             "merged_into": s.merged_into}
            for s in self._slots
        ]}
        if self._user:
            data["user_labels"] = [{"name": u.name, "color": color_to_hex(u.color), "as_background": u.as_background}
                                   for u in self._user]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PartTable":
        """Inverse of :meth:`to_dict`; a damaged table raises ValueError saying what is wrong."""
        try:
            entries = [
                PartSlot(int(e["slot"]), str(e["name"]), hex_to_color(str(e["color"])),
                         bool(e.get("as_background", False)),
                         None if e.get("merged_into") is None else int(e["merged_into"]))
                for e in data["slots"]
            ]
            users = [UserLabel(j, str(u["name"]), hex_to_color(str(u["color"])), bool(u.get("as_background", False)))
                     for j, u in enumerate(data.get("user_labels", []))]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"The part table is damaged ({exc!r}).") from exc
        return cls(entries, users)

    # ----- internals ----------------------------------------------------------------------------------------------
    def _check_unique(self, name: str, *, skip_slot: int | None = None, skip_user: int | None = None) -> None:
        for other in self._slots:
            if other.slot != skip_slot and other.merged_into is None and other.name == name:
                raise ValueError(f"Part {part_number(other.slot)} is already called '{name}'; merge into it instead "
                                 "of giving two labels the same name.")
        for label in self._user:
            if label.index != skip_user and label.name == name:
                raise ValueError(f"The label '{name}' exists already; paint with it instead of adding another.")

    def _check_slot(self, slot: int) -> int:
        integer = isinstance(slot, (int, np.integer)) and not isinstance(slot, bool)
        if not integer or not 0 <= slot < len(self._slots):
            raise ValueError(f"There is no part {part_number(slot) if integer else repr(slot)}; this model has parts "
                             f"1..{len(self._slots)}.")
        return int(slot)

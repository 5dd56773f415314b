"""One numbering of labels everywhere in the app, and the keys that paint with them.

People count parts from 1: part 3 is slot 2, named ``part_03`` by default, shown as "3" in the parts panel, the paint
list and the hover text, and painted with the key 3. The person's own labels are numbered apart, "⇧1", "⇧2"…
(Shift+1, Shift+2…), so adding one never renumbers a part. Background is 0 and "don't care" is "-". Only the first
nine of each have a key; the others are chosen in the paint list or the panel.
"""
from __future__ import annotations

from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL, USER_LABEL_BASE
from mpae_core.annotation.parts import PartTable, part_number

BACKGROUND_KEY = "0"
DONT_CARE_KEY = "-"
KEYED_LABELS = 9  # parts 1..9 and user labels ⇧1..⇧9 have a key
USER_PREFIX = "⇧"


def label_number(value: int) -> str:
    """What people call a label value: "0" background, "3" part 3 (slot 2), "⇧1" the first user label, "-" don't
    care."""
    value = int(value)
    if value == BACKGROUND:
        return BACKGROUND_KEY
    if value == IGNORE_LABEL:
        return DONT_CARE_KEY
    if value >= USER_LABEL_BASE:
        return f"{USER_PREFIX}{value - USER_LABEL_BASE + 1}"
    return str(part_number(value - 1))


def label_key(value: int) -> str | None:
    """The shortcut (QKeySequence text) that paints with a label value, or None beyond the ninth."""
    number = label_number(value)
    if number in (BACKGROUND_KEY, DONT_CARE_KEY):
        return number
    user = number.startswith(USER_PREFIX)
    index = int(number.removeprefix(USER_PREFIX))
    if index > KEYED_LABELS:
        return None
    return f"Shift+{index}" if user else number


def painted_value(parts: PartTable | None, value: int) -> int:
    """The value a label is painted as: a slot merged into another is painted as its group's root."""
    value = int(value)
    if parts is not None and 1 <= value <= parts.num_parts:
        return parts.root(value - 1) + 1
    return value

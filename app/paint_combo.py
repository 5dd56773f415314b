"""The paint list: the label the brush and fill paint with, each entry shown with its number (the key that picks it).

Entries hold the label value as their data and the plain name as their text (so ``findText(name)`` and
``findData(value)`` keep working); the number is drawn before the name, in the list and in the closed box.
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import (QComboBox, QStyle, QStyledItemDelegate, QStyleOptionComboBox, QStyleOptionViewItem,
                               QStylePainter, QWidget)

from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL
from mpae_core.annotation.parts import PartTable

from .icons import icon
from .label_keys import label_key, label_number
from .overlay import IGNORE_RGB

BACKGROUND_RGB = (0, 0, 0)  # drawn in the palette's text colour (black would vanish in the dark theme)
#: What the two special entries mean; "don't care" is not a part exported as background, and says so.
MEANINGS = {
    BACKGROUND: "Background: exported as 0",
    IGNORE_LABEL: "Don't care: exported as 255, pixels no tool learns from (a part exported as background is 0 "
                  "instead)",
}

NUMBER_ROLE = Qt.ItemDataRole.UserRole + 1


def numbered(number: str, text: str) -> str:
    return f"{number}  {text}" if number else text


def paint_choices(parts: PartTable | None) -> list[tuple[int, str, tuple[int, int, int]]]:
    """(value, name, colour) of every label a person can paint: background, the root parts and the person's own
    labels not exported as background, then don't care."""
    choices: list[tuple[int, str, tuple[int, int, int]]] = [(BACKGROUND, "Background", BACKGROUND_RGB)]
    if parts is not None:
        for slot in range(parts.num_parts):
            if parts.root(slot) == slot and not parts.is_background(slot):
                choices.append((slot + 1, parts.display_name(slot), parts.display_color(slot)))
        choices += [(u.value, u.name, u.color) for u in parts.user_labels if not u.as_background]
    choices.append((IGNORE_LABEL, "Don't care (255)", IGNORE_RGB))
    return choices


class _NumberedDelegate(QStyledItemDelegate):
    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        super().initStyleOption(option, index)
        option.text = numbered(index.data(NUMBER_ROLE) or "", option.text)


class PaintLabelCombo(QComboBox):
    """A combo box of paint labels whose entries show "3  wing": number, then name."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setItemDelegate(_NumberedDelegate(self))

    def set_choices(self, parts: PartTable | None) -> None:
        """Fill the list from the part table (signals of the caller's choosing stay blocked or not)."""
        self.clear()
        for value, name, color in paint_choices(parts):
            glyph = icon("brush") if color is BACKGROUND_RGB else icon("brush", "#%02x%02x%02x" % tuple(color))
            self.addItem(glyph, name, value)
            self.setItemData(self.count() - 1, label_number(value), NUMBER_ROLE)
            key = label_key(value)
            tip = MEANINGS.get(value, name) + (f" (key {key})" if key else "")
            self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)

    def item_number(self, index: int) -> str:
        return self.itemData(index, NUMBER_ROLE) or ""

    def numbered_text(self, index: int) -> str:
        """An entry as shown: "3  wing"."""
        return numbered(self.item_number(index), self.itemText(index))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt name)
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = numbered(self.item_number(self.currentIndex()), option.currentText)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

"""The person's own labels, below the model's parts: things the model did not find (a label has no model slot).

A user label is named, coloured, painted and exported like a part (after the model's parts), never merged and never
refined. Its number is "⇧1", "⇧2"… (Shift+1 paints with the first), apart from the parts' numbers, so adding one
never renumbers a part. Changes go through the project's :class:`PartTable` (which validates names); the newest
label can be removed while no image is painted with it, so label values never shift under painted pixels.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QColorDialog, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QTableView, QToolButton, QVBoxLayout, QWidget)

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.parts import PartTable, UserLabel
from mpae_core.palette import default_part_color

from .icons import icon
from .label_keys import label_number
from .label_rows import (COL_BACKGROUND, COL_COLOR, COL_COUNT, COL_GALLERY, COL_NAME, COL_VISIBLE, NUMBER_TIP,
                         LabelTableModel, is_checked, panel_action, setup_label_view, swatch)

logger = logging.getLogger(__name__)

HEADERS = ("#", "Your label", "", "As bg", "Images", "")
HEADER_TIPS = (NUMBER_TIP, "A label the model has no part for; yours in every image (F2 to rename)",
               "Show or hide the label's overlay", "Export as background: its pixels are written as background (0)",
               "Number of images painted with it", "Show the label's gallery")
EMPTY_HINT = "Something the model did not find? Add a label, then paint it (Shift+1 paints with the first)."


class UserLabelsModel(LabelTableModel):
    """The project's user labels as rows; ``setData`` forwards to the PartTable and reports refusals via ``error``."""

    HEADERS, HEADER_TIPS = HEADERS, HEADER_TIPS
    error = Signal(str)
    labelsChanged = Signal()
    hiddenChanged = Signal(object)  # frozenset of hidden label values

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._project: AnnotationProject | None = None
        self._rows: list[UserLabel] = []
        self._counts: dict[int, int] = {}
        self._hidden: set[int] = set()

    def reload(self) -> None:
        """Re-read the labels and the number of images painted with each (from the index)."""
        self.beginResetModel()
        parts = self.parts
        self._rows = [] if parts is None else parts.user_labels
        self._counts = {}
        if self._project is not None and self._rows:
            for record in self._project.records():
                for value in record.user_present:
                    self._counts[value] = self._counts.get(value, 0) + 1
        self._hidden &= {label.value for label in self._rows}
        self.endResetModel()

    def value_at(self, row: int) -> int | None:
        return self._rows[row].value if 0 <= row < len(self._rows) else None

    def image_count(self, value: int) -> int:
        return self._counts.get(value, 0)

    def hidden_values(self) -> frozenset[int]:
        return frozenset(self._hidden)

    def set_hidden(self, value: int, hidden: bool) -> None:
        if (value in self._hidden) == hidden:
            return
        (self._hidden.add if hidden else self._hidden.discard)(value)
        row = [label.value for label in self._rows].index(value)
        self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1))
        self.hiddenChanged.emit(self.hidden_values())

    # ----- Qt model -----------------------------------------------------------------------------------------------
    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == COL_NAME:
            flags |= Qt.ItemFlag.ItemIsEditable
        if index.column() == COL_BACKGROUND:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        label, col = self._rows[index.row()], index.column()
        hidden = label.value in self._hidden
        if role == Qt.ItemDataRole.DisplayRole:
            return {COL_COLOR: label_number(label.value), COL_NAME: label.name,
                    COL_COUNT: str(self._counts.get(label.value, 0))}.get(col)
        if role == Qt.ItemDataRole.EditRole:
            return {COL_NAME: label.name, COL_COLOR: QColor(*label.color)}.get(col)
        if role == Qt.ItemDataRole.DecorationRole:
            return {COL_COLOR: swatch(label.color), COL_VISIBLE: icon("hidden" if hidden else "visible"),
                    COL_GALLERY: icon("gallery")}.get(col)
        if role == Qt.ItemDataRole.CheckStateRole and col == COL_BACKGROUND:
            return Qt.CheckState.Checked if label.as_background else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ForegroundRole and (label.as_background or hidden):
            return QColor(128, 128, 128)
        if role == Qt.ItemDataRole.FontRole and col == COL_NAME and label.as_background:
            font = QFont()
            font.setStrikeOut(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_COUNT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            key = label_number(label.value).replace("⇧", "Shift+")
            return f"Your label {label_number(label.value)}: {label.name} ({key} paints with it)"
        return None

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: Any,
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        parts = self.parts
        if parts is None or not index.isValid():
            return False
        label, col = self._rows[index.row()], index.column()
        if col == COL_VISIBLE:
            self.set_hidden(label.value, not is_checked(value))
            return True
        if self._project is not None and self._project.read_only is not None:
            self.error.emit(f"Labels cannot change here: {self._project.read_only}.")
            return False
        try:
            if col == COL_NAME and role == Qt.ItemDataRole.EditRole:
                if str(value).strip() == label.name:
                    return False
                parts.rename_user_label(label.value, str(value))
            elif col == COL_COLOR and role == Qt.ItemDataRole.EditRole:
                color = QColor(value)
                if not color.isValid():
                    raise ValueError(f"{value!r} is not a colour.")
                parts.recolor_user_label(label.value, (color.red(), color.green(), color.blue()))
            elif col == COL_BACKGROUND and role == Qt.ItemDataRole.CheckStateRole:
                parts.set_user_label_as_background(label.value, is_checked(value))
            else:
                return False
        except ValueError as exc:
            logger.info("Part table refused a change of a user label: %s", exc)
            self.error.emit(str(exc))
            return False
        self._rows = parts.user_labels
        self.dataChanged.emit(self.index(index.row(), 0), self.index(index.row(), self.columnCount() - 1))
        self.labelsChanged.emit()
        return True


class AddLabelDialog(QDialog):
    """Name and colour of a new label; the name is checked against the table before the dialog closes."""

    def __init__(self, parts: PartTable, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a label")
        self._parts = parts
        self.color = QColor(*default_part_color(parts.num_parts + len(parts.user_labels)))
        self.name_edit = QLineEdit(placeholderText="e.g. tail")
        self.color_button = QPushButton("Colour…")
        self.color_button.clicked.connect(self._pick_color)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(QLabel("A label for something the model has no part for. It is painted and exported like a "
                           "part (after the model's parts) and never changed by a model."))
        form.addRow("Name", self.name_edit)
        form.addRow("Colour", self.color_button)
        form.addRow(self.error_label)
        form.addRow(buttons)
        self._show_color()

    def name(self) -> str:
        return self.name_edit.text().strip()

    def rgb(self) -> tuple[int, int, int]:
        return self.color.red(), self.color.green(), self.color.blue()

    def accept(self) -> None:
        try:
            self._parts.copy().add_user_label(self.name(), self.rgb())  # a trial on a copy: says what is wrong
        except ValueError as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()

    def _pick_color(self) -> None:
        color = QColorDialog.getColor(self.color, self, "Colour of the new label")
        if color.isValid():
            self.color = color
            self._show_color()

    def _show_color(self) -> None:
        self.color_button.setIcon(swatch(self.rgb()))


class UserLabelsPanel(QWidget):
    """"Your labels": add, rename (F2), recolour, hide, export as background, gallery, and remove the newest."""

    labelsChanged = Signal()
    error = Signal(str)
    hiddenChanged = Signal(object)  # frozenset of hidden user label values
    activeValueChanged = Signal(int)  # the selected label's value (the paint label follows)
    galleryRequested = Signal(int)  # a label value

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: AnnotationProject | None = None
        self.model = UserLabelsModel(self)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        setup_label_view(self.view)
        self.view.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        a = panel_action
        self.act_add = a(self.view, "Add label…", self.ask_to_add, "Add a label for something the model did not "
                         "find", ["Ctrl+Shift+N"], "add", "Add label…")
        self.act_rename = a(self.view, "Rename label", self.rename_current, "Rename your label in every image",
                            ["F2"])
        self.act_color = a(self.view, "Change the label's colour…", self.pick_color, "Your label's colour",
                           ["Ctrl+K"])
        self.act_remove = a(self.view, "Remove the newest label", self.remove_last, "Remove your newest label "
                            "(only while no image is painted with it)", [], "remove", "Remove last")
        self.title = QLabel("<b>Your labels</b>")
        self.hint = QLabel(EMPTY_HINT)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: gray;")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.title)
        row.addStretch(1)
        for action in (self.act_add, self.act_remove):
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addWidget(self.hint)
        layout.addWidget(self.view)
        self.model.error.connect(self.error)
        self.model.labelsChanged.connect(self.labelsChanged)
        self.model.hiddenChanged.connect(self.hiddenChanged)
        self.model.modelReset.connect(self._layout_rows)
        self.view.clicked.connect(self._clicked)
        self.view.doubleClicked.connect(self._double_clicked)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self._layout_rows()

    # ----- public API ---------------------------------------------------------------------------------------------
    def set_project(self, project: AnnotationProject | None) -> None:
        self._project = project
        self.model.set_project(project)
        self.hiddenChanged.emit(frozenset())

    def refresh(self) -> None:
        """Re-read labels and counts (after a stroke, a prediction run or a table change elsewhere)."""
        row = self.view.currentIndex().row()
        self.model.reload()
        if 0 <= row < self.model.rowCount():
            self.view.setCurrentIndex(self.model.index(row, COL_NAME))

    def shortcut_actions(self) -> list:
        return [self.act_add, self.act_rename, self.act_color, self.act_remove]

    def hidden_values(self) -> frozenset[int]:
        return self.model.hidden_values()

    def ask_to_add(self) -> int | None:
        """Ask for a name and colour (a dialog), then add the label; its value, or None when cancelled/refused."""
        parts = self._table_for_new_label()
        if parts is None:
            return None
        dialog = AddLabelDialog(parts, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return self.add_label(dialog.name(), dialog.rgb())

    def add_label(self, name: str, color: tuple[int, int, int] | str | None = None) -> int | None:
        """Add a label (no dialog); its value, or None when refused (``error`` says why)."""
        parts = self._table_for_new_label()
        if parts is None:
            return None
        try:
            value = parts.add_user_label(name, color)
        except ValueError as exc:
            self.error.emit(str(exc))
            return None
        self.model.reload()
        self.labelsChanged.emit()  # the paint list gets it first: selecting it below makes it the paint label
        self.view.setCurrentIndex(self.model.index(self.model.rowCount() - 1, COL_NAME))
        return value

    def remove_last(self) -> bool:
        """Remove the newest label; refused (``error``) while an image is painted with it."""
        if self._project is None or not self._writable():
            return False
        try:
            self._project.remove_last_user_label()
        except ValueError as exc:
            self.error.emit(str(exc))
            return False
        self.model.reload()
        self.labelsChanged.emit()
        return True

    def rename_current(self) -> None:
        row = self.view.currentIndex().row()
        if row >= 0:
            index = self.model.index(row, COL_NAME)
            self.view.setCurrentIndex(index)
            self.view.edit(index)

    def pick_color(self) -> None:
        row = self.view.currentIndex().row()
        value, parts = self.model.value_at(row), self.model.parts
        if value is None or parts is None:
            return
        label = parts.user_label(value)
        color = QColorDialog.getColor(QColor(*label.color), self, f"Colour of {label.name}")
        if color.isValid():
            self.model.setData(self.model.index(row, COL_COLOR), color)

    # ----- internals ----------------------------------------------------------------------------------------------
    def _writable(self) -> bool:
        if self._project is not None and self._project.read_only is not None:
            self.error.emit(f"Labels cannot change here: {self._project.read_only}.")
            return False
        return True

    def _table_for_new_label(self) -> PartTable | None:
        """The table a new label goes into: a project that no model predicted yet gets one without parts."""
        if self._project is None:
            self.error.emit("Open a folder first: labels belong to a folder's project.")
            return None
        if not self._writable():
            return None
        if self._project.parts is None:
            self._project.set_parts(PartTable.empty())
        return self._project.parts

    def _layout_rows(self) -> None:
        """The table is as tall as its rows (up to six); the hint stands in for it while there are none."""
        rows = self.model.rowCount()
        self.view.setVisible(rows > 0)
        self.hint.setVisible(rows == 0)
        header = self.view.horizontalHeader().sizeHint().height()
        self.view.setFixedHeight(header + 4 + min(rows, 6) * self.view.verticalHeader().defaultSectionSize())
        self.act_remove.setEnabled(rows > 0)
        self.act_rename.setEnabled(rows > 0)
        self.act_color.setEnabled(rows > 0)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        value = self.model.value_at(current.row())
        if value is not None:
            self.activeValueChanged.emit(value)

    def _clicked(self, index: QModelIndex) -> None:
        value = self.model.value_at(index.row())
        if value is None:
            return
        if index.column() == COL_VISIBLE:
            self.model.set_hidden(value, value not in self.model.hidden_values())
        elif index.column() == COL_GALLERY:
            self.galleryRequested.emit(value)

    def _double_clicked(self, index: QModelIndex) -> None:
        if index.column() == COL_COLOR:
            self.pick_color()
        elif index.column() == COL_COUNT:
            value = self.model.value_at(index.row())
            if value is not None:
                self.galleryRequested.emit(value)

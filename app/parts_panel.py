"""The dataset-wide part table: name, colour, visibility and "export as background" flag of every model slot, plus merges.

A slot means the same part in every image, so this panel edits the project's :class:`PartTable` once for the whole
folder. Every change goes through the table's own methods (which validate names and merges); the panel only shows
the table, reports errors inline and tells the window through ``partsChanged`` so it can redraw and autosave.

Rows: each root slot in slot order, followed by the slots merged into it (indented, greyed), each with its number
(slot + 1, the key that paints with it). Visibility is a view setting of this panel, not of the project: hiding a root
hides its whole group. Below the parts, the person's own labels (:mod:`app.user_labels_panel`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.parts import PartTable, part_number

from .icons import icon
from .label_keys import label_number
from .label_rows import (COL_BACKGROUND, COL_COLOR, COL_COUNT, COL_GALLERY, COL_NAME, COL_VISIBLE, NUMBER_TIP,
                         LabelTableModel, panel_action, setup_label_view)
from .label_rows import is_checked as _is_checked
from .label_rows import swatch as _swatch
from .user_labels_panel import UserLabelsPanel

logger = logging.getLogger(__name__)

__all__ = ["COL_BACKGROUND", "COL_COLOR", "COL_COUNT", "COL_GALLERY", "COL_NAME", "COL_VISIBLE", "PartsModel",
           "PartsPanel"]
HEADERS = ("#", "Part", "", "As bg", "Images", "")
HEADER_TIPS = (NUMBER_TIP, "Part name, the same in every image (F2 to rename)",
               "Show or hide the part's overlay", "Export as background: the part's pixels are written as background "
               "(0) (Del or I)",
               "Number of images the part appears in, hand edits included (double-click for its gallery)",
               "Show the part's gallery")


@dataclass(frozen=True)
class _Row:
    """One table row: a root slot, or a slot merged into ``root``."""

    slot: int
    root: int

    @property
    def is_member(self) -> bool:
        return self.slot != self.root


class PartsModel(LabelTableModel):
    """The part table as rows for a view; ``setData`` forwards to PartTable and reports refusals via ``error``."""

    HEADERS, HEADER_TIPS = HEADERS, HEADER_TIPS

    #: A change the PartTable refused (its message says why); the old value stays.
    error = Signal(str)
    #: The table changed through this model (rename, recolour, export as background).
    tableChanged = Signal()
    #: The hidden slots changed (frozenset of every hidden slot, merged members included).
    hiddenChanged = Signal(object)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._project: AnnotationProject | None = None
        self._rows: list[_Row] = []
        self._counts: dict[int, int] = {}  # row slot → images (group-wide for roots)
        self._hidden: set[int] = set()  # hidden root slots
        self.read_only = False  # the project is read-only here: the table can be looked at, not changed

    # ----- data source --------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read rows and counts from the project (after any table change or new predictions)."""
        self.beginResetModel()
        self._rows, self._counts = [], {}
        parts = self.parts
        if parts is not None and self._project is not None:
            for slot in range(parts.num_parts):
                if parts.root(slot) == slot:
                    self._rows.append(_Row(slot, slot))
                    self._rows.extend(_Row(m, slot) for m in parts.members(slot) if m != slot)
            self._counts = self._count_images(self._project, parts)
            # a hidden root that got merged away hands nothing on; its old members are roots again, shown
            self._hidden &= {r.slot for r in self._rows if not r.is_member}
        self.endResetModel()

    @staticmethod
    def _count_images(project: AnnotationProject, parts: PartTable) -> dict[int, int]:
        """Images per slot, and per group for roots (an image counts once if any member shows), from the index."""
        per_slot = [int(c) for c in project.part_image_counts()]
        groups = {slot: set(parts.members(slot)) for slot in range(parts.num_parts)
                  if parts.root(slot) == slot and len(parts.members(slot)) > 1}
        counts = {slot: per_slot[slot] if slot < len(per_slot) else 0 for slot in range(parts.num_parts)}
        if groups:
            group_counts = dict.fromkeys(groups, 0)
            for record in project.records():
                if (record.has_prediction or record.has_edits) and record.present:  # hand edits count too
                    present = set(record.present)
                    for root, members in groups.items():
                        if present & members:
                            group_counts[root] += 1
            counts.update(group_counts)
        return counts

    # ----- queries ------------------------------------------------------------------------------------------------
    def row_slot(self, row: int) -> int | None:
        return self._rows[row].slot if 0 <= row < len(self._rows) else None

    def row_of(self, slot: int) -> int | None:
        for i, r in enumerate(self._rows):
            if r.slot == slot:
                return i
        return None

    def is_member_row(self, row: int) -> bool:
        return 0 <= row < len(self._rows) and self._rows[row].is_member

    def image_count(self, slot: int) -> int:
        return self._counts.get(slot, 0)

    def hidden_slots(self) -> frozenset[int]:
        parts = self.parts
        if parts is None:
            return frozenset()
        return frozenset(s for s in range(parts.num_parts) if parts.root(s) in self._hidden)

    def set_hidden(self, slot: int, hidden: bool) -> None:
        parts = self.parts
        if parts is None:
            return
        root = parts.root(slot)
        if (root in self._hidden) == hidden:
            return
        (self._hidden.add if hidden else self._hidden.discard)(root)
        rows = [i for i, r in enumerate(self._rows) if r.root == root]
        if rows:
            self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), self.columnCount() - 1))
        self.hiddenChanged.emit(self.hidden_slots())

    # ----- Qt model -----------------------------------------------------------------------------------------------
    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        member = self._rows[index.row()].is_member or self.read_only
        if index.column() == COL_NAME and not member:
            flags |= Qt.ItemFlag.ItemIsEditable
        if index.column() == COL_BACKGROUND and not member:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        parts = self.parts
        if parts is None or not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, col = self._rows[index.row()], index.column()
        entry = parts[row.slot]
        hidden = row.root in self._hidden
        as_background = parts.is_background(row.root)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_COLOR:
                return label_number(row.slot + 1)
            if col == COL_NAME:
                if row.is_member:
                    return f"↳ {entry.name} (part {part_number(row.slot)})"
                return entry.name
            if col == COL_COUNT:
                return str(self._counts.get(row.slot, 0))
            return None
        if role == Qt.ItemDataRole.EditRole:
            if col == COL_NAME:
                return entry.name
            if col == COL_COLOR:
                return QColor(*entry.color)
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            if col == COL_COLOR:
                # a member keeps its own colour for later, but is drawn in the root's: show that one, faded
                return _swatch(parts.display_color(row.slot), faded=row.is_member)
            if col == COL_VISIBLE and not row.is_member:
                return icon("hidden") if hidden else icon("visible")
            if col == COL_GALLERY and not row.is_member:
                return icon("gallery")
            return None
        if role == Qt.ItemDataRole.CheckStateRole and col == COL_BACKGROUND and not row.is_member:
            return Qt.CheckState.Checked if as_background else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ForegroundRole and (row.is_member or as_background or hidden):
            return QColor(128, 128, 128)
        if role == Qt.ItemDataRole.FontRole and col == COL_NAME and as_background and not row.is_member:
            font = QFont()
            font.setStrikeOut(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_COUNT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(parts, row, col, hidden)
        return None

    def _tooltip(self, parts: PartTable, row: _Row, col: int, hidden: bool) -> str:
        if row.is_member:
            return (f"Part {part_number(row.slot)} ({parts[row.slot].name}) is merged into part "
                    f"{part_number(row.root)} ({parts.display_name(row.root)}); key {part_number(row.slot)} paints "
                    "with the group; select it and press Un-merge to make it a part of its own again.")
        if col == COL_VISIBLE:
            return "Hidden: click to show" if hidden else "Visible: click to hide"
        if col in (COL_COUNT, COL_GALLERY):
            return f"{self._counts.get(row.slot, 0)} images show {parts.display_name(row.slot)}; click for its gallery"
        members = parts.members(row.slot)
        numbers = ", ".join(str(part_number(m)) for m in members)
        return f"Part {numbers} of the model: {parts.display_name(row.slot)}"

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: Any,
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        parts = self.parts
        if parts is None or not index.isValid():
            return False
        row, col = self._rows[index.row()], index.column()
        if self.read_only and col != COL_VISIBLE:
            return False
        try:
            if col == COL_NAME and role == Qt.ItemDataRole.EditRole and not row.is_member:
                name = str(value).strip()
                if name == parts[row.slot].name:
                    return False
                parts.rename(row.slot, name)
            elif col == COL_COLOR and role == Qt.ItemDataRole.EditRole:
                color = QColor(value)
                if not color.isValid():
                    raise ValueError(f"{value!r} is not a colour.")
                parts.recolor(row.root, (color.red(), color.green(), color.blue()))
            elif col == COL_BACKGROUND and role == Qt.ItemDataRole.CheckStateRole and not row.is_member:
                parts.set_as_background(row.slot, _is_checked(value))
            elif col == COL_VISIBLE and role in (Qt.ItemDataRole.EditRole, Qt.ItemDataRole.CheckStateRole):
                self.set_hidden(row.slot, not _is_checked(value))
                return True
            else:
                return False
        except ValueError as exc:
            logger.info("Part table refused a change: %s", exc)
            self.error.emit(str(exc))
            return False
        rows = [i for i, r in enumerate(self._rows) if r.root == row.root]
        self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), self.columnCount() - 1))
        self.tableChanged.emit()
        return True


class PartsPanel(QWidget):
    """The dock's part list: rename, recolour, hide, export as background and merge the dataset's parts."""

    partsChanged = Signal()
    visibilityChanged = Signal(object)  # frozenset[int] of hidden slots
    activeSlotChanged = Signal(int)  # -1 for none
    galleryRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: AnnotationProject | None = None
        self._active: int | None = None
        self._last_hidden: frozenset[int] = frozenset()
        self.model = PartsModel(self)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        setup_label_view(self.view)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.user_labels = UserLabelsPanel(self)

        self._build_actions()
        self.merge_button = self._tool_button(self.act_merge)
        self.unmerge_button = self._tool_button(self.act_unmerge)
        self.background_button = self._tool_button(self.act_background)
        self.gallery_button = self._tool_button(self.act_gallery)
        self.error_label = QLabel(self)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.hide()

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.setSpacing(4)
        for button in (self.merge_button, self.unmerge_button, self.background_button, self.gallery_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(buttons)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.user_labels)
        layout.addWidget(self.error_label)
        self.addAction(self.user_labels.act_add)  # Ctrl+Shift+N anywhere in the panel
        self.user_labels.labelsChanged.connect(self._user_labels_changed)
        self.user_labels.error.connect(self._show_error)

        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(
            lambda pos: self.context_menu(pos).exec(self.view.viewport().mapToGlobal(pos)))
        self.model.error.connect(self._show_error)
        self.model.tableChanged.connect(self._table_changed)
        self.model.hiddenChanged.connect(lambda _hidden: self._emit_visibility())
        self.model.hiddenChanged.connect(lambda _hidden: self._update_buttons())
        self.model.modelReset.connect(self._update_buttons)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.selectionModel().currentChanged.connect(lambda *_: self._update_buttons())
        self.view.clicked.connect(self._clicked)
        self.view.doubleClicked.connect(self._double_clicked)
        self._update_buttons()

    def _build_actions(self) -> None:
        """The panel's commands, shared by its buttons, its context menu, its shortcuts and the shortcuts list."""
        a = self._panel_action
        self.act_rename = a("Rename part", self.rename_current, "Rename the part in every image", ["F2"])
        self.act_color = a("Change colour…", lambda: self._for_active(self.pick_color), "The part's colour "
                           "(double-click the swatch too)", ["Ctrl+K"])
        self.act_merge = a("Merge parts", self.merge_selected, "Merge the selected parts into the first one "
                           "(the same label in every image)", ["Ctrl+M"], "merge", "Merge")
        self.act_unmerge = a("Un-merge", self.unmerge_selected, "Make the selected merged slots parts of their own "
                             "again", ["Ctrl+Shift+M"], "unmerge")
        self.act_background = a("Export as background", self.toggle_background_selected, "Export the selected parts "
                                "as background (0), or as their own labels again", ["Del", "I"], "ignore",
                                "As background")
        self.act_visibility = a("Hide part", self.toggle_hidden_selected, "Show or hide the selected parts' overlay",
                                ["Ctrl+H"], "visible")
        self.act_gallery = a("Show the part's gallery", self._request_gallery, "Show crops of the selected part "
                             "across the folder", ["Ctrl+G"], "gallery", "Gallery")

    def _panel_action(self, text: str, slot: Any, tip: str, keys: list[str], icon_name: str | None = None,
                      icon_text: str | None = None) -> QAction:
        return panel_action(self.view, text, slot, tip, keys, icon_name, icon_text)

    def _tool_button(self, action: QAction) -> QToolButton:
        button = QToolButton(self)
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        return button

    def shortcut_actions(self) -> list[QAction]:
        """The panel's commands (their shortcuts work while the part list has the focus)."""
        return [self.act_rename, self.act_color, self.act_merge, self.act_unmerge, self.act_background,
                self.act_visibility, self.act_gallery, *self.user_labels.shortcut_actions()]

    def context_menu(self, pos: QPoint) -> QMenu:
        """The menu for a right-click at ``pos`` (viewport coordinates): a click outside the selection selects the
        clicked part first, so the commands act on what the person pointed at."""
        index = self.view.indexAt(pos)
        slot = self.model.row_slot(index.row()) if index.isValid() else None
        if slot is not None and slot not in self.selected_slots():
            self.select_slot(slot)
        menu = QMenu(self)
        for action in (self.act_rename, self.act_color, None, self.act_merge, self.act_unmerge, None,
                       self.act_background, self.act_visibility, self.act_gallery, None, self.user_labels.act_add):
            menu.addSeparator() if action is None else menu.addAction(action)
        return menu

    # ----- public API ---------------------------------------------------------------------------------------------
    def set_project(self, project: AnnotationProject | None) -> None:
        """Show ``project``'s part table (None clears the panel); visibility starts all-visible."""
        self._project = project
        self._clear_error()
        self.model.set_project(project)
        self.user_labels.set_project(project)
        self._sync_active()
        self._last_hidden = self.hidden_slots()
        self.visibilityChanged.emit(self._last_hidden)

    def refresh(self) -> None:
        """Re-read the table and counts (after predictions or a table change elsewhere), keeping the selection."""
        selected = self.selected_slots()
        current = self.model.row_slot(self.view.currentIndex().row())
        self.model.reload()
        self._reselect(selected, current)
        self._update_buttons()
        self.user_labels.refresh()

    def hidden_slots(self) -> frozenset[int]:
        return self.model.hidden_slots()

    def set_read_only(self, read_only: bool) -> None:
        """Turn off renaming, recolouring, merging and background flags (hiding parts still works)."""
        self.model.read_only = read_only
        self._update_buttons()

    def set_slot_hidden(self, slot: int, hidden: bool) -> None:
        """Hide or show a part's group (emits visibilityChanged when that changes anything)."""
        self.model.set_hidden(slot, hidden)

    def active_slot(self) -> int | None:
        """The part the brush paints: the selected row's group root, or None."""
        return self._active

    def select_slot(self, slot: int) -> None:
        """Select the row of ``slot`` (a merged member selects its own row)."""
        row = self.model.row_of(slot)
        if row is None:
            self.view.clearSelection()
            return
        index = self.model.index(row, COL_NAME)
        self.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.view.scrollTo(index)

    def selected_slots(self) -> list[int]:
        """Slots of the selected rows, in row order."""
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [s for s in (self.model.row_slot(r) for r in rows) if s is not None]

    # ----- actions ------------------------------------------------------------------------------------------------
    def merge_selected(self) -> None:
        """Merge the selected parts into the selected root with the lowest slot."""
        parts = self.model.parts
        selected = self.selected_slots()
        if parts is None or len({parts.root(s) for s in selected}) < 2:
            return
        roots = [s for s in selected if parts.root(s) == s]
        target = min(roots) if roots else parts.root(min(selected))
        sources = [s for s in selected if parts.root(s) != parts.root(target)]
        if self._apply(lambda: parts.merge(sources, target)):
            self.select_slot(target)
            logger.info("Merged parts %s into part %d", ", ".join(str(part_number(s)) for s in sources),
                        part_number(target))

    def unmerge_selected(self) -> None:
        """Un-merge selected member rows; a selected root with members splits its whole group."""
        parts = self.model.parts
        if parts is None:
            return
        targets: list[int] = []
        for slot in self.selected_slots():
            if parts.root(slot) != slot:
                targets.append(slot)
            else:
                targets.extend(m for m in parts.members(slot) if m != slot)
        targets = sorted(set(targets))
        if targets and self._apply(lambda: [parts.unmerge(s) for s in targets]):
            self._reselect(targets, targets[0])

    def toggle_background_selected(self) -> None:
        """Export the selected groups as background, or as their own labels again when all already are."""
        parts = self.model.parts
        if parts is None:
            return
        roots = self._selected_roots()
        if not roots:
            return
        as_background = not all(parts.is_background(r) for r in roots)
        self._apply(lambda: [parts.set_as_background(r, as_background) for r in roots])

    def toggle_hidden_selected(self) -> None:
        """Hide the selected groups' overlay, or show them again when all are hidden."""
        roots = self._selected_roots()
        hide = not all(root in self.hidden_slots() for root in roots)
        for root in roots:
            self.model.set_hidden(root, hide)
        self._update_buttons()

    def rename_current(self) -> None:
        """Start editing the current part's name in place (F2)."""
        row = self.view.currentIndex().row()
        if row < 0 or self.model.is_member_row(row):
            return
        index = self.model.index(row, COL_NAME)
        self.view.setCurrentIndex(index)
        self.view.edit(index)

    def pick_color(self, slot: int) -> None:
        """Ask for a new colour for ``slot``'s group (modal colour dialog)."""
        parts = self.model.parts
        row = self.model.row_of(slot)
        if parts is None or row is None:
            return
        color = QColorDialog.getColor(QColor(*parts.display_color(slot)), self,
                                      f"Colour of {parts.display_name(slot)}")
        if color.isValid():
            self.model.setData(self.model.index(row, COL_COLOR), color)

    # ----- internals ----------------------------------------------------------------------------------------------
    def _apply(self, change: Any) -> bool:
        """Run a PartTable change; a refusal shows its message and changes nothing else."""
        if self.model.read_only:
            return False
        try:
            change()
        except ValueError as exc:
            logger.info("Part table refused a change: %s", exc)
            self._show_error(str(exc))
            self.refresh()  # a multi-step change may have applied its first steps
            return False
        self._table_changed(reload=True)
        return True

    def _table_changed(self, reload: bool = False) -> None:
        self._clear_error()
        if reload:
            self.refresh()
        else:
            self._update_buttons()
        self.partsChanged.emit()
        self._emit_visibility()
        self._sync_active()

    def _user_labels_changed(self) -> None:
        """A user label was added, renamed, recoloured, flagged or removed: the window redraws and saves."""
        self._clear_error()
        self.partsChanged.emit()

    def _emit_visibility(self) -> None:
        """visibilityChanged only when the hidden set really changed (merges can change it too)."""
        hidden = self.hidden_slots()
        if hidden != self._last_hidden:
            self._last_hidden = hidden
            self.visibilityChanged.emit(hidden)

    def _reselect(self, slots: list[int], current: int | None) -> None:
        selection = self.view.selectionModel()
        selection.clear()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for slot in slots:
            row = self.model.row_of(slot)
            if row is not None:
                selection.select(self.model.index(row, 0), flags)
        row = None if current is None else self.model.row_of(current)
        if row is not None:
            selection.setCurrentIndex(self.model.index(row, COL_NAME), QItemSelectionModel.SelectionFlag.NoUpdate)
        self._sync_active()

    def _selection_changed(self, *_: Any) -> None:
        self._update_buttons()
        self._sync_active()

    def _sync_active(self) -> None:
        parts = self.model.parts
        selected = self.selected_slots()
        current = self.model.row_slot(self.view.currentIndex().row())
        slot = current if current in selected else (selected[0] if selected else None)
        active = None if slot is None or parts is None else parts.root(slot)
        if active != self._active:
            self._active = active
            self.activeSlotChanged.emit(-1 if active is None else active)

    def _selected_roots(self) -> list[int]:
        parts = self.model.parts
        return [] if parts is None else sorted({parts.root(s) for s in self.selected_slots()})

    def _for_active(self, command: Any) -> None:
        if self._active is not None:
            command(self._active)

    def _update_buttons(self) -> None:
        parts = self.model.parts
        selected = self.selected_slots()
        groups = self._selected_roots()
        editable = not self.model.read_only
        current = self.view.currentIndex().row()
        self.act_rename.setEnabled(editable and current >= 0 and not self.model.is_member_row(current))
        self.act_color.setEnabled(editable and len(groups) == 1)
        self.act_merge.setEnabled(editable and len(groups) >= 2)
        self.act_unmerge.setEnabled(editable and parts is not None
                                    and any(len(parts.members(s)) > 1 for s in selected))
        self.act_background.setEnabled(editable and bool(groups))
        all_background = bool(groups) and all(parts.is_background(g) for g in groups)
        self.act_background.setText("Export as own labels again" if all_background else "Export as background")
        self.act_background.setIconText("As background")
        self.act_visibility.setEnabled(bool(groups))
        all_hidden = bool(groups) and all(g in self.hidden_slots() for g in groups)
        self.act_visibility.setText("Show part" if all_hidden else "Hide part")
        self.act_visibility.setIcon(icon("visible" if all_hidden else "hidden"))
        self.act_gallery.setEnabled(len(groups) == 1)

    def _clicked(self, index: QModelIndex) -> None:
        slot = self.model.row_slot(index.row())
        if slot is None or self.model.is_member_row(index.row()):
            return
        if index.column() == COL_VISIBLE:
            self.model.set_hidden(slot, slot not in self.hidden_slots())
        elif index.column() == COL_GALLERY:
            self.galleryRequested.emit(slot)

    def _double_clicked(self, index: QModelIndex) -> None:
        slot = self.model.row_slot(index.row())
        if slot is None:
            return
        if index.column() == COL_COLOR:
            self.pick_color(slot)
        elif index.column() == COL_COUNT:
            self.galleryRequested.emit(self.model.parts.root(slot) if self.model.parts else slot)

    def _request_gallery(self) -> None:
        if self._active is not None:
            self.galleryRequested.emit(self._active)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    def _clear_error(self) -> None:
        self.error_label.clear()
        self.error_label.hide()

"""What the parts table and the user-labels table share: their columns, colour swatches, check states, the look of
their views and how their commands are made (each command works from a button, the context menu and a shortcut)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.parts import PartTable

from .icons import icon

COL_COLOR, COL_NAME, COL_VISIBLE, COL_BACKGROUND, COL_COUNT, COL_GALLERY = range(6)
NUMBER_TIP = "Number (its key paints with it: 1–9 parts, Shift+1–9 your labels) and colour (double-click to change)"


def swatch(color: tuple[int, int, int], size: int = 16, faded: bool = False) -> QIcon:
    """A rounded colour square, so the row's colour matches the overlay at a glance."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    fill = QColor(*color)
    if faded:
        fill.setAlpha(110)
    painter.setBrush(fill)
    painter.setPen(QColor(0, 0, 0, 120))
    painter.drawRoundedRect(1, 1, size - 2, size - 2, 3, 3)
    painter.end()
    return QIcon(pixmap)


def is_checked(value: Any) -> bool:
    """A check state from a view (int or Qt.CheckState) or a plain bool from code."""
    if isinstance(value, bool):
        return value
    try:
        return Qt.CheckState(value) == Qt.CheckState.Checked
    except ValueError:
        return bool(value)


class LabelTableModel(QAbstractTableModel):
    """What both label tables share: the project they show, one row per entry of ``_rows`` (their own row type),
    the columns above and a set of hidden entries (a view setting, never saved). Subclasses fill ``_rows`` in
    their ``reload`` and set HEADERS/HEADER_TIPS."""

    HEADERS: Sequence[str] = ()
    HEADER_TIPS: Sequence[str] = ()
    _project: AnnotationProject | None
    _rows: list
    _hidden: set[int]

    @property
    def parts(self) -> PartTable | None:
        return None if self._project is None else self._project.parts

    def set_project(self, project: AnnotationProject | None) -> None:
        """Show ``project``'s labels, all visible; the subclass's ``reload`` reads its rows."""
        self._project = project
        self._hidden.clear()
        self.reload()  # type: ignore[attr-defined]

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Text, tooltip, and the eye and grid icons over their columns."""
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.HEADER_TIPS[section]
        if role == Qt.ItemDataRole.DecorationRole:
            return {COL_VISIBLE: icon("visible"), COL_GALLERY: icon("gallery")}.get(section)
        return None


def setup_label_view(view: QTableView) -> None:
    """Rows selected whole, edited in place (double-click, F2), compact, the name column stretched."""
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
    view.verticalHeader().hide()
    view.setShowGrid(False)
    view.setAlternatingRowColors(True)
    view.setIconSize(QSize(16, 16))
    view.verticalHeader().setDefaultSectionSize(24)
    header = view.horizontalHeader()
    header.setHighlightSections(False)
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
    header.setMinimumSectionSize(26)


def panel_action(view: QTableView, text: str, slot: Callable[[], Any], tip: str, keys: list[str],
                 icon_name: str | None = None, icon_text: str | None = None) -> QAction:
    """A command of a label table: its shortcuts work while that table has the focus."""
    action = QAction(text, view)
    if icon_name:
        action.setIcon(icon(icon_name))
    action.setIconText(icon_text or text)
    action.setShortcuts([QKeySequence(k) for k in keys])
    action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    shortcuts = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
    action.setToolTip(f"{tip} ({shortcuts})" if shortcuts else tip)
    action.triggered.connect(lambda _checked=False: slot())
    view.addAction(action)
    return action

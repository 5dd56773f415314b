"""Space held pans the canvas wherever the keyboard focus is in the window.

The canvas only hears keys while it has the focus, so after a click in the file list Space used to reach the list and
Space+drag painted. This filter, installed on the application, catches Space for the whole window while the pointer
is over the canvas, except in a text field, where Space types a space.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QCursor, QKeyEvent
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

from .canvas import ImageCanvas


def _types_text(widget: QWidget | None) -> bool:
    """Whether Space is text in ``widget`` (a line edit, text box, spin box or editable combo box)."""
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    return isinstance(widget, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox))


class SpacePanFilter(QObject):
    """Routes Space press/release anywhere in ``window`` to the canvas while the pointer is over it."""

    def __init__(self, window: QWidget, canvas: ImageCanvas) -> None:
        super().__init__(window)
        self._window, self._canvas = window, canvas
        QApplication.instance().installEventFilter(self)  # goes away with the window (Qt drops deleted filters)

    def _pointer_over_canvas(self) -> bool:
        viewport = self._canvas.viewport()
        return viewport.isVisible() and viewport.rect().contains(viewport.mapFromGlobal(QCursor.pos()))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            if not isinstance(event, QKeyEvent) or event.key() != Qt.Key.Key_Space:
                return False
            if not isinstance(watched, QWidget) or watched.window() is not self._window:
                return False
            return self._space(event, pressed=kind == QEvent.Type.KeyPress)
        if kind == QEvent.Type.WindowDeactivate and watched is self._window and self._canvas.space_held():
            self._canvas.set_space_held(False)  # the release will go to another window
        return False

    def _space(self, event: QKeyEvent, pressed: bool) -> bool:
        held = self._canvas.space_held()
        if event.isAutoRepeat():
            return held  # swallow the repeats of a held Space
        if pressed:
            if held or _types_text(QApplication.focusWidget()) or not self._pointer_over_canvas():
                return held
            self._canvas.set_space_held(True)
            return True
        if held:
            self._canvas.set_space_held(False)
            return True
        return False

"""Space held pans the canvas wherever the keyboard focus is in the window.

The canvas only hears keys while it has the focus, so after a click in the file list Space used to reach the list and
Space+drag painted. This filter watches the window's own QWindow, which receives every key before the focus widget
does (an application-wide filter would run Python for every event of every widget), and takes Space while the
pointer is over the canvas, except in a text field, where Space types a space.
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
    """Routes Space press/release in ``window`` to the canvas while the pointer is over it."""

    def __init__(self, window: QWidget, canvas: ImageCanvas) -> None:
        super().__init__(window)
        self._window, self._canvas = window, canvas
        self._handle = None
        window.installEventFilter(self)  # to find its QWindow once it exists, and to see it lose the focus
        self._watch_handle()

    def _watch_handle(self) -> None:
        handle = self._window.windowHandle()
        if handle is not None and handle is not self._handle:
            handle.installEventFilter(self)
            self._handle = handle

    def _pointer_over_canvas(self) -> bool:
        viewport = self._canvas.viewport()
        return viewport.isVisible() and viewport.rect().contains(viewport.mapFromGlobal(QCursor.pos()))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        kind = event.type()
        if watched is self._window:
            if kind in (QEvent.Type.Show, QEvent.Type.WinIdChange):
                self._watch_handle()
            elif kind == QEvent.Type.WindowDeactivate and self._canvas.space_held():
                self._canvas.set_space_held(False)  # the release will go to another window
            return False
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and isinstance(event, QKeyEvent) \
                and event.key() == Qt.Key.Key_Space:
            return self._space(event, pressed=kind == QEvent.Type.KeyPress)
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

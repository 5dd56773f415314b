"""Light, dark or system colours for the whole app (Fusion style, so both look the same on every OS)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


def _dark_palette() -> QPalette:
    palette = QPalette()
    base, window, text, mid = QColor(30, 31, 34), QColor(43, 45, 48), QColor(223, 225, 229), QColor(90, 93, 99)
    for group in (QPalette.Active, QPalette.Inactive):
        palette.setColor(group, QPalette.Window, window)
        palette.setColor(group, QPalette.WindowText, text)
        palette.setColor(group, QPalette.Base, base)
        palette.setColor(group, QPalette.AlternateBase, window)
        palette.setColor(group, QPalette.Text, text)
        palette.setColor(group, QPalette.Button, window)
        palette.setColor(group, QPalette.ButtonText, text)
        palette.setColor(group, QPalette.ToolTipBase, base)
        palette.setColor(group, QPalette.ToolTipText, text)
        palette.setColor(group, QPalette.PlaceholderText, mid)
        palette.setColor(group, QPalette.Highlight, QColor(53, 116, 240))
        palette.setColor(group, QPalette.HighlightedText, QColor(255, 255, 255))
        palette.setColor(group, QPalette.Link, QColor(100, 160, 255))
        palette.setColor(group, QPalette.Mid, mid)
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        palette.setColor(QPalette.Disabled, role, mid)
    return palette


def apply_theme(app: QApplication, theme: str) -> None:
    """``theme`` is "system", "light" or "dark"; takes effect at once for every open window."""
    app.setStyle("Fusion")
    hints = app.styleHints()
    scheme = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(theme, Qt.ColorScheme.Unknown)
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(scheme)
    dark = theme == "dark" or (theme == "system" and hints.colorScheme() == Qt.ColorScheme.Dark)
    app.setPalette(_dark_palette() if dark else app.style().standardPalette())

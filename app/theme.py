"""Light, dark or system colours for the whole app (Fusion style, so both look the same on every OS).

The dark palette sets every colour group, the disabled one included: Qt's defaults for a group left unset are the
light theme's, which made disabled buttons light grey, brighter than the enabled ones. Fusion draws check boxes
with an outline one shade darker than the window, invisible on a dark view; :class:`ThemeStyle` gives them an
outline that stands out from the background in either theme.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleOption, QWidget

Group, Role = QPalette.ColorGroup, QPalette.ColorRole

DARK_COLORS = {  # role: (active and inactive, disabled)
    Role.Window: ((43, 45, 48), (43, 45, 48)),
    Role.WindowText: ((223, 225, 229), (118, 121, 128)),
    Role.Base: ((30, 31, 34), (36, 37, 40)),
    Role.AlternateBase: ((43, 45, 48), (40, 42, 45)),
    Role.Text: ((223, 225, 229), (118, 121, 128)),
    Role.Button: ((56, 59, 64), (40, 42, 45)),
    Role.ButtonText: ((223, 225, 229), (110, 113, 120)),
    Role.BrightText: ((255, 255, 255), (160, 160, 160)),
    Role.ToolTipBase: ((30, 31, 34), (30, 31, 34)),
    Role.ToolTipText: ((223, 225, 229), (118, 121, 128)),
    Role.PlaceholderText: ((128, 131, 138), (90, 93, 99)),
    Role.Highlight: ((53, 116, 240), (64, 67, 72)),
    Role.HighlightedText: ((255, 255, 255), (150, 153, 160)),
    Role.Link: ((100, 160, 255), (90, 110, 140)),
    Role.LinkVisited: ((160, 130, 255), (110, 100, 140)),
    Role.Light: ((78, 81, 87), (60, 62, 66)),
    Role.Midlight: ((64, 67, 72), (52, 54, 58)),
    Role.Mid: ((90, 93, 99), (70, 72, 77)),
    Role.Dark: ((25, 26, 28), (25, 26, 28)),
    Role.Shadow: ((12, 12, 13), (12, 12, 13)),
}
#: Fusion outlines a check box in the window colour darkened by 40 %; drawn from this colour instead, the outline
#: is about twice as far from a dark view's background as the check mark is from its text.
CHECK_OUTLINE_SOURCE = QColor(168, 172, 180)


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, (normal, disabled) in DARK_COLORS.items():
        for group in (Group.Active, Group.Inactive):
            palette.setColor(group, role, QColor(*normal))
        palette.setColor(Group.Disabled, role, QColor(*disabled))
    return palette


def is_dark(palette: QPalette) -> bool:
    return palette.color(Group.Active, Role.Window).lightness() < 128


class ThemeStyle(QProxyStyle):
    """Fusion with check boxes (item views included) whose outline shows in the dark theme."""

    CHECKS = (QStyle.PrimitiveElement.PE_IndicatorCheckBox, QStyle.PrimitiveElement.PE_IndicatorItemViewItemCheck,
              QStyle.PrimitiveElement.PE_IndicatorRadioButton)

    def __init__(self) -> None:
        super().__init__("Fusion")

    def drawPrimitive(self, element: QStyle.PrimitiveElement, option: QStyleOption, painter: QPainter,  # noqa: N802
                      widget: QWidget | None = None) -> None:
        if element in self.CHECKS and is_dark(option.palette):
            option = type(option)(option)  # a copy: the caller's option stays as it was
            palette = QPalette(option.palette)
            for group in (Group.Active, Group.Inactive, Group.Disabled):
                source = QColor(CHECK_OUTLINE_SOURCE)
                palette.setColor(group, Role.Window, source if group != Group.Disabled else source.darker(150))
            option.palette = palette
        super().drawPrimitive(element, option, painter, widget)


def apply_theme(app: QApplication, theme: str) -> None:
    """``theme`` is "system", "light" or "dark"; takes effect at once for every open window."""
    if not isinstance(app.style(), ThemeStyle):
        app.setStyle(ThemeStyle())
    hints = app.styleHints()
    scheme = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(theme, Qt.ColorScheme.Unknown)
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(scheme)
    dark = theme == "dark" or (theme == "system" and hints.colorScheme() == Qt.ColorScheme.Dark)
    app.setPalette(dark_palette() if dark else app.style().standardPalette())

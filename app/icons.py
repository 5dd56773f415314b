"""Icons for every widget, from qtawesome's bundled fonts (Material Design Icons), so nothing needs network or files.

Names here are the app's own ("brush", "export"); the mapping to font glyphs lives in one place so a theme change or
a glyph rename touches one line.

Icons without a colour of their own take the application palette's colours when they are drawn, not when they are
made: a theme switch at run time recolours every icon at once, and a disabled action's icon uses the palette's
disabled text colour, so it looks disabled in both themes.
"""
from __future__ import annotations

import functools
import logging

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QIconEngine, QPainter, QPalette, QPixmap

logger = logging.getLogger(__name__)

GLYPHS = {
    "open_folder": "mdi6.folder-open-outline",
    "subfolders": "mdi6.file-tree-outline",
    "checkpoint": "mdi6.brain",
    "predict": "mdi6.play-outline",
    "predict_all": "mdi6.fast-forward-outline",
    "cancel": "mdi6.stop-circle-outline",
    "export": "mdi6.export",
    "import": "mdi6.import",
    "train": "mdi6.school-outline",
    "pan": "mdi6.hand-back-right-outline",
    "brush": "mdi6.brush",
    "eraser": "mdi6.eraser",
    "fill": "mdi6.format-color-fill",
    "undo": "mdi6.undo",
    "redo": "mdi6.redo",
    "zoom_fit": "mdi6.fit-to-screen-outline",
    "zoom_actual": "mdi6.numeric-1-box-outline",
    "zoom_in": "mdi6.magnify-plus-outline",
    "zoom_out": "mdi6.magnify-minus-outline",
    "reviewed": "mdi6.check-circle-outline",
    "previous": "mdi6.chevron-left",
    "next": "mdi6.chevron-right",
    "visible": "mdi6.eye-outline",
    "hidden": "mdi6.eye-off-outline",
    "merge": "mdi6.call-merge",
    "unmerge": "mdi6.call-split",
    "ignore": "mdi6.cancel",
    "gallery": "mdi6.view-grid-outline",
    "add": "mdi6.plus",
    "remove": "mdi6.minus",
    "outline": "mdi6.vector-square",
    "heatmap": "mdi6.thermometer",
    "help": "mdi6.help-circle-outline",
    "info": "mdi6.information-outline",
    "settings": "mdi6.cog-outline",
    "error": "mdi6.alert-circle-outline",
    "warning": "mdi6.alert-outline",
    "file_changed": "mdi6.file-alert-outline",
    "file_missing": "mdi6.file-remove-outline",
    "read_only": "mdi6.lock-outline",
    "new": "mdi6.circle-outline",
    "predicted": "mdi6.robot-outline",
    "edited": "mdi6.pencil-outline",
    "stop": "mdi6.stop",
    "load": "mdi6.download-outline",
    "refine": "mdi6.auto-fix",
    "models": "mdi6.history",
}


def mode_colors(color: str | None = None) -> tuple[str, str, str]:
    """(normal, disabled, selected) colours of an icon now: ``color`` or the palette's text colour when enabled, the
    palette's disabled text colour when disabled, the highlighted-text colour when selected (unless ``color``)."""
    palette = QGuiApplication.palette()
    normal = color or palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText).name()
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText).name()
    selected = color or palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.HighlightedText).name()
    return normal, disabled, selected


@functools.lru_cache(maxsize=512)
def _glyph_icon(glyph: str, normal: str, disabled: str, selected: str) -> QIcon:
    """qtawesome's icon of ``glyph`` in fixed colours (one per palette the app has shown)."""
    import qtawesome

    return qtawesome.icon(glyph, color=normal, color_disabled=disabled, color_active=normal, color_selected=selected)


class _PaletteIconEngine(QIconEngine):
    """Draws a font glyph in the colours of the palette at paint time (see the module's docstring)."""

    def __init__(self, glyph: str, color: str | None) -> None:
        super().__init__()
        self._glyph, self._color = glyph, color

    def _icon(self) -> QIcon:
        return _glyph_icon(self._glyph, *mode_colors(self._color))

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        self._icon().paint(painter, rect, Qt.AlignmentFlag.AlignCenter, mode, state)

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        pixmap = QPixmap(size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        self.paint(painter, QRect(QPoint(0, 0), size), mode, state)
        painter.end()
        return pixmap

    def clone(self) -> QIconEngine:
        return _PaletteIconEngine(self._glyph, self._color)


@functools.lru_cache(maxsize=None)
def icon(name: str, color: str | None = None) -> QIcon:
    """The app icon called ``name`` (see GLYPHS), in ``color`` or the palette's text colour; disabled, it takes the
    palette's disabled colour. An empty icon, logged, if the font cannot draw it."""
    glyph = GLYPHS[name]
    try:
        _glyph_icon(glyph, *mode_colors(color))  # fails here, once, for a glyph the font lacks
    except Exception as exc:  # a missing glyph must not take a window down
        logger.warning("Icon %s (%s) unavailable: %s", name, glyph, exc)
        return QIcon()
    return QIcon(_PaletteIconEngine(glyph, color))

"""Icons for every widget, from qtawesome's bundled fonts (Material Design Icons), so nothing needs network or files.

Names here are the app's own ("brush", "export"); the mapping to font glyphs lives in one place so a theme change or
a glyph rename touches one line.
"""
from __future__ import annotations

import functools
import logging

from PySide6.QtGui import QIcon

logger = logging.getLogger(__name__)

GLYPHS = {
    "open_folder": "mdi6.folder-open-outline",
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
    "outline": "mdi6.vector-square",
    "heatmap": "mdi6.thermometer",
    "help": "mdi6.help-circle-outline",
    "info": "mdi6.information-outline",
    "settings": "mdi6.cog-outline",
    "error": "mdi6.alert-circle-outline",
    "new": "mdi6.circle-outline",
    "predicted": "mdi6.robot-outline",
    "edited": "mdi6.pencil-outline",
    "stop": "mdi6.stop",
    "load": "mdi6.download-outline",
}


@functools.lru_cache(maxsize=None)
def icon(name: str, color: str | None = None) -> QIcon:
    """The app icon called ``name`` (see GLYPHS); an empty icon, logged, if the font cannot draw it."""
    import qtawesome

    glyph = GLYPHS[name]
    try:
        return qtawesome.icon(glyph, color=color) if color else qtawesome.icon(glyph)
    except Exception as exc:  # a missing glyph must not take a window down
        logger.warning("Icon %s (%s) unavailable: %s", name, glyph, exc)
        return QIcon()

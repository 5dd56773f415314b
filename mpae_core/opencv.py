"""``import cv2`` for the few places that must compute exactly what another tool computes with OpenCV (the
reference's benchmark pixels, Ultralytics' polygon fill on import)."""
from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=None)
def import_opencv():
    """``cv2`` without its side effect on Qt: OpenCV's GUI build (which e.g. Ultralytics installs over the headless
    one) points ``QT_QPA_PLATFORM_PLUGIN_PATH`` at its bundled Qt5 plugins when imported, and a PySide6 app started
    later from this process, or any child it spawns, would then load the wrong plugins and fail."""
    names = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")
    saved = {name: os.environ.get(name) for name in names}
    import cv2

    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return cv2

"""Refuse to start on a Qt binding that corrupts Python's reference counts.

PySide6 6.12.0 under Python 3.11 drops a reference to ``None`` on every call of a void method (``setObjectName``,
every ``QPainter`` call, ``data()`` returning None, ...); after a few thousand calls the interpreter aborts with
"none_dealloc". An annotation session makes millions, so the app would die mid-work. Python 3.12+ makes ``None``
immortal, where the bug is harmless and this check passes. pyproject.toml already excludes 6.12; this catches an
environment that installed it anyway, with a message instead of a crash.
"""
from __future__ import annotations

import sys

PROBE_CALLS = 200


def binding_problem() -> str | None:
    """A one-sentence description of the problem with the installed PySide6, or None when it is sound."""
    import PySide6
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")
    lost = before - sys.getrefcount(None)
    if lost >= PROBE_CALLS // 2:
        return (f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} loses a reference to None on every "
                "Qt call and would crash the app; install a sound version with "
                "`pip install 'pyside6>=6.6,<6.12'` (or use Python 3.12+).")
    return None

"""The Qt binding under the tests must keep Python's reference counts intact (see app/qt_check.py)."""
from __future__ import annotations

import sys

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, Qt


def test_installed_pyside6_is_sound():
    from app.qt_check import binding_problem

    assert binding_problem() is None


def test_python_overrides_returning_none_keep_none_alive():
    class Model(QAbstractListModel):
        def rowCount(self, parent=QModelIndex()):  # noqa: N802
            return 3

        def data(self, index, role=Qt.DisplayRole):
            return None

    model = Model()
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(500):
        model.index(1, 0).data(Qt.ToolTipRole)
        probe.setObjectName("x")
    assert before - sys.getrefcount(None) < 50


def test_the_check_reports_a_leaking_binding(monkeypatch):
    from app import qt_check

    calls = {"n": 0}
    real = sys.getrefcount

    def leaking_refcount(obj):  # simulate a binding that lost PROBE_CALLS references meanwhile
        calls["n"] += 1
        return real(obj) - (qt_check.PROBE_CALLS if calls["n"] > 1 else 0)

    monkeypatch.setattr(qt_check.sys, "getrefcount", leaking_refcount)
    message = qt_check.binding_problem()
    assert message is not None and "pyside6>=6.6,<6.12" in message

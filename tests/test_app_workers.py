"""start_worker: a worker thread's objects are let go of on the GUI thread, never while the worker thread winds down
(PySide wrappers destroyed there raced the GUI thread and crashed the refine tests now and then)."""
from __future__ import annotations

import weakref

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, QThread, Signal, Slot  # noqa: E402


class _Worker(QObject):
    done = Signal()

    def __init__(self, seen: dict) -> None:
        super().__init__()
        self.seen = seen

    @Slot()
    def run(self) -> None:
        self.seen["ran_on"] = QThread.currentThread()
        self.done.emit()


def test_a_finished_workers_objects_are_released_on_the_gui_thread(qtbot):
    from app.workers import _WorkerReaper, start_worker

    seen: dict = {}
    deleted_on = []
    worker = _Worker(seen)
    released = weakref.ref(worker, lambda _: deleted_on.append(QThread.currentThread()))
    finished = []
    thread = start_worker(worker, on_finished=lambda: finished.append(True))
    del worker  # the reaper holds it until its thread has finished
    qtbot.waitUntil(lambda: bool(finished) and not _WorkerReaper._alive, timeout=5000)
    qtbot.waitUntil(lambda: bool(deleted_on), timeout=5000)
    gui_thread = QThread.currentThread()
    assert seen["ran_on"] is not gui_thread and deleted_on == [gui_thread]
    assert thread is not None and released() is None

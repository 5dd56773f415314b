"""Run functions on a thread pool and hand their results back to the GUI thread, dropping the ones nobody wants.

Showing an image starts several jobs (preview, full resolution, overlay) that the person may make obsolete a moment
later by stepping to the next image. Jobs belong to a named *group*; :meth:`BackgroundRunner.cancel` makes every job
of a group stale: a queued one never runs, a running one stops at its next :class:`CancelCheck` call, and a result
that arrives anyway is dropped. Callbacks run on the GUI thread, in the order results arrive.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QRunnable, Qt, QThreadPool, Signal

logger = logging.getLogger(__name__)
class Cancelled(Exception):
    """Raised inside a job by its CancelCheck when its group was cancelled."""


class CancelCheck:
    """Called by a job between steps: raises Cancelled once the job's result can no longer be used."""

    def __init__(self, runner: "BackgroundRunner", group: str, generation: int) -> None:
        self._runner, self._group, self._generation = runner, group, generation

    @property
    def cancelled(self) -> bool:
        return self._runner._generations.get(self._group, 0) != self._generation

    def __call__(self) -> None:
        if self.cancelled:
            raise Cancelled()


def wait_until(done: Callable[[], bool], timeout_ms: int) -> bool:
    """Process events until ``done()`` (tests, benchmarks, screenshots); False on timeout."""
    deadline = time.monotonic() + timeout_ms / 1000
    app = QCoreApplication.instance()
    while not done():
        if time.monotonic() > deadline:
            return False
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.001)
    return True


@dataclass
class _Pending:
    group: str
    generation: int
    on_done: Callable[[Any], None]
    on_failed: Callable[[Exception], None] | None


class _Signals(QObject):
    finished = Signal(int, object)  # job id, result
    failed = Signal(int, object)  # job id, exception
    dropped = Signal(int)


class _Job(QRunnable):
    def __init__(self, job_id: int, work: Callable[[CancelCheck], Any], check: CancelCheck, signals: _Signals) -> None:
        super().__init__()
        self.job_id, self.work, self.check, self.signals = job_id, work, check, signals

    def run(self) -> None:
        try:
            self.check()
            result = self.work(self.check)
        except Cancelled:
            self.signals.dropped.emit(self.job_id)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI thread, which decides what the person sees
            logger.debug("Background job %d failed: %s", self.job_id, exc, exc_info=True)
            self.signals.failed.emit(self.job_id, exc)
        else:
            self.signals.finished.emit(self.job_id, result)


class BackgroundRunner(QObject):
    """A private thread pool whose results come back through queued signals to callbacks on the GUI thread."""

    idle = Signal()  # the last pending job finished, failed or was dropped

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._signals = _Signals(self)
        self._signals.finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._signals.failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)
        self._signals.dropped.connect(self._on_dropped, Qt.ConnectionType.QueuedConnection)
        self._generations: dict[str, int] = {}
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)

    def submit(self, group: str, work: Callable[[CancelCheck], Any], on_done: Callable[[Any], None],
               on_failed: Callable[[Exception], None] | None = None, *, priority: int = 0) -> int:
        """Run ``work(check)`` on the pool; ``on_done(result)`` or ``on_failed(exc)`` follow on the GUI thread unless
        the group is cancelled first. Higher ``priority`` jobs start first."""
        job_id = next(self._ids)
        generation = self._generations.setdefault(group, 0)
        self._pending[job_id] = _Pending(group, generation, on_done, on_failed)
        self._pool.start(_Job(job_id, work, CancelCheck(self, group, generation), self._signals), priority)
        return job_id

    def cancel(self, group: str) -> None:
        """Make every job of ``group`` submitted so far stale (their results will never be delivered)."""
        self._generations[group] = self._generations.get(group, 0) + 1

    def busy(self, group: str | None = None) -> bool:
        """Whether a job (of ``group``) still has a result to deliver."""
        return any(p.generation == self._generations.get(p.group, 0) and (group is None or p.group == group)
                   for p in self._pending.values())

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Process events until no job has a result to deliver (tests, benchmarks); False on timeout."""
        return wait_until(lambda: not self.busy(), timeout_ms)

    def shutdown(self) -> None:
        """Drop everything and wait for the running jobs to return (at their next cancel check)."""
        for group in list(self._generations):
            self.cancel(group)
        self._pool.clear()
        self._pool.waitForDone()
        self._pending.clear()

    def _take(self, job_id: int) -> _Pending | None:
        pending = self._pending.pop(job_id, None)
        if pending is None or pending.generation != self._generations.get(pending.group, 0):
            return None
        return pending

    def _after(self) -> None:
        if not self.busy():
            self.idle.emit()

    def _on_finished(self, job_id: int, result: Any) -> None:
        pending = self._take(job_id)
        if pending is not None:
            pending.on_done(result)
        self._after()

    def _on_failed(self, job_id: int, exc: Exception) -> None:
        pending = self._take(job_id)
        if pending is not None:
            if pending.on_failed is not None:
                pending.on_failed(exc)
            else:
                logger.error("Background job failed: %s", exc)
        self._after()

    def _on_dropped(self, job_id: int) -> None:
        self._pending.pop(job_id, None)
        self._after()

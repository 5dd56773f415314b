"""Saving the project on a clock, on a background thread, so a crash loses at most the last second or two.

The old autosave restarted a 1.5 s timer on every change, so during "Predict all" (a change every few
milliseconds) the index was never written. Here the first unsaved change starts the clock and later changes do not
restart it: while changes keep coming, the project is written every ``interval_ms``. A finished brush stroke asks for
a save within ``soon_ms``.

Writing happens off the GUI thread: ``project.save_jobs()`` copies what is unsaved on the GUI thread (cheap), and a
single saver thread runs the jobs in order. A failed job is reported and the project marked unsaved, so the next
save writes everything again. ``flush`` waits for the saver and saves the rest on the calling thread (quitting,
closing a project, before an export).
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from mpae_core.annotation import AnnotationProject
from mpae_core.errors import MPAEError

logger = logging.getLogger(__name__)

SAVE_INTERVAL_MS = 1500  # at most this long between a change and its save, however many changes follow
SAVE_SOON_MS = 500  # after a finished stroke
RETRY_MS = 5000  # after a failed save


class ProjectSaver(QObject):
    """Saves whatever project ``project_getter`` returns; ``failed(message)`` on the GUI thread when a write fails."""

    failed = Signal(str)
    saved = Signal()
    _job_failed = Signal(object, str)  # project, message (from the saver thread, delivered on the GUI thread)
    _job_done = Signal()

    def __init__(self, project_getter: Callable[[], AnnotationProject | None], parent: QObject | None = None, *,
                 interval_ms: int = SAVE_INTERVAL_MS, soon_ms: int = SAVE_SOON_MS) -> None:
        super().__init__(parent)
        self._project = project_getter
        self.interval_ms = interval_ms
        self.soon_ms = soon_ms
        self._timer = QTimer(self, singleShot=True, timeout=self.save_in_background)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpae-save")
        self._last: Future | None = None
        self._job_failed.connect(self._on_job_failed)
        self._job_done.connect(self.saved)

    @property
    def pending(self) -> bool:
        """A save is scheduled and has not run yet."""
        return self._timer.isActive()

    def schedule(self, soon: bool = False) -> None:
        """A change was made: save within ``interval_ms`` (``soon``: within ``soon_ms``). A clock already running
        is never pushed back, only brought forward."""
        delay = self.soon_ms if soon else self.interval_ms
        if self._timer.isActive() and self._timer.remainingTime() <= delay:
            return
        self._timer.start(delay)

    def save_in_background(self) -> None:
        """Copy what is unsaved now and write it on the saver thread."""
        self._timer.stop()
        project = self._project()
        if project is None or project.read_only is not None:
            return
        try:
            jobs = project.save_jobs()
        except (MPAEError, OSError) as exc:  # save_jobs itself writes nothing; this is a refusal
            self.failed.emit(str(exc))
            return
        if jobs:
            self._last = self._executor.submit(self._run, project, jobs)

    def _run(self, project: AnnotationProject, jobs: list) -> None:
        """Saver thread: the jobs in order; the first failure stops the rest (the index must not get ahead)."""
        try:
            for job in jobs:
                job()
        except Exception as exc:  # noqa: BLE001 - reported to the person, and everything is written again later
            logger.error("Saving %s failed: %s", project.project_dir, exc)
            self._job_failed.emit(project, _describe(exc, project))
        else:
            self._job_done.emit()

    def _on_job_failed(self, project: AnnotationProject, message: str) -> None:
        project.mark_unsaved()
        self.failed.emit(message)
        if project is self._project():
            self._timer.start(RETRY_MS)

    def wait(self) -> None:
        """Block until the saver thread has written everything handed to it."""
        last, self._last = self._last, None
        if last is not None:
            try:
                last.result()
            except Exception:  # noqa: BLE001 - _run reports its own failures
                pass

    def flush(self, project: AnnotationProject | None = None) -> None:
        """Wait for the saver, then save ``project`` (default: the current one) on this thread; raises on failure.
        Queued failure reports are delivered first, so a failed background write is written again here."""
        self._timer.stop()
        self.wait()
        QCoreApplication.sendPostedEvents(self)  # deliver _job_failed (mark_unsaved) before saving
        project = project if project is not None else self._project()
        if project is not None and project.read_only is None:
            project.save()

    def shutdown(self) -> None:
        """Stop the clock and the saver thread (after ``flush``)."""
        self._timer.stop()
        self._executor.shutdown(wait=True)


def _describe(exc: BaseException, project: AnnotationProject) -> str:
    if isinstance(exc, OSError):
        where = exc.filename or project.project_dir
        return (f"Could not save the project to '{where}': {exc.strerror or exc}; free some space or check the "
                "folder's permissions (your work is kept in memory and saved again in a few seconds).")
    return f"Could not save the project '{project.project_dir}': {exc}."

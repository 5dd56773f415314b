"""Quitting cleanly on SIGTERM and SIGINT (a logout, ``kill``, Ctrl+C in the terminal that started the app).

Python runs its signal handlers only between bytecodes, and while Qt's event loop waits in C++ no bytecode runs, so
a plain ``signal.signal`` handler would wait for the next mouse move. ``signal.set_wakeup_fd`` makes the C-level
handler write the signal's number into a socket; a QSocketNotifier on the other end wakes the event loop at once,
and the callback runs on the GUI thread like any other event (where it may close windows and save).
"""
from __future__ import annotations

import logging
import signal
import socket
from typing import Callable

from PySide6.QtCore import QObject, QSocketNotifier

logger = logging.getLogger(__name__)

QUIT_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)) if s is not None)


class QuitSignals(QObject):
    """Calls ``on_signal(signum)`` on the GUI thread for each SIGTERM/SIGINT; ``uninstall`` restores the old state."""

    def __init__(self, on_signal: Callable[[int], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._on_signal = on_signal
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, _ignore_in_python) for s in QUIT_SIGNALS}
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)

    def _drain(self, *_args: object) -> None:
        try:
            data = self._reader.recv(64)
        except OSError:  # spurious wake-up
            return
        for signum in data:
            if signum in QUIT_SIGNALS:
                logger.warning("Received %s: saving and quitting", signal.Signals(signum).name)
                self._on_signal(signum)

    def uninstall(self) -> None:
        self._notifier.setEnabled(False)
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._reader.close()
        self._writer.close()


def _ignore_in_python(signum: int, frame: object) -> None:  # noqa: ARG001
    """The real work happens in QuitSignals._drain; this only replaces the default action (terminate)."""

"""One ``python -m training.run`` child process and the run folder it writes, followed without blocking the GUI.

The Train and Refine dialogs both start a command of ``training.run`` in a QProcess, show its output lines, plot the
records it appends to ``RUN/metrics.jsonl`` and stop it with a signal; this is that shared part. Nothing here waits
on the process: output arrives through QProcess's signals and the run folder is polled on a timer, so the window
keeps painting while a run goes on.

Stopping: ``stop`` sends SIGTERM, which ``training.run`` turns into "finish this step and save" (a kill follows
only after ``stop_timeout_s``). ``cancel`` sends SIGTERM and SIGINT together: two different signals are never merged
into one by the kernel or by Python, so the child sees a second signal, which drops the run without saving. Windows
cannot signal a console process, so there both end in a kill.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from .training_output import LineSplitter, format_command, read_new_records

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where ``training`` is importable from
#: Devices offered by the run dialogs (an editable list: any torch device string works).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps")
POLL_MS = 500
STDERR_TAIL = 6


def training_command(python: str) -> list[str]:
    """``python -m training.run``: the start of every command the app runs (the app never imports ``training``)."""
    return [python, "-m", "training.run"]


class RunProcess(QObject):
    """Starts a command, reports its output lines and new metrics records, stops or cancels it.

    Signals: ``lines(list[str], from_stderr)`` complete output lines; ``transient(str)`` a progress-bar line that
    replaces itself (tqdm); ``records(list[dict])`` metrics records that arrived; ``ended(code, crashed)`` when the
    process is over (code -1 when it crashed, was killed or never started; ``start_error`` then says why).
    """

    lines = Signal(list, bool)
    transient = Signal(str)
    records = Signal(list)
    ended = Signal(int, bool)

    def __init__(self, parent: QObject | None = None, *, working_dir: str | os.PathLike,
                 extra_env: dict[str, str] | None = None, stop_timeout_s: float = 15.0, poll_ms: int = POLL_MS) -> None:
        super().__init__(parent)
        self._working_dir = Path(working_dir)
        self._extra_env = dict(extra_env or {})
        self._stop_timeout_ms = int(stop_timeout_s * 1000)
        self._process: QProcess | None = None
        self.run_dir: Path | None = None
        self.config: dict[str, Any] | None = None  # the run's config.json once it is readable
        self.stderr_tail: list[str] = []  # the last non-empty error-output lines (the failure's reason)
        self.start_error: str | None = None
        self.stop_requested = self.cancel_requested = self.killed = False
        self.started_at = 0.0
        self._metrics_offset = 0
        self._stdout, self._stderr = LineSplitter(), LineSplitter()
        self._poll_timer = QTimer(self, interval=poll_ms, timeout=self.poll)
        self._kill_timer = QTimer(self, singleShot=True, timeout=self._kill_if_alive)

    @property
    def stop_timeout_s(self) -> float:
        return self._stop_timeout_ms / 1000

    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    # ----- start ----------------------------------------------------------------------------------------------------
    def start(self, command: Sequence[str], run_dir: str | os.PathLike) -> bool:
        """Start ``command``, which writes ``run_dir``; False (``ended(-1, True)`` has then been sent) if the program
        could not be started."""
        if self.is_running():
            return False
        self.run_dir = Path(run_dir)
        self.config, self.stderr_tail, self.start_error = None, [], None
        self.stop_requested = self.cancel_requested = self.killed = False
        self._metrics_offset = 0
        self._stdout, self._stderr = LineSplitter(), LineSplitter()
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("PYTHONIOENCODING", "utf-8")
        for key, value in self._extra_env.items():
            env.insert(key, str(value))
        process = QProcess(self)
        process.setProgram(command[0])
        process.setArguments(list(command[1:]))
        process.setWorkingDirectory(str(self._working_dir))
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(lambda: self._take(process, False))
        process.readyReadStandardError.connect(lambda: self._take(process, True))
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self._process = process
        logger.info("Starting %s", format_command(command))
        self.started_at = time.monotonic()
        process.start()
        if process.waitForStarted(5000):
            self._poll_timer.start()
            return True
        return False  # _on_error reported why

    # ----- output and metrics ---------------------------------------------------------------------------------------
    def _take(self, process: QProcess, from_stderr: bool) -> None:
        if from_stderr:
            data, splitter = bytes(process.readAllStandardError()), self._stderr
        else:
            data, splitter = bytes(process.readAllStandardOutput()), self._stdout
        self._emit_lines(splitter.feed(data), from_stderr)
        if splitter.transient:
            self.transient.emit(splitter.transient)

    def _emit_lines(self, lines: list[str], from_stderr: bool) -> None:
        if not lines:
            return
        if from_stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip() for line in lines if line.strip()])[-STDERR_TAIL:]
        self.lines.emit(lines, from_stderr)

    def poll(self) -> int:
        """Read the run folder's config (once) and its new metrics records; returns how many records arrived."""
        if self.run_dir is None:
            return 0
        if self.config is None:
            try:
                self.config = json.loads((self.run_dir / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.config = None  # not written yet, or mid-write: try again next poll
        records, self._metrics_offset = read_new_records(self.run_dir / "metrics.jsonl", self._metrics_offset)
        if records:
            self.records.emit(records)
        return len(records)

    # ----- stop -----------------------------------------------------------------------------------------------------
    def stop(self) -> bool:
        """Ask the command to finish the current step and save (SIGTERM); a kill follows after the timeout."""
        if not self.is_running() or self.stop_requested or self.cancel_requested:
            return False
        self.stop_requested = True
        assert self._process is not None
        self._process.terminate()
        self._kill_timer.start(self._stop_timeout_ms)
        return True

    def cancel(self) -> bool:
        """Drop the run without saving: a second signal (after Stop) or two at once; a kill after the timeout."""
        if not self.is_running() or self.cancel_requested:
            return False
        self.cancel_requested = True
        assert self._process is not None
        pid = self._process.processId()
        if os.name != "posix" or pid <= 0:
            self.killed = True
            self._process.kill()
            return True
        if not self.stop_requested:
            self._process.terminate()
        os.kill(pid, signal.SIGINT)  # another signal number than SIGTERM: it cannot merge with the first
        self._kill_timer.start(self._stop_timeout_ms)
        return True

    def _kill_if_alive(self) -> None:
        if self.is_running():
            assert self._process is not None
            logger.warning("The run did not stop within %.0f s; killing it", self.stop_timeout_s)
            self.killed = True
            self._process.kill()

    # ----- end ------------------------------------------------------------------------------------------------------
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.ProcessError.FailedToStart:
            logger.debug("Run process error: %s", error)
            return
        process = self._process
        program = process.program() if process is not None else "?"
        detail = process.errorString() if process is not None else ""
        self.start_error = f"Could not start '{program}' ({detail}); check that this Python interpreter exists."
        self._end(-1, True)

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._emit_lines(self._stdout.flush(), False)
        self._emit_lines(self._stderr.flush(), True)
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._end(-1 if crashed else exit_code, crashed)

    def _end(self, code: int, crashed: bool) -> None:
        self._poll_timer.stop()
        self._kill_timer.stop()
        self.poll()
        logger.info("Run ended with code %s", code)
        self.ended.emit(code, crashed)

"""What the Train and Refine dialogs share: a ``training.run`` command followed in a :class:`RunProcess`, its
command line to copy, an error line, a loss plot over a log, a progress bar and a status line, and closing while
the run goes on only after the person agreed to end it.

Each dialog builds its own form and buttons, says which command it runs (:meth:`RunDialog.command`) and what its
end means (``_on_ended``); the run's output lines go to the log and its ``train`` records to the plot and the
progress bar from here.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDialog, QLabel, QMessageBox, QProgressBar, QSplitter, QWidget

from .dialogs import log_view
from .run_process import DEVICES, PROJECT_ROOT, RunProcess, training_command
from .training_output import format_command, loss_terms, progress_summary

ERROR_STYLE = "color: #d83b3b;"


class RunDialog(QDialog):
    """Base of the run dialogs. ``command_prefix`` replaces ``[python, "-m", "training.run"]`` (tests run a
    stand-in script with it); ``extra_env`` is added to the child's environment."""

    #: The question asked before closing while the run goes on (title, text).
    CLOSE_QUESTION = ("The run is going on", "Close anyway?")

    def __init__(self, parent: QWidget | None, *, python: str = sys.executable,
                 command_prefix: Sequence[str] | None = None, extra_env: dict[str, str] | None = None,
                 working_dir: str | os.PathLike | None = None, stop_timeout_s: float = 15.0) -> None:
        super().__init__(parent)
        self._command_prefix = list(command_prefix) if command_prefix else training_command(python)
        self._extra_env = dict(extra_env or {})
        self._working_dir = Path(working_dir) if working_dir is not None else PROJECT_ROOT
        self._stop_timeout_s = stop_timeout_s
        self._run: RunProcess | None = None
        self._exit_code: int | None = None
        self._last_record: dict[str, Any] | None = None
        self._close_when_ended = False

    # ----- shared widgets -------------------------------------------------------------------------------------------
    def _build_shared(self, plots: QWidget, status: str, log_stretch: int) -> QSplitter:
        """The error line, the log under ``plots``, the progress bar and the status line (as attributes); returns
        the plots-over-log splitter to place."""
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.log_view = log_view()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(plots)
        splitter.addWidget(self.log_view)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, log_stretch)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.status_label = QLabel(status)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return splitter

    @staticmethod
    def _device_combo(device: str) -> QComboBox:
        combo = QComboBox()
        combo.setEditable(True)
        combo.addItems(DEVICES)
        combo.setCurrentText(device or "auto")
        combo.setToolTip("auto picks CUDA, then Apple MPS, then the CPU.")
        return combo

    # ----- state ----------------------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The full command line that Start runs (ValueError: the extra arguments have an unclosed quote)."""
        raise NotImplementedError

    def is_running(self) -> bool:
        return self._run is not None and self._run.is_running()

    def exit_code(self) -> int | None:
        """The last run's exit code (-1: crashed or never started), None before any run ended."""
        return self._exit_code

    def _update_command(self) -> None:
        try:
            self.command_edit.setText(format_command(self.command()))
            self.command_edit.setCursorPosition(0)
        except ValueError:
            self.command_edit.setText("(the extra arguments have an unclosed quote)")

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))

    def _set_status(self, message: str, *, ok: bool = True) -> None:
        self.status_label.setText(message)
        self.status_label.setStyleSheet("" if ok else ERROR_STYLE)

    # ----- the run --------------------------------------------------------------------------------------------------
    def _new_run(self) -> RunProcess:
        """A RunProcess whose lines, records and end come to this dialog; the progress bar turns busy."""
        run = RunProcess(self, working_dir=self._working_dir, extra_env=self._extra_env,
                         stop_timeout_s=self._stop_timeout_s)
        run.lines.connect(self._append_lines)
        run.records.connect(self._take_records)
        run.ended.connect(self._on_ended)
        self._run = run
        self.progress.setRange(0, 0)  # busy until the first step is logged
        self.progress.setFormat("starting…")
        return run

    def _append_lines(self, lines: list[str], _from_stderr: bool = False) -> None:
        for line in lines:
            self.log_view.appendPlainText(line)

    def _take_records(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._take_record(record)
        self._update_progress()

    def _take_record(self, record: dict[str, Any]) -> None:
        """A ``train`` record: its losses to the plot; it becomes the one the progress bar describes."""
        step = record.get("step")
        if record.get("kind", "train") != "train" or not isinstance(step, (int, float)):
            return
        for key, value in loss_terms(record).items():
            self.plot.add_point(key, step, value)
        self._last_record = record

    def _steps_per_epoch(self) -> float | None:
        return None

    def _update_progress(self) -> None:
        if self._last_record is None:
            return
        config = self._run.config if self._run is not None else None
        fraction, text = progress_summary(self._last_record, config or {}, self._steps_per_epoch(),
                                          running=self.is_running())
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(min(max(fraction, 0.0), 1.0) * 1000))
        self.progress.setFormat(text)

    def _finish_progress(self, complete: bool) -> None:
        """The bar after a run: no time-left estimate, full when ``complete``, "ended" when it never moved."""
        self._update_progress()
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1000)
        if complete:
            self.progress.setValue(1000)
        if self.progress.format() in ("starting…", "not started"):
            self.progress.setFormat("ended")

    def _failure(self, what: str, crashed: bool, code: int, elapsed: str, consequence: str = "see the log") -> str:
        """"<what> crashed / failed (exit code N) after <elapsed>; <consequence>", and the last error lines."""
        reason = "crashed" if crashed else f"failed (exit code {code})"
        tail = "\n".join(self._run.stderr_tail[-4:] if self._run is not None else []) or "no error output"
        return f"{what} {reason} after {elapsed}; {consequence}. Last messages:\n{tail}"

    def _on_ended(self, code: int, crashed: bool) -> None:
        raise NotImplementedError

    def _closed_after_run(self) -> None:
        """Call at the end of ``_on_ended``: closes the dialog when the person asked to while it ran."""
        if self._close_when_ended:
            self._close_when_ended = False
            super().reject()

    # ----- closing --------------------------------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """Ask whether to end the run and close (tests replace this)."""
        title, text = self.CLOSE_QUESTION
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _end_for_close(self) -> None:
        """How the run ends when the person closes the dialog (Train: stop and save; Refine: cancel)."""
        raise NotImplementedError

    def reject(self) -> None:
        """Close; while the run goes on, only after the person agreed to end it (then once it has ended)."""
        if self.is_running():
            if self._close_when_ended or not self.confirm_close():
                return
            self._close_when_ended = True
            self._end_for_close()
            return
        super().reject()

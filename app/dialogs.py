"""Small dialogs: keyboard shortcuts (built from the window's actions, so never out of date), About, and the
"backbone weights missing" prompt that lets the user point at a local file instead of downloading."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Iterable

from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QAction, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QMessageBox, QPlainTextEdit, QPushButton, QTableWidget, QTableWidgetItem, QToolButton,
                               QVBoxLayout, QWidget)

import mpae_core
from mpae_core.errors import MissingWeights

WEIGHTS_FILTER = "Weights (*.safetensors *.pth *.pt *.bin);;All files (*)"
LOG_LINES = 2000  # lines a run's log view keeps
BACKBONE_HELP = (
    "MPAE needs the frozen DINOv2 backbone weights. Either let timm download them once (needs internet; they are "
    "cached), or download <b>vit_base_patch14_reg4_dinov2</b> weights (the timm/Hugging Face "
    "<i>timm/vit_base_patch14_reg4_dinov2.lvd142m</i> <tt>model.safetensors</tt>) on another machine and choose "
    "the file here. The choice is remembered; the <tt>MPAE_BACKBONE_WEIGHTS</tt> environment variable works too."
)


class ShortcutsDialog(QDialog):
    """Every action that has a shortcut, in menu order, then ``rows`` (what, keys) of keys that are not menu actions,
    then those of panels (``sections``: where → actions) whose keys work while that panel has the focus."""

    def __init__(self, actions: Iterable[QAction], parent: QWidget | None = None, *,
                 sections: dict[str, Iterable[QAction]] | None = None,
                 rows: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = _shortcut_rows(actions) + list(rows)
        for where, panel_actions in (sections or {}).items():
            rows += _shortcut_rows(panel_actions, f" (in the {where})")
        rows.append(("Pan the image", "Space + drag, middle-drag"))
        rows.append(("Zoom", "Mouse wheel"))
        table = QTableWidget(len(rows), 2, self)
        table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.NoEditTriggers)
        for row, (text, keys) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(text))
            table.setItem(row, 1, QTableWidgetItem(keys))
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.table = table
        self.resize(460, 520)


def _shortcut_rows(actions: Iterable[QAction], where: str = "") -> list[tuple[str, str]]:
    return [(a.text().replace("&", "").rstrip("…") + where, ", ".join(s.toString() for s in a.shortcuts()))
            for a in actions if a.shortcuts()]


def about_text(device_text: str) -> str:
    import PySide6
    import timm
    import torch

    return (f"<h3>MPAE Annotator {mpae_core.__version__}</h3>"
            "<p>Unsupervised part annotation with MPAE (Masked Part Autoencoder, ICCV 2025): a frozen DINOv2 "
            "backbone and learned part descriptors discover consistent object parts without labels; you name, "
            "correct and export them.</p>"
            f"<p>Device: {device_text}<br>"
            f"Python {platform.python_version()} · PyTorch {torch.__version__} · timm {timm.__version__} · "
            f"PySide6 {PySide6.__version__}<br>CUDA available: {'yes' if torch.cuda.is_available() else 'no'}</p>")


def show_about(parent: QWidget, device_text: str) -> None:
    QMessageBox.about(parent, "About MPAE Annotator", about_text(device_text))


def missing_weights_sentence(missing: MissingWeights) -> str:
    """What is missing and why, without the command lines' advice (the app's dialogs give their own)."""
    return (f"The {missing.what} weights ({missing.model_name}) are not on this machine and could not be "
            f"downloaded ({missing.reason}).")


def ask_backbone_weights(parent: QWidget, message: str) -> Path | None:
    """Explain the missing weights and let the user choose a local file; None when they cancel."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Warning)
    box.setWindowTitle("Backbone weights needed")
    box.setText(message)
    box.setInformativeText(BACKBONE_HELP)
    choose = box.addButton("Choose weights file…", QMessageBox.AcceptRole)
    box.addButton(QMessageBox.Cancel)
    box.exec()
    if box.clickedButton() is not choose:
        return None
    path, _ = QFileDialog.getOpenFileName(parent, "DINOv2 backbone weights", "", WEIGHTS_FILTER)
    return Path(path) if path else None


class FileField(QWidget):
    """A path field with a Browse button that picks one file (weights files by default)."""

    def __init__(self, title: str, text: str | None = None, *, placeholder: str = "", file_filter: str = WEIGHTS_FILTER,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._title, self._filter = title, file_filter
        self.edit = QLineEdit(text or "")
        self.edit.setPlaceholderText(placeholder)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip(f"Choose the {title} file")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def text(self) -> str:
        return self.edit.text().strip()

    def path(self) -> Path | None:
        return Path(self.text()).expanduser() if self.text() else None

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self._title, self.text(), self._filter)
        if path:
            self.edit.setText(path)


def info_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def dismiss_button(dialog: QDialog, text: str) -> QPushButton:
    """The button that closes ``dialog`` (reject); never auto-default, so Enter in a field does not close it."""
    button = QPushButton(text)
    button.setAutoDefault(False)
    button.clicked.connect(dialog.reject)
    return button


def command_row(tip: str) -> tuple[QLineEdit, QHBoxLayout]:
    """A read-only, monospaced command line with a Copy button (a run's command, to paste into a terminal)."""
    edit = QLineEdit()
    edit.setReadOnly(True)
    edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    edit.setToolTip(tip)
    copy = QToolButton()
    copy.setText("Copy")
    copy.setToolTip("Copy the command line")
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(edit.text()))
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(copy)
    return edit, row


def log_view() -> QPlainTextEdit:
    """A read-only, monospaced, unwrapped view of a process's output that keeps its last LOG_LINES lines."""
    view = QPlainTextEdit()
    view.setReadOnly(True)
    view.setMaximumBlockCount(LOG_LINES)
    view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    return view


def button_row(left: Iterable[QWidget], right: Iterable[QWidget]) -> QHBoxLayout:
    """A dialog's bottom row: the ``left`` buttons, a stretch, then the ``right`` buttons."""
    row = QHBoxLayout()
    for widget in left:
        row.addWidget(widget)
    row.addStretch(1)
    for widget in right:
        row.addWidget(widget)
    return row


class WorkerDialog(QDialog):
    """A dialog that runs one cancellable worker thread at a time (export, import).

    Cancel (and closing the window) cancels a running worker instead of closing, and ``ended`` says how the run went
    once its thread has finished. Subclasses set ``self._worker`` when they start one, connect its ``finished`` to
    :meth:`_on_thread_done`, and provide ``cancel_button``, ``message_label``, ``_update_state`` and ``cancel_task``.
    """

    ended = Signal(str)  # "done", "cancelled" or "failed", once the worker thread has finished

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._worker: QThread | None = None
        self._outcome = ""
        self._close_when_done = False

    def is_running(self) -> bool:
        return self._worker is not None and self._worker.isRunning()

    def cancel_task(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must say how its worker is cancelled")

    def _set_message(self, text: str, *, error: bool = False) -> None:
        self.message_label.setText(text)
        self.message_label.setStyleSheet("color: #d83b3b;" if error else "")

    def _on_failed(self, message: str) -> None:
        self._outcome = "failed"
        self._set_message(message, error=True)

    def _on_thread_done(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.deleteLater()
        self.cancel_button.setEnabled(True)
        self._update_state()
        self._after_thread()
        self.ended.emit(self._outcome or "failed")
        if self._close_when_done:
            super().reject()

    def _after_thread(self) -> None:
        """What a subclass does once its worker thread has finished, before ``ended``."""

    def reject(self) -> None:
        """Cancel button: cancels a running worker (the dialog stays to say so); otherwise closes."""
        if self.is_running():
            self.cancel_task()
            return
        super().reject()

    def closeEvent(self, event) -> None:
        """Closing the window mid-run cancels it and closes once the worker has stopped."""
        if self.is_running():
            self._close_when_done = True
            self.cancel_task()
            event.ignore()
            return
        super().closeEvent(event)

"""File ▸ Import: annotations made elsewhere (COCO, PNG label maps, VOC, labelme, YOLO-seg, CVAT) into the open
project, by the same importer as ``mpae-annotate import`` (:mod:`mpae_core.annotation.importers`).

Choosing a source shows, before anything changes, the format found, what each label becomes (a part of this
project, one of its labels, a new label, background or don't care) and how many of the source's images this project
has. The preview reads metadata on a worker thread from a snapshot of the project's image list.

The import itself writes the project, which is not thread-safe and is held by the window: so the window lets go of
it (saved, write lock released) when Import is pressed, the worker opens it on its own thread, imports and closes it,
and the window opens it again when the worker is done (``projectReturned``); the window is modal meanwhile. Cancel
stops after the current image; what was imported stays.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QMessageBox, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem,
                               QToolButton, QVBoxLayout, QWidget)

from mpae_core.annotation import AnnotationProject, PartTable
from mpae_core.annotation.importers import (IMPORT_FORMATS, ImportCancelled, ImportPreview, ImportReport,
                                            ImportSource, import_annotations, open_source, preview_import)
from mpae_core.errors import MPAEError

from .dialogs import WorkerDialog, button_row, dismiss_button
from .icons import icon

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05
FORMAT_NAMES = {"png": "PNG label maps (masks/ + labels.txt)", "voc": "Pascal VOC / CVAT segmentation masks",
                "cvat": "CVAT for images 1.1 XML", "coco": "COCO instances JSON", "labelme": "labelme JSON",
                "yolo": "YOLO segmentation (Ultralytics)"}
KIND_TEXT = {"part": "part", "user": "label", "new": "new label", "background": "background",
             "ignore": "don't care"}
MAX_LISTED = 8


class PreviewWorker(QThread):
    """Opens the source and matches it against a snapshot of the project (plain data, never the project)."""

    ready = Signal(object, object, object)  # ImportPreview, ImportSource, other formats found
    failed = Signal(str)

    def __init__(self, source: str, fmt: str | None, relpaths: list[str], with_work: set[str],
                 parts: PartTable | None, images_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source, self.fmt = source, fmt
        self.relpaths, self.with_work, self.parts, self.images_folder = relpaths, with_work, parts, images_folder
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            source, others = open_source(self.source, self.fmt)
            preview = preview_import(source, self.relpaths, self.parts, with_work=self.with_work,
                                     images_folder=self.images_folder, should_stop=self._stop.is_set)
        except MPAEError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # one sentence for the person; the traceback goes to the log
            logger.exception("Reading %s failed", self.source)
            self.failed.emit(f"Cannot read '{self.source}' ({type(exc).__name__}: {exc}).")
        else:
            if not self._stop.is_set():
                self.ready.emit(preview, source, others)


class ImportWorker(QThread):
    """Opens the project (which the window has let go of), imports, and closes it again."""

    progress = Signal(int)
    succeeded = Signal(object)  # ImportReport
    failed = Signal(str)

    def __init__(self, project_dir: Path, source: ImportSource, *, replace: bool, reviewed: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project_dir, self.source, self.replace, self.reviewed = project_dir, source, replace, reviewed
        self._cancel = threading.Event()
        self._last_emit = 0.0

    def cancel(self) -> None:
        self._cancel.set()

    def _on_image(self, done: int, _name: str) -> None:
        if self._cancel.is_set():
            raise ImportCancelled
        now = time.monotonic()
        if now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progress.emit(done)

    def run(self) -> None:
        try:
            project = AnnotationProject.open(self.project_dir, edit_cache_size=1)
            try:
                report = import_annotations(self.source, project, replace=self.replace, reviewed=self.reviewed,
                                            on_image=self._on_image)
            finally:
                project.close()
        except (MPAEError, OSError) as exc:
            self.failed.emit(str(exc))
        except Exception as exc:
            logger.exception("Import from %s failed", self.source.path)
            self.failed.emit(f"The import from '{self.source.path}' failed ({type(exc).__name__}: {exc}); see the "
                             "log for details.")
        else:
            self.succeeded.emit(report)


class ImportDialog(WorkerDialog):
    """Choose a source, see what it becomes, import with progress and Cancel.

    ``release_project()`` is called when Import is pressed: it must save the project and give its write lock back
    (the window closes it); it may raise MPAEError/OSError to refuse. ``projectReturned(report or None)`` follows
    once the worker has closed the project again, so the caller can reopen it.
    """

    imported = Signal(object)  # ImportReport
    projectReturned = Signal(object)  # ImportReport, or None when the import failed

    def __init__(self, project: AnnotationProject, parent: QWidget | None = None, *,
                 release_project: Callable[[], None] | None = None, source: str | Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import annotations")
        self.setWindowIcon(icon("import"))
        self.setMinimumWidth(640)
        self._project = project
        self._project_dir = project.project_dir
        self._read_only = project.read_only
        self._release = release_project or (lambda: (project.save(), project.close()))
        records = list(project.records())
        self._snapshot = ([r.relpath for r in records], {r.relpath for r in records if r.has_work},
                          None if project.parts is None else project.parts.copy(), project.images_folder)
        self._preview_worker: PreviewWorker | None = None  # the one whose answer counts
        self._previews: list[PreviewWorker] = []  # every preview thread still running (older ones were stopped)
        self._preview_error: str | None = None
        self._previewed_for: tuple[str, str | None] | None = None  # (source, format) of the latest preview
        self._preview: ImportPreview | None = None
        self._source: ImportSource | None = None
        self._report: ImportReport | None = None
        self._released = False

        self.source_edit = QLineEdit(str(source) if source else "")
        self.source_edit.setPlaceholderText("A COCO or labelme JSON, annotations.xml, data.yaml, or a folder")
        self.source_edit.editingFinished.connect(self.start_preview)
        file_button = QToolButton(text="File…")
        file_button.setToolTip("Choose an annotation file")
        file_button.clicked.connect(self._browse_file)
        folder_button = QToolButton()
        folder_button.setIcon(icon("open_folder"))
        folder_button.setToolTip("Choose a folder of annotations")
        folder_button.clicked.connect(self._browse_folder)
        source_row = QHBoxLayout()
        source_row.addWidget(self.source_edit, 1)
        source_row.addWidget(file_button)
        source_row.addWidget(folder_button)
        self.format_combo = QComboBox()
        self.format_combo.addItem("Detect", None)
        for name in IMPORT_FORMATS:
            self.format_combo.addItem(FORMAT_NAMES[name], name)
        self.format_combo.currentIndexChanged.connect(self.start_preview)
        self.format_label = QLabel()
        self.format_label.setWordWrap(True)
        format_row = QHBoxLayout()
        format_row.addWidget(self.format_combo)
        format_row.addWidget(self.format_label, 1)

        self.labels_table = QTableWidget(0, 3)
        self.labels_table.setHorizontalHeaderLabels(["", "In the source", "Becomes"])
        self.labels_table.verticalHeader().hide()
        self.labels_table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.labels_table.setSelectionMode(QTableWidget.NoSelection)
        header = self.labels_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Fixed)
        header.resizeSection(0, 18)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.labels_table.setMinimumHeight(120)
        self.images_label = QLabel()
        self.images_label.setWordWrap(True)
        self.images_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.replace_check = QCheckBox("Replace images that already have edits or a review (otherwise they are kept)")
        self.reviewed_check = QCheckBox("Mark the imported images reviewed")
        self.replace_check.toggled.connect(self._show_preview)

        form = QFormLayout()
        form.addRow("Source:", source_row)
        form.addRow("Format:", format_row)
        form.addRow("Labels:", self.labels_table)
        form.addRow("Images:", self.images_label)
        form.addRow("", self.replace_check)
        form.addRow("", self.reviewed_check)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        self.progress.hide()  # shown once an import runs
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.import_button = QPushButton(icon("import"), "Import")
        self.import_button.setDefault(True)
        self.import_button.clicked.connect(self.start_import)
        self.cancel_button = dismiss_button(self, "Close")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.message_label)
        layout.addLayout(button_row([], [self.import_button, self.cancel_button]))
        self._update_state()
        if source:
            self.start_preview()

    # ----- state ----------------------------------------------------------------------------------------------------
    def is_previewing(self) -> bool:
        return self._preview_worker is not None

    def report(self) -> ImportReport | None:
        return self._report

    def _problem(self) -> str | None:
        if self._read_only is not None:
            return f"This project is read-only here: {self._read_only}."
        if self._released and not self.is_running():
            return "This import is done; choose File ▸ Import again for another one."
        if not self.source_edit.text().strip():
            return "Choose an annotation file or folder."
        if self.is_previewing():
            return "Reading the source…"
        if self._preview is None:
            return self._preview_error or "Reading the source…"
        if self._preview.annotated == 0:
            return "The source holds no annotated image."
        return None

    def _update_state(self) -> None:
        running = self.is_running()
        problem = self._problem()
        for widget in (self.source_edit, self.format_combo, self.replace_check, self.reviewed_check):
            widget.setEnabled(not running and not self._released)
        self.import_button.setEnabled(not running and problem is None)
        self.import_button.setToolTip(problem or "")
        self.cancel_button.setText("Cancel" if running else "Close")

    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Annotation file", self.source_edit.text(),
                                              "Annotations (*.json *.xml *.yaml *.yml *.txt);;All files (*)")
        if path:
            self.source_edit.setText(path)
            self.start_preview()

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of annotations", self.source_edit.text())
        if folder:
            self.source_edit.setText(folder)
            self.start_preview()

    # ----- preview --------------------------------------------------------------------------------------------------
    def start_preview(self) -> None:
        """Read the chosen source's labels and image names on a worker thread (again only if the choice changed)."""
        text = self.source_edit.text().strip()
        wanted = (text, self.format_combo.currentData())
        if self.is_running() or self._released or not text or wanted == self._previewed_for:
            return
        self._previewed_for = wanted
        if self._preview_worker is not None:
            self._preview_worker.stop()  # its answer will not count
        self._preview, self._source, self._preview_error = None, None, None
        self._show_preview()
        self._set_message("")
        self.format_label.setText("reading…")
        worker = PreviewWorker(text, self.format_combo.currentData(), *self._snapshot, parent=self)
        worker.ready.connect(self._on_preview)
        worker.failed.connect(self._on_preview_failed)
        worker.finished.connect(self._on_preview_thread_done)
        self._preview_worker = worker
        self._previews.append(worker)
        worker.start()
        self._update_state()

    def _on_preview(self, preview: ImportPreview, source: ImportSource, others: list[str]) -> None:
        if self.sender() is not self._preview_worker:
            return  # the answer for a source chosen before
        self._preview, self._source = preview, source
        also = f"; also here: {', '.join(others)}" if others else ""
        self.format_label.setText(f"{FORMAT_NAMES[preview.format]}{also}")
        self.format_label.setToolTip(f"Reading {source.path}")
        self._show_preview()
        self._update_state()

    def _on_preview_failed(self, message: str) -> None:
        if self.sender() is not self._preview_worker:
            return
        self._preview_error = "The source could not be read (see below)."
        self.format_label.setText("")
        self._set_message(message, error=True)
        self._update_state()

    def _on_preview_thread_done(self) -> None:
        worker = self.sender()
        if worker is self._preview_worker:
            self._preview_worker = None
        if worker in self._previews:
            self._previews.remove(worker)
        worker.deleteLater()
        self._update_state()

    def _show_preview(self) -> None:
        preview = self._preview
        self.labels_table.setRowCount(0)
        if preview is None:
            self.images_label.setText("")
            return
        self.labels_table.setRowCount(len(preview.labels))
        for row, match in enumerate(preview.labels):
            swatch = QTableWidgetItem()
            if match.source.color is not None:
                swatch.setBackground(QColor(*match.source.color))
            becomes = KIND_TEXT[match.kind] + (f" '{match.target}'" if match.kind in ("part", "user") else "")
            for col, item in enumerate((swatch, QTableWidgetItem(match.source.name), QTableWidgetItem(becomes))):
                if col == 2 and match.kind == "new":
                    item.setForeground(QColor("#2563eb"))
                self.labels_table.setItem(row, col, item)
        lines = [f"{preview.annotated} annotated images in the source: {preview.matched} of this project's"]
        if preview.with_work:
            lines[0] += (f", of which {preview.with_work} already annotated here ("
                         + ("replaced" if self.replace_check.isChecked() else "kept as they are") + ")")
        if preview.not_found:
            listed = "\n".join(preview.not_found[:MAX_LISTED])
            extra = len(preview.not_found) - MAX_LISTED
            more = f"\n… and {extra} more" if extra > 0 else ""
            lines.append(f"{len(preview.not_found)} cannot be imported:\n{listed}{more}")
        self.images_label.setText(".\n".join(lines) if len(lines) > 1 else lines[0] + ".")

    # ----- import ---------------------------------------------------------------------------------------------------
    def start_import(self) -> bool:
        """Let the window release the project, then import on a worker thread; False if something blocks it."""
        problem = self._problem()
        if self.is_running() or problem is not None or self._source is None or self._preview is None:
            if problem:
                self._set_message(problem, error=True)
            return False
        try:
            self._release()
        except (MPAEError, OSError) as exc:
            self._set_message(f"Cannot save the project before importing ({exc}); fix that and try again.",
                              error=True)
            return False
        self._released = True
        self._report, self._outcome = None, ""
        self.progress.setRange(0, max(self._preview.annotated, 1))
        self.progress.setValue(0)
        self.progress.show()
        self._set_message(f"Importing {self._preview.annotated} annotated images…")
        worker = ImportWorker(self._project_dir, self._source, replace=self.replace_check.isChecked(),
                              reviewed=self.reviewed_check.isChecked(), parent=self)
        worker.progress.connect(self._on_progress)
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_thread_done)
        self._worker = worker
        worker.start()
        self._update_state()
        return True

    def _on_progress(self, done: int) -> None:
        self.progress.setValue(min(done, self.progress.maximum()))

    def cancel_import(self) -> None:
        if self.is_running():
            assert self._worker is not None
            self._worker.cancel()
            self.cancel_button.setEnabled(False)
            self._set_message("Cancelling after this image…")

    def _on_succeeded(self, report: ImportReport) -> None:
        self._report = report
        self._outcome = "cancelled" if report.cancelled else "done"
        self.progress.setValue(self.progress.maximum() if not report.cancelled else self.progress.value())
        lines = [report.summary()]
        if report.created:
            lines.append(f"New labels: {', '.join(report.created)}.")
        lines += [s.reason for s in report.failed[:MAX_LISTED]]
        if len(report.failed) > MAX_LISTED:
            lines.append(f"… and {len(report.failed) - MAX_LISTED} more not imported.")
        lines += report.notes[:MAX_LISTED]
        self._set_message("\n".join(lines), error=bool(report.failed))
        self.imported.emit(report)

    cancel_task = cancel_import

    def _after_thread(self) -> None:
        self.projectReturned.emit(self._report)

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the running previews and import end (tests, closing); True if nothing runs any more."""
        workers = [*self._previews, *([self._worker] if self._worker is not None else [])]
        return all(worker.wait(timeout_ms) for worker in workers)

    def done(self, result: int) -> None:
        """Closing (not while importing: Cancel and the close button cancel that first) stops any preview."""
        self._stop_preview()
        super().done(result)

    def _stop_preview(self) -> None:
        for worker in self._previews:
            worker.stop()
            worker.wait()


def show_import_dialog(window) -> None:
    """File ▸ Import for the main window: it lets go of its project while the import runs, then opens it again
    (list, parts panel and current image refreshed) and shows the image it showed before."""
    if window.project is None:
        QMessageBox.information(window, "Nothing to import into", "Open the folder of the images first; the import "
                                                                  "adds annotations to its images.")
        return
    if window.predicting:
        window.statusBar().showMessage("Cancel the running prediction before importing.", 5000)
        return
    project, folder, current = window.project, window.project.images_folder, window.current

    def release() -> None:
        project.save()  # raises when it cannot: nothing is closed then
        window.close_project()
        try:
            project.close()  # gives the lock back even when it fails
        except BaseException:
            reopen(None)
            raise

    def reopen(report: ImportReport | None) -> None:
        if window.open_folder(folder, load_project_checkpoint=False) and current is not None \
                and current in window.project:
            window.show_image(current)
        if report is not None:
            window.statusBar().showMessage(report.summary(), 15000)

    dialog = ImportDialog(project, window, release_project=release)
    dialog.projectReturned.connect(reopen)
    dialog.exec()

"""The Export dialog: PNG masks, COCO (RLE or polygons), YOLO, labelme, CVAT and VOC for the project's annotated
images, written off the GUI thread by the same exporter as the batch (``export_annotations``).

AnnotationProject is not thread-safe, so the dialog saves the live project on the GUI thread and the worker exports
from its own read-only copy opened from disk; the person can keep annotating meanwhile without racing the export.
A Cancel stops at the next image: per-image files written so far stay, the COCO, CVAT and list files are not written.

The default folder lies beside the image folder (``<folder>-labels``), and every export folder is marked so that
image listings skip it wherever it is (:mod:`mpae_core.annotation.export_folder`). Before writing into a folder that
is not empty the dialog asks; replacing an earlier export removes its files that the new one does not write again.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from PySide6.QtCore import Qt, QThread, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mpae_core.annotation import AnnotationProject, ExportResult, ImageStatus, PartTable, export_annotations
from mpae_core.annotation.export import unique_mask_relpaths
from mpae_core.annotation.export_folder import (ExportRecorder, FolderCheck, FolderState, check_export_folder,
                                                default_export_folder, export_folder_problem)
from mpae_core.annotation.project import EXPORTABLE
from mpae_core.errors import MPAEError

from .dialogs import WorkerDialog, button_row, dismiss_button
from .icons import icon

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress signals a second, however fast images export


class _ExportCancelled(Exception):
    """Raised inside export_annotations' on_image callback to stop the export."""


def describe_export_error(exc: BaseException, out_dir: Path) -> str:
    """One sentence for the person: which file, what is wrong, what to do."""
    if isinstance(exc, OSError):
        where = exc.filename or out_dir
        reason = exc.strerror or str(exc)
        return f"Cannot write the export to '{where}': {reason}; choose a folder you can write to."
    if isinstance(exc, (MPAEError, ValueError)):
        return str(exc)
    return f"The export to '{out_dir}' failed ({type(exc).__name__}: {exc}); see the log for details."


class ExportWorker(QThread):
    """Exports from an independent copy of the project opened from ``project_dir`` (never the live one)."""

    progress = Signal(int, str)  # images done, last relpath
    succeeded = Signal(object)  # ExportResult
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, project_dir: Path, parts: PartTable, out_dir: Path, formats: tuple[str, ...],
                 reviewed_only: bool, parent: QWidget | None = None, *, coco_style: str = "rle") -> None:
        super().__init__(parent)
        self.project_dir = project_dir
        self.parts = parts
        self.out_dir = out_dir
        self.formats = formats
        self.coco_style = coco_style
        self.reviewed_only = reviewed_only
        self._cancel = threading.Event()
        self._done = 0
        self._last_emit = 0.0
        self.removed: list[Path] = []  # files of an earlier export that this one replaced and deleted

    def cancel(self) -> None:
        self._cancel.set()

    def _on_image(self, relpath: str) -> None:
        if self._cancel.is_set():
            raise _ExportCancelled
        self._done += 1
        now = time.monotonic()
        if now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progress.emit(self._done, relpath)

    def run(self) -> None:
        try:
            result = self._export()
        except _ExportCancelled:
            logger.info("Export to %s cancelled after %d images", self.out_dir, self._done)
            self.cancelled.emit()
        except Exception as exc:  # reported to the person as one sentence; the traceback goes to the log
            logger.exception("Export to %s failed", self.out_dir)
            self.failed.emit(describe_export_error(exc, self.out_dir))
        else:
            self.progress.emit(self._done, "")
            self.succeeded.emit(result)

    def _export(self) -> ExportResult:
        """Export from a copy of the project, recording the files written in the folder's export list; once it is
        complete, the files of an earlier export there that it did not write again are deleted."""
        copy = AnnotationProject.open(self.project_dir, write=False)
        recorder = ExportRecorder(self.out_dir, tool="app", source=copy.images_folder)
        recorder.begin()
        try:
            if self.reviewed_only:
                source = copy.iter_label_maps(statuses=[ImageStatus.REVIEWED])
                names = unique_mask_relpaths(copy.relpaths())
            else:
                source, names = copy, None
            if self._cancel.is_set():
                raise _ExportCancelled
            result = export_annotations(source, self.parts, self.out_dir, formats=self.formats, mask_names=names,
                                        coco_style=self.coco_style, images_dir=copy.images_folder,
                                        on_image=self._on_image)
        except BaseException:
            try:  # the files written so far join the folder's list; nothing is deleted
                recorder.finish(complete=False, images=self._done)
            except OSError as exc:
                logger.warning("Could not record the unfinished export in %s: %s", self.out_dir, exc)
            raise
        self.removed = recorder.finish(complete=True, images=result.images, keep=result.files)
        return result


class ExportDialog(WorkerDialog):
    """Choose formats, folder and images; export with progress and Cancel; ``exported(result)`` when done."""

    exported = Signal(object)

    def __init__(self, project: AnnotationProject, parent: QWidget | None = None, *,
                 default_out_dir: str | os.PathLike | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export annotations")
        self.setWindowIcon(icon("export"))
        self.setMinimumWidth(560)
        self._project = project
        self._result: ExportResult | None = None
        self._total = 0

        self.png_check = QCheckBox("PNG masks (masks/*.png, labels.txt, labels.json)")
        self.png_check.setChecked(True)
        self.coco_check = QCheckBox("COCO instances (coco.json)")
        self.coco_check.setChecked(True)
        self.coco_style_combo = QComboBox()
        for text, style in (("RLE masks (exact)", "rle"), ("polygons", "polygons")):
            self.coco_style_combo.addItem(text, style)
        coco_row = QHBoxLayout()
        coco_row.addWidget(self.coco_check)
        coco_row.addWidget(self.coco_style_combo)
        coco_row.addStretch(1)
        self.yolo_check = QCheckBox("YOLO segmentation (yolo/: images, labels, data.yaml)")
        self.labelme_check = QCheckBox("labelme JSON (labelme/*.json)")
        self.cvat_check = QCheckBox("CVAT for images 1.1 (cvat/annotations.xml)")
        self.voc_check = QCheckBox("Pascal VOC segmentation (voc/: SegmentationClass, labelmap.txt)")
        self._format_checks = {"png": self.png_check, "coco": self.coco_check, "yolo": self.yolo_check,
                               "labelme": self.labelme_check, "cvat": self.cvat_check, "voc": self.voc_check}
        formats = QVBoxLayout()
        formats.addWidget(self.png_check)
        formats.addLayout(coco_row)
        for name in ("yolo", "labelme", "cvat", "voc"):
            formats.addWidget(self._format_checks[name])

        default = (Path(default_out_dir) if default_out_dir is not None
                   else default_export_folder(project.images_folder))
        self.out_edit = QLineEdit(str(default))
        browse = QToolButton()
        browse.setIcon(icon("open_folder"))
        browse.setToolTip("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)

        counts = project.status_counts()
        exportable = self._count(EXPORTABLE)
        reviewed = self._count((ImageStatus.REVIEWED,))
        self.all_radio = QRadioButton(f"All annotated images: predicted, edited and reviewed ({exportable})")
        self.reviewed_radio = QRadioButton(f"Reviewed images only ({reviewed})")
        self.all_radio.setChecked(True)
        self._scope = QButtonGroup(self)
        self._scope.addButton(self.all_radio)
        self._scope.addButton(self.reviewed_radio)
        scope = QVBoxLayout()
        scope.addWidget(self.all_radio)
        scope.addWidget(self.reviewed_radio)
        if counts.get(ImageStatus.NEW, 0) or counts.get(ImageStatus.ERROR, 0):
            skipped = QLabel(f"Not exported: {counts[ImageStatus.NEW]} new and {counts[ImageStatus.ERROR]} failed "
                             "images (no prediction).")
            skipped.setEnabled(False)
            scope.addWidget(skipped)
        if changed := len(project.changed_relpaths()):  # iter_label_maps leaves them out: masks of other photos
            scope.addWidget(QLabel(f"Left out: {changed} images that changed on disk after they were annotated; "
                                   "predict them again to export them."))

        form = QFormLayout()
        form.addRow("Formats:", formats)
        form.addRow("Output folder:", out_row)
        form.addRow("Images:", scope)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint_label = QLabel()  # why Export is disabled, if it is
        self.hint_label.setWordWrap(True)
        self.hint_label.setEnabled(False)

        self.export_button = QPushButton(icon("export"), "Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start_export)
        self.open_button = QPushButton(icon("open_folder"), "Open folder")
        self.open_button.clicked.connect(self.open_folder)
        self.open_button.hide()
        self.cancel_button = dismiss_button(self, "Cancel")
        buttons = button_row([self.open_button], [self.export_button, self.cancel_button])

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.hint_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.message_label)
        layout.addStretch(1)
        layout.addLayout(buttons)

        for widget in (*self._format_checks.values(), self.all_radio, self.reviewed_radio):
            widget.toggled.connect(self._update_state)
        self.out_edit.textChanged.connect(self._update_state)
        self._update_state()

    # ----- state ----------------------------------------------------------------------------------------------------
    def _count(self, statuses) -> int:
        wanted = set(statuses)
        return sum(1 for r in self._project.records() if r.status in wanted and (r.has_prediction or r.has_edits))

    def formats(self) -> tuple[str, ...]:
        return tuple(name for name, box in self._format_checks.items() if box.isChecked())

    def coco_style(self) -> str:
        return str(self.coco_style_combo.currentData())

    def out_dir(self) -> Path:
        return Path(self.out_edit.text().strip()).expanduser()

    def reviewed_only(self) -> bool:
        return self.reviewed_radio.isChecked()

    def result(self) -> ExportResult | None:  # type: ignore[override]
        """What the last export wrote, or None if none finished (this replaces QDialog's int result code)."""
        return self._result

    def _problem(self) -> str | None:
        if not self.formats():
            return "Tick at least one format."
        if not self.out_edit.text().strip():
            return "Choose an output folder."
        if self._project.parts is None:
            return "Nothing to export yet: no image has a prediction; run Predict first."
        statuses = (ImageStatus.REVIEWED,) if self.reviewed_only() else EXPORTABLE
        if self._count(statuses) == 0:
            return ("No image is marked reviewed; review some images or export all annotated images."
                    if self.reviewed_only() else "No image has a prediction yet; run Predict first.")
        return None

    def _update_state(self) -> None:
        running = self.is_running()
        problem = self._problem()
        for widget in (*self._format_checks.values(), self.out_edit, self.all_radio, self.reviewed_radio):
            widget.setEnabled(not running)
        self.coco_style_combo.setEnabled(not running and self.coco_check.isChecked())
        self.export_button.setEnabled(not running and problem is None)
        self.export_button.setToolTip(problem or "")
        self.cancel_button.setText("Cancel" if running else "Close")
        self.hint_label.setText("" if running else problem or "")
        self.hint_label.setVisible(bool(problem) and not running)

    def _browse(self) -> bool:
        """Let the person pick the output folder; True when they did."""
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)
        return bool(folder)

    # ----- a folder that is not empty -------------------------------------------------------------------------------
    def overwrite_question(self, check: FolderCheck) -> tuple[QMessageBox, dict[str, object]]:
        """The question asked before writing into ``check.folder``, and its buttons by answer."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        earlier = check.state is FolderState.EXPORT
        box.setWindowTitle("Replace the earlier export?" if earlier else "Export into a folder that is not empty?")
        box.setText(check.question())
        box.setInformativeText(check.consequence())
        buttons = {
            "overwrite": box.addButton("Overwrite" if earlier else "Export here", QMessageBox.ButtonRole.AcceptRole),
            "choose": box.addButton("Choose another folder…", QMessageBox.ButtonRole.ActionRole),
            "cancel": box.addButton(QMessageBox.StandardButton.Cancel),
        }
        box.setDefaultButton(buttons["choose"])
        return box, buttons

    def ask_overwrite(self, check: FolderCheck) -> str:
        """Ask before writing into a folder that is not empty: "overwrite", "choose" or "cancel" (tests replace
        this)."""
        box, buttons = self.overwrite_question(check)
        box.exec()
        clicked = box.clickedButton()
        return next((answer for answer, button in buttons.items() if button is clicked), "cancel")

    def _folder_agreed(self, out_dir: Path) -> bool | None:
        """True when ``out_dir`` may be written (empty, or the person agreed), False when not, None when they chose
        another folder (then the export starts over with it)."""
        try:
            check = check_export_folder(out_dir)
        except OSError as exc:
            self._set_message(f"Cannot look into the output folder '{out_dir}': {exc.strerror or exc}; choose "
                              "another folder.", error=True)
            return False
        if not check.needs_answer:
            return True
        answer = self.ask_overwrite(check)
        if answer == "overwrite":
            return True
        if answer == "choose" and self._browse():
            return None
        self._set_message(f"Nothing was exported; '{out_dir}' was left as it was.")
        return False

    # ----- export ---------------------------------------------------------------------------------------------------
    def start_export(self) -> bool:
        """Save the live project, then export from a copy on a worker thread; False if something blocks it."""
        if self.is_running():
            return False
        problem = self._problem()
        if problem:
            self._set_message(problem, error=True)
            return False
        out_dir = self.out_dir()
        problem = export_folder_problem(out_dir, self._project.images_folder)
        if problem:
            self._set_message(problem, error=True)
            return False
        agreed = self._folder_agreed(out_dir)
        if agreed is None:
            return self.start_export()  # with the folder just chosen, asked about in turn
        if not agreed:
            return False
        try:
            self._project.save()  # the worker reads the project from disk
        except (OSError, MPAEError) as exc:
            self._set_message(f"Cannot save the project before exporting ({exc}); fix that and try again.",
                              error=True)
            return False
        reviewed_only = self.reviewed_only()
        self._total = self._count((ImageStatus.REVIEWED,) if reviewed_only else EXPORTABLE)
        self._result = None
        self._outcome = ""
        self.open_button.hide()
        self.progress.setRange(0, self._total)
        self.progress.setValue(0)
        self._set_message(f"Exporting {self._total} images to {out_dir}…")
        worker = ExportWorker(self._project.project_dir, self._project.parts.copy(), out_dir, self.formats(),
                              reviewed_only, self, coco_style=self.coco_style())
        worker.progress.connect(self._on_progress)
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        worker.finished.connect(self._on_thread_done)
        self._worker = worker
        logger.info("Exporting %d images (%s) to %s", self._total, ",".join(self.formats()), out_dir)
        worker.start()
        self._update_state()
        return True

    def cancel_export(self) -> None:
        """Stop at the next image; masks written so far stay, the COCO file is not written."""
        if self.is_running():
            assert self._worker is not None
            self._worker.cancel()
            self.cancel_button.setEnabled(False)
            self._set_message("Cancelling…")

    def _on_progress(self, done: int, relpath: str) -> None:
        self.progress.setValue(min(done, self.progress.maximum()))

    def _on_succeeded(self, result: ExportResult) -> None:
        self._result = result
        self.progress.setRange(0, max(result.images, 1))
        self.progress.setValue(result.images)
        written = []
        if result.masks_dir is not None:
            written.append("masks/ (with labels.txt, labels.json)")
        if result.coco_path is not None:
            written.append(f"{result.coco_path.name} ({result.annotations} part annotations)")
        for name in ("yolo", "labelme", "cvat", "voc"):
            if name in result.outputs:
                written.append(result.outputs[name].relative_to(result.out_dir).as_posix())
        self._set_message(f"Exported {result.images} images to {result.out_dir}: {'; '.join(written)}.")
        removed = len(self._worker.removed) if self._worker is not None else 0
        if removed:
            self._set_message(f"{self.message_label.text()} Deleted {removed} files of the earlier export there that "
                              "this one does not write again.")
        self._outcome = "done"
        self.open_button.show()
        self.exported.emit(result)

    def _on_cancelled(self) -> None:
        self._outcome = "cancelled"
        self._set_message("Export cancelled: per-image files written so far stay; no COCO, CVAT or list file was "
                          "written.")

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the running export ends (tests, closing); True if nothing is running any more."""
        worker = self._worker
        return worker is None or worker.wait(timeout_ms)

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._result.out_dir if self._result else self.out_dir())))

    cancel_task = cancel_export

"""The main window: file list, canvas, parts panel, gallery and problems docks, menus, toolbars and status bar.

It wires views to the ``mpae_core`` annotation project and to the workers; it holds no model maths and no file
formats. The project is touched only on this (GUI) thread: workers send predictions back through signals. Actions,
menus and toolbars live in ``window_menus``, model loading and prediction in ``window_model``, the part view and
painting in ``window_editing``; they are mixins of :class:`MainWindow`, which owns the state they share.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QModelIndex, QSignalBlocker, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (QApplication, QComboBox, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QListView, QListWidget, QListWidgetItem, QMainWindow, QMessageBox, QSizePolicy,
                               QStackedWidget, QToolBar, QToolButton, QVBoxLayout, QWidget)

from mpae_core.annotation import AnnotationProject, FileState, ImageRecord, ImageStatus
from mpae_core.annotation.project import find_project_dir
from mpae_core.annotation.edits import EditLayer
from mpae_core.errors import MPAEError

from . import dialogs
from .autosave import ProjectSaver
from .canvas import ImageCanvas
from .display import ImageDisplay
from .file_list import ICON_SIZE, SORT_KEYS, ImageFilterModel, ImageListModel, ImageRowDelegate, RelpathRole
from .gallery import PartGallery
from .icons import icon
from .model_session import ModelSession
from .overlay import OverlayStyle
from .parts_panel import PartsPanel
from .settings import AppSettings, data_dir
from .space_pan import SpacePanFilter
from .theme import apply_theme
from .welcome import WelcomePanel
from .workers import FileChecker, ModelLoadWorker, PredictionWorker
from .window_editing import EditingMixin
from .window_annotate import PAINT_KEY_ROWS, AnnotateMixin
from .window_first_hour import FirstHourMixin
from .window_menus import MenusMixin
from .window_model import ModelMixin
from .window_refine import RefineMixin

logger = logging.getLogger(__name__)

FILTER_DELAY_MS = 150  # the name filter applies once typing pauses this long
STATUS_REFRESH_MS = 2000


class MainWindow(MenusMixin, ModelMixin, RefineMixin, AnnotateMixin, EditingMixin, FirstHourMixin, QMainWindow):
    """MPAE Annotator's window; ``open_folder``, ``load_checkpoint`` and ``predict_all`` are also its test API."""

    imageShown = Signal(str)  # the image became the current one (its pixels follow: displayReady)
    displayReady = Signal(str)  # the current image is on screen at full resolution
    modelLoaded = Signal(str)  # checkpoint path
    modelFailed = Signal(str)  # message
    predictionFinished = Signal(object)  # PredictionSummary
    repredictFinished = Signal(object)  # RepredictReport (after Improve from my corrections)
    filesChecked = Signal(object)  # relpaths whose file changed or vanished (after opening a folder)

    def __init__(self, settings: AppSettings | None = None, *, save_settings: bool = True) -> None:
        super().__init__()
        self.settings = settings or AppSettings.load()
        self.save_settings = save_settings
        self.project: AnnotationProject | None = None
        self.session = ModelSession()
        self._closing = False
        self.current: str | None = None
        self._layer: EditLayer | None = None  # the current image's edit layer (None while it is read from disk)
        self._load_thread: QThread | None = None
        self._load_worker: ModelLoadWorker | None = None
        self._predict_thread: QThread | None = None
        self._predict_worker: PredictionWorker | None = None
        self._after_load: list = []
        self._title_folder: Path | None = None  # what the title names: the image folder, or a batch run's OUT
        self._model_refusal: str | None = None  # why the loaded model may not predict into this project
        self._run_fingerprint: str | None = None  # the model of the prediction run in progress
        self._actions: list[QAction] = []
        self.setWindowTitle("MPAE Annotator")
        self.setWindowIcon(icon("checkpoint"))
        self._build_views()
        self._build_actions()
        self._build_menus_and_toolbars()
        self._build_status_bar()
        self._build_read_only_banner()
        self.saver = ProjectSaver(lambda: self.project, self)
        self.saver.failed.connect(lambda message: self.statusBar().showMessage(message, 15000))
        self.file_checker = FileChecker(self)
        self.file_checker.checked.connect(self._apply_file_check)
        self._status_timer = QTimer(self, interval=STATUS_REFRESH_MS, timeout=self._refresh_device_status)
        self._status_timer.start()
        self._counts_timer = QTimer(self, singleShot=True, interval=1000, timeout=self._refresh_counts)
        self.resize(1400, 900)
        self._restore_layout()
        self._update_actions()
        self._refresh_device_status()

    # ================================================================================================ construction
    def _build_views(self) -> None:
        self.canvas = ImageCanvas(self)
        self.canvas.set_style(OverlayStyle(opacity=self.settings.overlay_opacity))
        self.canvas.set_brush_radius(self.settings.brush_radius)
        self.canvas.hovered.connect(self._on_hover)
        self.canvas.zoomChanged.connect(lambda z: self.zoom_label.setText(f"{z:.0%}"))
        self.canvas.edited.connect(self._on_edited)
        self.welcome = WelcomePanel(self)
        self.central_stack = QStackedWidget(self)
        self.central_stack.addWidget(self.welcome)
        self.central_stack.addWidget(self.canvas)
        self.setCentralWidget(self.central_stack)
        self.display = ImageDisplay(self.canvas, self)
        self.display.ready.connect(self.displayReady)
        self.display.photoFailed.connect(self._on_photo_failed)
        self.display.failed.connect(lambda message: self.statusBar().showMessage(message, 10000))
        self._space_pan = SpacePanFilter(self, self.canvas)

        self.file_model = ImageListModel(self)
        self.file_filter = ImageFilterModel(self)
        self.file_filter.setSourceModel(self.file_model)
        self.file_view = QListView()
        self.file_view.setModel(self.file_filter)
        self.file_view.setUniformItemSizes(True)
        self.file_view.setIconSize(ICON_SIZE)
        self.file_view.setItemDelegate(ImageRowDelegate(self.file_view))
        self.file_view.setSelectionMode(QListView.SingleSelection)
        self.file_view.selectionModel().currentChanged.connect(self._on_list_current)
        self.file_filter.rowsRemoved.connect(self._after_rows_removed)
        self.filter_edit = QLineEdit(placeholderText="Filter by name…", clearButtonEnabled=True)
        self._filter_timer = QTimer(self, singleShot=True, interval=FILTER_DELAY_MS, timeout=self._apply_filter)
        self.filter_edit.textChanged.connect(self._filter_timer.start)  # one refilter after typing pauses
        self.status_filter = QComboBox()
        self.status_filter.addItem("All images", None)
        for status in ImageStatus:
            self.status_filter.addItem(status.value.capitalize(), status.value)
        self.status_filter.currentIndexChanged.connect(self._apply_filter)
        self.counts_label = QLabel()
        self.sort_combo = QComboBox()
        for key, text in SORT_KEYS.items():
            self.sort_combo.addItem(text, key)
        self.sort_combo.setToolTip("Order of the list: by name, least sure first (the images to review first), or "
                                   "by status")
        self.sort_combo.currentIndexChanged.connect(self._apply_filter)
        self.subfolders_button = QToolButton()  # its action (File ▸ Include subfolders) comes with the menus
        self.subfolders_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        files = QWidget()
        layout = QVBoxLayout(files)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(self.filter_edit, 1)
        row.addWidget(self.status_filter)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Sort"))
        row.addWidget(self.sort_combo, 1)
        row.addWidget(self.subfolders_button)
        layout.addLayout(row)
        layout.addWidget(self.file_view, 1)
        layout.addWidget(self.counts_label)
        self.files_dock = self._dock("Images", files, Qt.LeftDockWidgetArea)

        self.parts_panel = PartsPanel(self)
        self.parts_panel.partsChanged.connect(self._on_parts_changed)
        self.parts_panel.visibilityChanged.connect(self._on_visibility_changed)
        self.parts_panel.activeSlotChanged.connect(self._on_active_slot)
        self.parts_panel.galleryRequested.connect(self.show_gallery)
        self.parts_dock = self._dock("Parts", self.parts_panel, Qt.RightDockWidgetArea)

        self.gallery = PartGallery(self)
        self.gallery.imageActivated.connect(self.show_image)
        self.gallery_dock = self._dock("Part gallery", self.gallery, Qt.BottomDockWidgetArea)

        self.problems = QListWidget()
        self.problems.itemActivated.connect(lambda item: self.show_image(item.data(Qt.UserRole)))
        self.problems_dock = self._dock("Problems", self.problems, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.gallery_dock, self.problems_dock)
        self.gallery_dock.raise_()
        self.resizeDocks([self.files_dock, self.parts_dock], [300, 340], Qt.Horizontal)
        self.resizeDocks([self.gallery_dock], [260], Qt.Vertical)
        self._install_first_hour()
        self._install_annotate()

    def _build_read_only_banner(self) -> None:
        """A bar above the views, shown while the project is read-only (another window holds it)."""
        self.read_only_banner = QToolBar("Read-only", self)
        self.read_only_banner.setObjectName("read_only_banner")
        self.read_only_banner.setMovable(False)
        self.read_only_banner.setFloatable(False)
        self.read_only_banner.toggleViewAction().setVisible(False)
        self.read_only_label = QLabel()
        self.read_only_label.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.read_only_label.setStyleSheet("QLabel { background: #fef3c7; color: #78350f; padding: 6px; "
                                           "font-weight: bold; }")
        self.read_only_banner.addWidget(self.read_only_label)
        self.addToolBarBreak()
        self.addToolBar(Qt.TopToolBarArea, self.read_only_banner)
        self.read_only_banner.hide()

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower())
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # ================================================================================================ folder / project
    def choose_folder(self) -> None:
        start = self.settings.recent_folders[0] if self.settings.recent_folders else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.open_folder(folder)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_folder(f))
        if not self.settings.recent_folders:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def open_folder(self, folder: str | Path, *, load_project_checkpoint: bool = True) -> bool:
        """Open (or start) the project of an image folder; new images in the folder are added, and the checkpoint
        that predicted the project is loaded again unless a model is already loaded."""
        folder = Path(folder)
        project_dir = find_project_dir(folder)
        first_time = project_dir is None
        if self.project is not None and project_dir is not None and project_dir.resolve() == \
                self.project.project_dir.resolve():
            self.close_project()  # opening it again: give our own write lock back first
        try:
            if project_dir is not None:
                project = AnnotationProject.open(folder)
                added = project.scan()
                if added:
                    logger.info("%d new images in %s", len(added), folder)
            else:
                project = AnnotationProject.create(folder)
        except (MPAEError, OSError) as exc:
            QMessageBox.critical(self, "Cannot open folder", str(exc))
            return False
        self.close_project()
        self.project = project
        self._project_opened(first_time)
        # the folder that opens this project again: its image folder, or the folder chosen when its images live
        # elsewhere (a batch run's OUT)
        own = find_project_dir(project.images_folder) == project.project_dir
        where = project.images_folder if own else folder
        self.settings.add_recent_folder(where)
        self._save_settings()
        self.file_model.set_project(project)
        self.parts_panel.set_project(project)
        self.canvas.set_parts(project.parts)
        self._fill_paint_labels()
        self._refresh_problems()
        self._refresh_counts()
        self._title_folder = where
        self._show_read_only_state()
        self._check_files_in_background()
        if len(project):
            self.show_image(project.relpaths()[0])
        else:
            self.statusBar().showMessage(self._no_images_message(folder), 10000)
        if (load_project_checkpoint and not self.session.loaded and project.checkpoint is not None
                and project.checkpoint.is_file()):
            self.load_checkpoint(project.checkpoint)
        elif self.session.loaded:
            self._review_model_fit(interactive=False)
        self._update_actions()
        return True

    @property
    def writable(self) -> bool:
        """A project is open and this window may change it (no other window holds its lock)."""
        return self.project is not None and self.project.read_only is None

    def _show_read_only_state(self) -> None:
        read_only = None if self.project is None else self.project.read_only
        title = "MPAE Annotator" if self.project is None else f"MPAE Annotator — {self._title_folder}"
        self.setWindowTitle(title + (" (read-only)" if read_only else ""))
        self.read_only_label.setText(f"Read-only: {read_only}." if read_only else "")
        self.read_only_label.setToolTip("Predicting, painting, reviewing and part changes are off while another "
                                        "window holds this project." if read_only else "")
        self.read_only_banner.setVisible(read_only is not None)

    def close_project(self) -> None:
        """Save and give the project's write lock back at once (another window or a batch run may then write it),
        not whenever the old project object happens to be collected."""
        if self.project is None:
            return
        self.cancel_prediction(wait=True)
        self.save_project()
        project, self.project = self.project, None
        try:
            project.close()  # the lock goes back even when this save fails (save_project has said why)
        except (MPAEError, OSError) as exc:
            logger.error("Could not save %s on closing it: %s", project.project_dir, exc)
        self.current = None
        self._layer = None
        self.display.clear()
        self.file_model.set_project(None)
        self.parts_panel.set_project(None)
        self.canvas.set_edit_target(None, None)
        self.canvas.set_annotation(None)
        self.canvas.set_image(None)
        self.problems.clear()
        self._project_closed()
        self._show_read_only_state()
        self._update_actions()

    def save_project(self) -> bool:
        """Save now, on this thread, after what the background saver is writing (closing, exporting, refining);
        False (and a sentence in the status bar) when it failed."""
        if self.project is None:
            return False
        try:
            self.saver.flush()
        except (MPAEError, OSError) as exc:
            self.statusBar().showMessage(f"Could not save the project: {exc}", 10000)
            logger.error("Saving failed: %s", exc)
            return False
        return True

    def _schedule_save(self, soon: bool = False) -> None:
        """Something changed: the saver writes it within ~1.5 s (``soon``: ~0.5 s), however many changes follow."""
        self.saver.schedule(soon)

    # ================================================================================================ files on disk
    def _check_files_in_background(self) -> None:
        """Stat every annotated image off the GUI thread; the few that changed are re-checked on it and flagged."""
        if self.project is not None:
            self.file_checker.check(self.project)

    def _apply_file_check(self, project: AnnotationProject, relpaths: list[str]) -> None:
        changed = []
        if project is self.project:
            changed = self.project.check_files([r for r in relpaths if r in self.project])
            for relpath in changed:
                self.file_model.refresh(relpath)
                self._refresh_problem(self.project.record(relpath))
            if changed:
                self.statusBar().showMessage(f"{len(changed)} images changed or vanished on disk since they were "
                                             "annotated; see Problems.", 10000)
        self.filesChecked.emit(changed)

    def _check_shown_file(self, relpath: str) -> None:
        """One stat of the image being shown: a file replaced or deleted since its prediction is flagged."""
        if self.project is not None and relpath in self.project and self.project.check_files([relpath]):
            self.file_model.refresh(relpath)
            self._refresh_problem(self.project.record(relpath))

    # ================================================================================================ images
    def show_image(self, relpath: str) -> None:
        """Make an image the current one; editing goes straight to its edit layer. Returns at once: a screen-sized
        preview follows within a blink and the full resolution after it (``displayReady``, ``wait_for_display``)."""
        if self.project is None or relpath not in self.project:
            return
        self._check_shown_file(relpath)
        self.current = relpath
        self._select_in_list(relpath)
        self.display.show(relpath, self.project.image_path(relpath), self._labels_of(relpath))
        self._update_actions()
        self.imageShown.emit(relpath)

    def _show_annotation(self) -> None:
        """(Re)compose the current image's labels from its prediction and edits, in the background."""
        if self.project is None or self.current is None:
            return
        self.display.show_labels(self._labels_of(self.current))

    def _on_photo_failed(self, relpath: str, message: str) -> None:
        self.statusBar().showMessage(message, 10000)
        if self.project is None or relpath not in self.project:
            return
        if self.project.record(relpath).status is not ImageStatus.ERROR:
            self.project.set_error(relpath, message)
            self.file_model.refresh(relpath)
            self._refresh_problems()

    def wait_for_display(self, timeout_ms: int = 30_000) -> bool:
        """Process events until the current image is on screen at full resolution (tests, benchmarks)."""
        return self.display.wait(timeout_ms)

    def _select_in_list(self, relpath: str) -> None:
        index = self.file_filter.index_of(relpath)
        if index.isValid() and index != self.file_view.currentIndex():
            with QSignalBlocker(self.file_view.selectionModel()):
                self.file_view.setCurrentIndex(index)
            self.file_view.scrollTo(index)

    def _apply_filter(self) -> None:
        """Refilter the list by name and status; nothing is opened: the current image stays selected if it still
        matches (typing "img_1" must not show every intermediate match on the way)."""
        with QSignalBlocker(self.file_view.selectionModel()):
            self.file_filter.set_sort_key(self.sort_combo.currentData())
            self.file_filter.set_filter(self.filter_edit.text(), self.status_filter.currentData())
        if self.current is not None:
            self._select_in_list(self.current)

    def _after_rows_removed(self) -> None:
        """A row left the filtered list by itself (its status changed): the current image stays what it is."""
        index = self.file_filter.index_of(self.current) if self.current is not None else QModelIndex()
        if index != self.file_view.currentIndex():
            with QSignalBlocker(self.file_view.selectionModel()):
                self.file_view.setCurrentIndex(index)

    def _on_list_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self.file_filter.restructuring:  # the list changed under the selection: nobody picked an image
            return
        if current.isValid():
            relpath = current.data(RelpathRole)
            if relpath != self.current:
                self.show_image(relpath)

    def _step(self, delta: int) -> None:
        """Move through the list as filtered (so 'next' skips what the filter hides)."""
        rows = self.file_filter.rowCount()
        if not rows:
            return
        index = self.file_view.currentIndex()
        row = index.row() + delta if index.isValid() else 0
        row = max(0, min(rows - 1, row))
        self.show_image(self.file_filter.index(row, 0).data(RelpathRole))

    def next_image(self) -> None:
        self._step(+1)

    def previous_image(self) -> None:
        self._step(-1)

    # ================================================================================================ dialogs
    def show_export(self) -> None:
        if self.project is None or self.project.parts is None:
            QMessageBox.information(self, "Nothing to export", "Open a folder and predict some images first.")
            return
        from .export_dialog import ExportDialog

        self.save_project()
        dialog = ExportDialog(self.project, self)
        dialog.exec()

    def show_import(self) -> None:
        from .import_dialog import show_import_dialog

        show_import_dialog(self)

    def show_train(self) -> None:
        from .train_dialog import TrainDialog

        folder = self.project.images_folder if self.project is not None else None
        dialog = TrainDialog(self, data_folder=folder, runs_dir=data_dir() / "runs", device=self.settings.device,
                             settings=self.settings)
        dialog.checkpointChosen.connect(self.load_checkpoint)
        dialog.exec()
        self._save_settings()  # the weights files chosen in the dialog

    def show_shortcuts(self) -> None:
        panels = {"parts list": self.parts_panel.shortcut_actions()}
        dialogs.ShortcutsDialog(self._actions, self, sections=panels, rows=PAINT_KEY_ROWS).exec()

    def set_theme(self, theme: str) -> None:
        self.settings.theme = theme
        apply_theme(QApplication.instance(), theme)
        self._save_settings()

    # ================================================================================================ problems list
    def _add_problem(self, relpath: str, message: str) -> None:
        """One line per image (a second failure of the same image replaces its line)."""
        self._set_problem_line(relpath, f"{relpath}: {message}", "error", "#dc2626")

    def _set_problem_line(self, relpath: str, text: str, icon_name: str, colour: str) -> None:
        for row in range(self.problems.count()):
            item = self.problems.item(row)
            if item.data(Qt.UserRole) == relpath:
                item.setText(text)
                item.setIcon(icon(icon_name, colour))
                return
        item = QListWidgetItem(icon(icon_name, colour), text)
        item.setData(Qt.UserRole, relpath)
        self.problems.addItem(item)
        self.problems_dock.setWindowTitle(f"Problems ({self.problems.count()})")

    def _remove_problem(self, relpath: str) -> None:
        for row in range(self.problems.count()):
            if self.problems.item(row).data(Qt.UserRole) == relpath:
                self.problems.takeItem(row)
                break
        self.problems_dock.setWindowTitle(f"Problems ({self.problems.count()})")

    def _refresh_problem(self, record: ImageRecord) -> None:
        """The image's line: its file changed or vanished after it was annotated, or it failed with nothing else."""
        if record.file_state is FileState.CHANGED:
            self._set_problem_line(record.relpath, f"'{record.relpath}' changed on disk after it was predicted: its "
                                   "mask may not fit; predict it again (edits are kept).", "warning", "#d97706")
        elif record.file_state is FileState.MISSING:
            self._set_problem_line(record.relpath, f"'{record.relpath}' was deleted from the folder; its annotation "
                                   "is kept in the project, put the file back to see it again.", "warning", "#d97706")
        elif record.status is ImageStatus.ERROR:
            self._add_problem(record.relpath, record.error or "unknown error")
        else:
            self._remove_problem(record.relpath)

    def _refresh_problems(self) -> None:
        self.problems.clear()
        if self.project is not None:
            for record in self.project.records():
                if record.status is ImageStatus.ERROR or record.file_state is not FileState.UNCHANGED:
                    self._refresh_problem(record)
        self.problems_dock.setWindowTitle(f"Problems ({self.problems.count()})")

    # ================================================================================================ state
    def _update_actions(self) -> None:
        has_project = self.project is not None
        has_image = has_project and self.current is not None
        writable = self.writable
        loaded = self.session.loaded
        busy = self._predict_thread is not None
        can_predict = writable and loaded and not busy and self._model_refusal is None
        self.act_predict.setEnabled(has_image and can_predict)
        self.act_predict_all.setEnabled(can_predict)
        self.act_repredict_all.setEnabled(can_predict)
        self._explain_prediction_refusal()
        self.act_cancel.setEnabled(busy)
        self.act_export.setEnabled(has_project)
        self.act_import.setEnabled(writable and not busy)
        self.act_load.setEnabled(self._load_thread is None and not busy)
        self._enable_editing(writable or not has_project)
        layer = self._current_layer() if has_image and writable else None
        self.act_undo.setEnabled(layer is not None and layer.can_undo)
        self.act_redo.setEnabled(layer is not None and layer.can_redo)
        self.act_clear_edits.setEnabled(layer is not None and layer.has_edits)
        status = self.project.record(self.current).status if has_image else None
        self.act_reviewed.setEnabled(writable and status in (ImageStatus.PREDICTED, ImageStatus.EDITED,
                                                             ImageStatus.REVIEWED))
        self.act_reviewed.setChecked(status is ImageStatus.REVIEWED)
        self._update_refine_action()

    def _restore_layout(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))

    def _save_settings(self) -> None:
        if self.save_settings:
            self.settings.save()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True  # answers of workers still queued (a model that loaded or failed) are dropped
        self.cancel_prediction(wait=True)
        self.display.shutdown()
        self.canvas.shutdown()
        if self._load_thread is not None:
            self._load_thread.wait()
        self.close_project()  # saves synchronously and releases the write lock
        self.saver.shutdown()
        self.file_checker.shutdown()
        self.session.unload()
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self._save_settings()
        event.accept()

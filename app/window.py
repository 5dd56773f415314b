"""The main window: file list, canvas, parts panel, gallery and problems docks, menus, toolbars and status bar.

It wires views to the ``mpae_core`` annotation project and to the workers; it holds no model maths and no file
formats. The project is touched only on this (GUI) thread: workers send predictions back through signals.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QModelIndex, QSignalBlocker, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QComboBox, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QListView, QListWidget, QListWidgetItem, QMainWindow, QMessageBox, QProgressBar,
                               QPushButton, QSlider, QSpinBox, QToolBar, QVBoxLayout, QWidget)

from mpae_core.annotation import AnnotationProject, ImageStatus, PartTable
from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL
from mpae_core.annotation.project import find_project_dir
from mpae_core.errors import MPAEError
from mpae_core.images import ImageLoadError, load_image

from . import dialogs
from .canvas import ImageCanvas
from .file_list import ICON_SIZE, ImageFilterModel, ImageListModel, ImageRowDelegate, RelpathRole
from .gallery import PartGallery
from .icons import icon
from .model_session import LoadRequest, ModelSession, available_devices
from .overlay import OverlayStyle, pil_to_qimage
from .parts_panel import PartsPanel
from .settings import AppSettings, data_dir
from .theme import apply_theme
from .workers import ModelLoadWorker, PredictionSummary, PredictionWorker, start_worker

logger = logging.getLogger(__name__)

AUTOSAVE_MS = 1500
STATUS_REFRESH_MS = 2000


class MainWindow(QMainWindow):
    """MPAE Annotator's window; ``open_folder``, ``load_checkpoint`` and ``predict_all`` are also its test API."""

    imageShown = Signal(str)
    modelLoaded = Signal(str)  # checkpoint path
    modelFailed = Signal(str)  # message
    predictionFinished = Signal(object)  # PredictionSummary

    def __init__(self, settings: AppSettings | None = None, *, save_settings: bool = True) -> None:
        super().__init__()
        self.settings = settings or AppSettings.load()
        self.save_settings = save_settings
        self.project: AnnotationProject | None = None
        self.session = ModelSession()
        self.current: str | None = None
        self._prediction_labels: np.ndarray | None = None
        self._confidence: np.ndarray | None = None
        self._load_thread: QThread | None = None
        self._load_worker: ModelLoadWorker | None = None
        self._predict_thread: QThread | None = None
        self._predict_worker: PredictionWorker | None = None
        self._after_load: list = []
        self._actions: list[QAction] = []
        self.setWindowTitle("MPAE Annotator")
        self.setWindowIcon(icon("checkpoint"))
        self._build_views()
        self._build_actions()
        self._build_menus_and_toolbars()
        self._build_status_bar()
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_MS, timeout=self.save_project)
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
        self.setCentralWidget(self.canvas)

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
        self.filter_edit = QLineEdit(placeholderText="Filter by name…", clearButtonEnabled=True)
        self.filter_edit.textChanged.connect(self.file_filter.setFilterFixedString)
        self.status_filter = QComboBox()
        self.status_filter.addItem("All images", None)
        for status in ImageStatus:
            self.status_filter.addItem(status.value.capitalize(), status.value)
        self.status_filter.currentIndexChanged.connect(
            lambda _: self.file_filter.set_status(self.status_filter.currentData()))
        self.counts_label = QLabel()
        files = QWidget()
        layout = QVBoxLayout(files)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(self.filter_edit, 1)
        row.addWidget(self.status_filter)
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

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower())
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, icon_name: str | None = None, checkable: bool = False,
                tip: str | None = None) -> QAction:
        action = QAction(text, self)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setCheckable(checkable)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(f"{tip} ({action.shortcut().toString()})" if action.shortcuts() else tip)
        action.triggered.connect(slot)
        self.addAction(action)
        self._actions.append(action)
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.act_open = a("&Open folder…", self.choose_folder, QKeySequence.Open, "open_folder", tip="Open a folder of images")
        self.act_load = a("&Load checkpoint…", self.choose_checkpoint, "Ctrl+L", "checkpoint",
                          tip="Load an MPAE checkpoint (.safetensors or the authors' .pth)")
        self.act_export = a("&Export…", self.show_export, "Ctrl+E", "export", tip="Export PNG masks and/or COCO")
        self.act_quit = a("&Quit", self.close, QKeySequence.Quit)
        self.act_predict = a("&Predict image", self.predict_current, "Ctrl+P", "predict", tip="Predict the current image")
        self.act_predict_all = a("Predict &all", lambda: self.predict_all(), "Ctrl+Shift+P", "predict_all",
                                 tip="Predict every image that has no prediction yet, in the background")
        self.act_repredict_all = a("Re-predict every image", lambda: self.predict_all(only_missing=False), None)
        self.act_cancel = a("&Cancel prediction", self.cancel_prediction, "Esc", "cancel", tip="Stop after this batch")
        self.act_train = a("&Train a model…", self.show_train, None, "train",
                           tip="Train MPAE on this folder or a dataset")
        self.act_prev = a("Previous image", self.previous_image, ["A", "Left"], "previous", tip="Previous image")
        self.act_next = a("Next image", self.next_image, ["D", "Right"], "next", tip="Next image")
        self.act_undo = a("&Undo", self.undo, QKeySequence.Undo, "undo", tip="Undo the last edit")
        self.act_redo = a("&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "redo", tip="Redo")
        self.act_reviewed = a("Mark &reviewed", self.toggle_reviewed, "R", "reviewed", checkable=True,
                              tip="Mark the image reviewed (checked by a person)")
        self.act_clear_edits = a("Clear edits of this image", self.clear_edits, None)
        self.act_fit = a("Zoom to &fit", lambda: self.canvas.zoom_fit(), "F", "zoom_fit", tip="Fit the image")
        self.act_actual = a("Zoom &100 %", lambda: self.canvas.zoom_actual(), "1", "zoom_actual", tip="Actual pixels")
        self.act_zoom_in = a("Zoom in", lambda: self.canvas.zoom_by(1.25), QKeySequence.ZoomIn, "zoom_in")
        self.act_zoom_out = a("Zoom out", lambda: self.canvas.zoom_by(0.8), QKeySequence.ZoomOut, "zoom_out")
        self.act_outline = a("&Outline only", self._on_style_toggles, "O", "outline", checkable=True,
                             tip="Draw part outlines instead of filled masks")
        self.act_heatmap = a("Confidence &heat map", self._on_style_toggles, "H", "heatmap", checkable=True,
                             tip="Colour pixels by how sure the model is")
        self.act_overlay = a("Show &overlay", self._on_style_toggles, "V", "visible", checkable=True,
                             tip="Show or hide the part overlay")
        self.act_overlay.setChecked(True)
        self.act_shortcuts = a("&Keyboard shortcuts", self.show_shortcuts, "F1", "help")
        self.act_about = a("&About", lambda: dialogs.show_about(self, self.session.describe()), None, "info")

        self.tool_group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for name, text, key in (("pan", "Pan", "P"), ("brush", "Brush", "B"), ("eraser", "Eraser (back to "
                                "prediction)", "E"), ("fill", "Fill", "G")):
            action = a(text, lambda _=False, n=name: self.set_tool(n), key, name, checkable=True, tip=text)
            self.tool_group.addAction(action)
            self.tool_actions[name] = action
        self.tool_actions["pan"].setChecked(True)
        self.act_bigger = a("Bigger brush", lambda: self.brush_size.stepBy(2), "]")
        self.act_smaller = a("Smaller brush", lambda: self.brush_size.stepBy(-2), "[")

    def _build_menus_and_toolbars(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.act_open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addAction(self.act_load)
        file_menu.addSeparator()
        file_menu.addAction(self.act_export)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit = menu.addMenu("&Edit")
        for action in (self.act_undo, self.act_redo, None, *self.tool_actions.values(), self.act_bigger,
                       self.act_smaller, None, self.act_reviewed, self.act_clear_edits):
            edit.addSeparator() if action is None else edit.addAction(action)
        view = menu.addMenu("&View")
        for action in (self.act_prev, self.act_next, None, self.act_fit, self.act_actual, self.act_zoom_in,
                       self.act_zoom_out, None, self.act_overlay, self.act_outline, self.act_heatmap):
            view.addSeparator() if action is None else view.addAction(action)
        view.addSeparator()
        theme_menu = view.addMenu("&Theme")
        self.theme_group = QActionGroup(self)
        for theme in ("system", "light", "dark"):
            action = theme_menu.addAction(theme.capitalize())
            action.setCheckable(True)
            action.setChecked(theme == self.settings.theme)
            action.triggered.connect(lambda _=False, t=theme: self.set_theme(t))
            self.theme_group.addAction(action)
        view.addSeparator()
        for dock in (self.files_dock, self.parts_dock, self.gallery_dock, self.problems_dock):
            view.addAction(dock.toggleViewAction())
        model = menu.addMenu("&Model")
        for action in (self.act_load, None, self.act_predict, self.act_predict_all, self.act_repredict_all,
                       self.act_cancel, None, self.act_train):
            model.addSeparator() if action is None else model.addAction(action)
        model.addSeparator()
        self.device_menu = model.addMenu("&Device")
        self.device_group = QActionGroup(self)
        for device, label in available_devices():
            action = self.device_menu.addAction(label)
            action.setCheckable(True)
            action.setData(device)
            action.setChecked(device == self.settings.device)
            action.triggered.connect(lambda _=False, d=device: self.set_device(d))
            self.device_group.addAction(action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.act_shortcuts)
        help_menu.addAction(self.act_about)

        main = QToolBar("Main", self)
        main.setObjectName("main_toolbar")
        main.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        for action in (self.act_open, self.act_load, None, self.act_predict, self.act_predict_all, self.act_cancel,
                       None, self.act_export, self.act_train):
            main.addSeparator() if action is None else main.addAction(action)
        self.addToolBar(main)

        self.addToolBarBreak()
        tools = QToolBar("Tools", self)
        tools.setObjectName("tools_toolbar")
        for action in self.tool_actions.values():
            tools.addAction(action)
        tools.addWidget(QLabel(" Size "))
        self.brush_size = QSpinBox(minimum=1, maximum=500, value=self.settings.brush_radius, suffix=" px")
        self.brush_size.setToolTip("Brush radius in image pixels ([ and ])")
        self.brush_size.valueChanged.connect(self._on_brush_size)
        tools.addWidget(self.brush_size)
        tools.addWidget(QLabel(" Paint "))
        self.paint_label = QComboBox()
        self.paint_label.setToolTip("The part the brush and fill paint with")
        self.paint_label.setMinimumContentsLength(14)
        self.paint_label.currentIndexChanged.connect(self._on_paint_label)
        tools.addWidget(self.paint_label)
        tools.addSeparator()
        for action in (self.act_undo, self.act_redo, self.act_reviewed):
            tools.addAction(action)
        self.addToolBar(tools)

        view_bar = QToolBar("View", self)
        view_bar.setObjectName("view_toolbar")
        for action in (self.act_prev, self.act_next, None, self.act_fit, self.act_actual, None, self.act_overlay,
                       self.act_outline, self.act_heatmap):
            view_bar.addSeparator() if action is None else view_bar.addAction(action)
        view_bar.addWidget(QLabel(" Opacity "))
        self.opacity = QSlider(Qt.Horizontal, minimum=0, maximum=100,
                               value=int(round(self.settings.overlay_opacity * 100)))
        self.opacity.setFixedWidth(120)
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.valueChanged.connect(self._on_style_toggles)
        view_bar.addWidget(self.opacity)
        self.addToolBar(view_bar)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.hover_label = QLabel()
        self.zoom_label = QLabel()
        self.device_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setFormat("%v / %m")
        self.rate_label = QLabel()
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.clicked.connect(self.cancel_prediction)
        bar.addWidget(self.hover_label, 1)
        for widget in (self.progress, self.rate_label, self.cancel_button):
            bar.addPermanentWidget(widget)
            widget.hide()
        bar.addPermanentWidget(self.zoom_label)
        bar.addPermanentWidget(self.device_label)

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
        try:
            if find_project_dir(folder) is not None:
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
        self.settings.add_recent_folder(project.images_folder)
        self._save_settings()
        self.file_model.set_project(project)
        self.parts_panel.set_project(project)
        self.canvas.set_parts(project.parts)
        self._fill_paint_labels()
        self._refresh_problems()
        self._refresh_counts()
        self.setWindowTitle(f"MPAE Annotator — {project.images_folder}")
        if len(project):
            self.show_image(project.relpaths()[0])
        else:
            self.statusBar().showMessage(f"No images found in {folder}", 8000)
        if (load_project_checkpoint and not self.session.loaded and project.checkpoint is not None
                and project.checkpoint.is_file()):
            self.load_checkpoint(project.checkpoint)
        self._update_actions()
        return True

    def close_project(self) -> None:
        if self.project is None:
            return
        self.cancel_prediction(wait=True)
        self.save_project()
        self.project = None
        self.current = None
        self.file_model.set_project(None)
        self.parts_panel.set_project(None)
        self.canvas.set_edit_target(None, None)
        self.canvas.set_annotation(None)
        self.canvas.set_image(None)
        self.problems.clear()

    def save_project(self) -> None:
        if self.project is None:
            return
        try:
            self.project.save()
        except (MPAEError, OSError) as exc:
            self.statusBar().showMessage(f"Could not save the project: {exc}", 10000)
            logger.error("Autosave failed: %s", exc)

    def _schedule_save(self) -> None:
        self._autosave.start()

    # ================================================================================================ images
    def show_image(self, relpath: str) -> None:
        """Show an image with its prediction and edits; editing goes straight to its edit layer."""
        if self.project is None or relpath not in self.project:
            return
        self.current = relpath
        self._select_in_list(relpath)
        record = self.project.record(relpath)
        try:
            image = load_image(self.project.image_path(relpath))
            self.canvas.set_image(pil_to_qimage(image))
        except ImageLoadError as exc:
            self.canvas.set_image(None)
            self.statusBar().showMessage(str(exc), 10000)
            if record.status is not ImageStatus.ERROR:
                self.project.set_error(relpath, str(exc))
                self.file_model.refresh(relpath)
                self._refresh_problems()
        self._show_annotation()
        self.canvas.zoom_fit()
        self._update_actions()
        self.imageShown.emit(relpath)

    def _show_annotation(self) -> None:
        """(Re)compose the current image's labels from its prediction and edits."""
        self._prediction_labels = self._confidence = None
        layer = None
        if self.project is not None and self.current is not None:
            try:
                prediction = self.project.prediction(self.current)
                if prediction is not None:
                    self._prediction_labels = prediction.label_map()
                    self._confidence = prediction.confidence_map()
                    layer = self.project.edits(self.current)
            except MPAEError as exc:
                self.statusBar().showMessage(str(exc), 10000)
        self.canvas.set_edit_target(layer, self._prediction_labels)
        if layer is not None:
            self.canvas.set_annotation(layer.composed(self._prediction_labels), self._confidence)
        else:
            self.canvas.set_annotation(None)

    def _select_in_list(self, relpath: str) -> None:
        row = self.file_model.row_of(relpath)
        if row < 0:
            return
        index = self.file_filter.mapFromSource(self.file_model.index(row))
        if index.isValid() and index != self.file_view.currentIndex():
            with QSignalBlocker(self.file_view.selectionModel()):
                self.file_view.setCurrentIndex(index)
            self.file_view.scrollTo(index)

    def _on_list_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
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

    # ================================================================================================ model
    def choose_checkpoint(self) -> None:
        start = self.settings.last_checkpoint or ""
        path, _ = QFileDialog.getOpenFileName(self, "Load an MPAE checkpoint", start,
                                              "MPAE checkpoints (*.safetensors *.pth *.pt);;All files (*)")
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str | Path, backbone_weights: str | Path | None = None) -> bool:
        """Load on a worker thread; ``modelLoaded`` or ``modelFailed`` follows. The old model is freed first."""
        if self._load_thread is not None:
            self.statusBar().showMessage("A model is already loading; wait for it to finish.", 5000)
            return False
        if self._predict_thread is not None:
            self.statusBar().showMessage("Cancel the running prediction before switching models.", 5000)
            return False
        weights = backbone_weights or self.settings.backbone_weights
        request = LoadRequest(Path(path), device=self.settings.device,
                              backbone_weights=Path(weights) if weights else None)
        self.session.unload()
        self._refresh_device_status()
        self.device_label.setText(f"Loading {Path(path).name}…")
        worker = ModelLoadWorker(request)
        worker.loaded.connect(self._on_model_loaded)
        worker.failed.connect(self._on_model_failed)
        self._load_worker = worker  # PySide deletes an unreferenced QObject, and its run would never start
        self._load_thread = start_worker(worker, self)
        self._load_thread.finished.connect(self._on_load_thread_done)
        self._update_actions()
        return True

    def after_model_loaded(self, callback) -> None:
        """Run ``callback`` once the model that is loading now is ready (at once if one is loaded and idle)."""
        if self._load_thread is None and self.session.loaded:
            callback()
        else:
            self._after_load.append(callback)

    def _on_load_thread_done(self) -> None:
        self._load_thread = None
        self._load_worker = None
        self._refresh_device_status()
        self._update_actions()

    def _on_model_loaded(self, predictor, request: LoadRequest) -> None:
        self.session.attach(predictor, request.checkpoint)
        self.settings.last_checkpoint = str(request.checkpoint)
        if request.backbone_weights is not None:
            self.settings.backbone_weights = str(request.backbone_weights)
        self._save_settings()
        self._refresh_device_status()
        parts = self.project.parts if self.project is not None else None
        if parts is not None and parts.num_parts != self.session.num_parts:
            QMessageBox.warning(
                self, "Checkpoint does not fit this project",
                f"'{request.checkpoint.name}' has {self.session.num_parts} part slots, but this project's part "
                f"table has {parts.num_parts}; its predictions cannot be stored here. Load the project's checkpoint "
                "or open another folder.")
        self.statusBar().showMessage(f"Loaded {request.checkpoint.name} on {predictor.device}", 5000)
        self.modelLoaded.emit(str(request.checkpoint))
        self._update_actions()
        pending, self._after_load = self._after_load, []
        for callback in pending:
            callback()

    def _on_model_failed(self, kind: str, message: str, request: LoadRequest) -> None:
        self._refresh_device_status()
        if kind == "backbone":
            chosen = dialogs.ask_backbone_weights(self, message)
            if chosen is not None:
                QTimer.singleShot(0, lambda: self.load_checkpoint(request.checkpoint, backbone_weights=chosen))
                return
        else:
            QMessageBox.critical(self, "Cannot load the checkpoint", message)
        self._after_load = []
        self.modelFailed.emit(message)

    def set_device(self, device: str) -> None:
        """Use another device; a loaded model is reloaded there (and its old memory freed)."""
        self.settings.device = device
        self._save_settings()
        for action in self.device_group.actions():
            action.setChecked(action.data() == device)
        if self.session.loaded and self.session.checkpoint is not None:
            self.load_checkpoint(self.session.checkpoint)

    def _refresh_device_status(self) -> None:
        if self._load_thread is None:
            self.device_label.setText(self.session.describe())

    # ================================================================================================ prediction
    def predict_current(self) -> None:
        if self.current is not None:
            self._start_prediction([self.current])

    def predict_all(self, only_missing: bool = True) -> None:
        """Predict in the background every image without a prediction (or every image)."""
        if self.project is None:
            return
        records = list(self.project.records())
        wanted = [r.relpath for r in records if not only_missing or not r.has_prediction]
        if not wanted:
            self.statusBar().showMessage("Every image already has a prediction (Model ▸ Re-predict every image "
                                         "to redo them).", 8000)
            return
        self._start_prediction(wanted)

    def _start_prediction(self, relpaths: list[str]) -> None:
        if self.project is None or not self.session.loaded:
            QMessageBox.information(self, "No model", "Load a checkpoint first (Model ▸ Load checkpoint).")
            return
        if self._predict_thread is not None:
            self.statusBar().showMessage("A prediction run is already going.", 5000)
            return
        if self.project.parts is None:
            info = self.session.model.info
            self.project.set_parts(PartTable.from_model_info(info.part_names, info.part_colors))
            self._on_parts_changed()
        self.project.set_checkpoint(self.session.checkpoint)
        items = [(r, self.project.image_path(r)) for r in relpaths]
        worker = PredictionWorker(self.session.predictor, items, batch_size=self.settings.batch_size)
        worker.predicted.connect(self._on_predicted)
        worker.imageFailed.connect(self._on_image_failed)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_prediction_finished)
        self._predict_worker = worker
        self.progress.setRange(0, len(items))
        self.progress.setValue(0)
        self.rate_label.setText("starting…")
        for widget in (self.progress, self.rate_label, self.cancel_button):
            widget.show()
        self._predict_thread = start_worker(worker, self)
        self._predict_thread.finished.connect(self._on_predict_thread_done)
        self._update_actions()

    def cancel_prediction(self, wait: bool = False) -> None:
        """Stop the run after the current batch (``wait``: block until the thread has ended, e.g. on close)."""
        if self._predict_worker is not None:
            self._predict_worker.cancel()
            self.rate_label.setText("cancelling…")
        if wait and self._predict_thread is not None:
            self._predict_thread.wait()
            QApplication.processEvents()

    def _on_predicted(self, relpath: str, prediction) -> None:
        if self.project is None:
            return
        try:
            self.project.set_prediction(relpath, prediction)
        except MPAEError as exc:
            self._on_image_failed(relpath, str(exc))
            return
        self.file_model.refresh(relpath)
        if not self._counts_timer.isActive():  # counts are O(images): at most once a second during a run
            self._counts_timer.start()
        self._schedule_save()
        if relpath == self.current:
            self._show_annotation()
            self._update_actions()

    def _on_image_failed(self, relpath: str, message: str) -> None:
        if self.project is None:
            return
        self.project.set_error(relpath, message)
        self.file_model.refresh(relpath)
        self._add_problem(relpath, message)
        self._schedule_save()

    def _on_progress(self, done: int, total: int, rate: float, left: float) -> None:
        self.progress.setValue(done)
        eta = "" if left < 0 else f" · {int(left // 60)}:{int(left % 60):02d} left"
        self.rate_label.setText(f"{rate:.1f} images/s{eta}")

    def _on_prediction_finished(self, summary: PredictionSummary) -> None:
        for widget in (self.progress, self.rate_label, self.cancel_button):
            widget.hide()
        what = "Cancelled" if summary.cancelled else "Done"
        failed = f", {summary.failed} failed (see Problems)" if summary.failed else ""
        self.statusBar().showMessage(f"{what}: {summary.done} of {summary.total} images predicted{failed} in "
                                     f"{summary.seconds:.1f} s", 10000)
        self.save_project()
        self._refresh_counts()
        self.predictionFinished.emit(summary)

    def _on_predict_thread_done(self) -> None:
        self._predict_thread = None
        self._predict_worker = None
        self._update_actions()

    @property
    def loading(self) -> bool:
        return self._load_thread is not None

    @property
    def predicting(self) -> bool:
        return self._predict_thread is not None

    # ================================================================================================ parts and view
    def _on_parts_changed(self) -> None:
        parts = self.project.parts if self.project is not None else None
        self.canvas.set_parts(parts)
        self.canvas.refresh_overlay()
        self._fill_paint_labels()
        self._schedule_save()

    def _refresh_counts(self) -> None:
        if self.project is None:
            self.counts_label.clear()
            return
        counts = self.project.status_counts()
        self.counts_label.setText(" · ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no images")
        self.parts_panel.refresh()

    def _on_visibility_changed(self, hidden) -> None:
        self.canvas.set_style(dataclasses.replace(self.canvas.style(), hidden_slots=frozenset(hidden)))

    def _on_style_toggles(self, *_args) -> None:
        self.settings.overlay_opacity = self.opacity.value() / 100.0
        opacity = self.settings.overlay_opacity if self.act_overlay.isChecked() else 0.0
        self.canvas.set_style(dataclasses.replace(self.canvas.style(), opacity=opacity,
                                                  outline_only=self.act_outline.isChecked(),
                                                  heatmap=self.act_heatmap.isChecked()))

    def show_gallery(self, slot: int) -> None:
        if self.project is None:
            return
        self.gallery_dock.show()
        self.gallery_dock.raise_()
        self.gallery.show_part(self.project, slot)

    def _fill_paint_labels(self) -> None:
        """Paint choices: background, each visible root part by name, ignore; keeps the current choice."""
        current = self.paint_label.currentData()
        if self.paint_label.count() <= 2:  # only background/ignore so far: the first part is the better default
            current = None
        with QSignalBlocker(self.paint_label):
            self.paint_label.clear()
            self.paint_label.addItem("Background", BACKGROUND)
            parts = self.project.parts if self.project is not None else None
            if parts is not None:
                for slot in range(parts.num_parts):
                    if parts.root(slot) == slot and not parts.is_ignored(slot):
                        self.paint_label.addItem(icon("brush", "#%02x%02x%02x" % tuple(parts.display_color(slot))),
                                                 parts.display_name(slot), slot + 1)
            self.paint_label.addItem("Ignore (255)", IGNORE_LABEL)
            index = self.paint_label.findData(current)
            self.paint_label.setCurrentIndex(index if index >= 0 else min(1, self.paint_label.count() - 1))
        self.canvas.set_active_label(self.paint_label.currentData())

    def _on_paint_label(self, _index: int) -> None:
        label = self.paint_label.currentData()
        if label is not None:
            self.canvas.set_active_label(label)

    def _on_active_slot(self, slot: int) -> None:
        if slot < 0 or self.project is None or self.project.parts is None:
            return
        index = self.paint_label.findData(self.project.parts.root(slot) + 1)
        if index >= 0:
            self.paint_label.setCurrentIndex(index)

    def _on_brush_size(self, value: int) -> None:
        self.settings.brush_radius = value
        self.canvas.set_brush_radius(value)

    def set_tool(self, name: str) -> None:
        self.tool_actions[name].setChecked(True)
        self.canvas.set_tool(name)

    def _on_hover(self, text: str) -> None:
        self.hover_label.setText(text)

    # ================================================================================================ editing
    def _current_layer(self):
        if self.project is None or self.current is None or self._prediction_labels is None:
            return None
        return self.project.edits(self.current)

    def _on_edited(self) -> None:
        if self.current is not None:
            self.file_model.refresh(self.current)
        self._schedule_save()
        self._update_actions()

    def undo(self) -> None:
        layer = self._current_layer()
        if layer is not None and layer.undo():
            self._after_history_change(layer)

    def redo(self) -> None:
        layer = self._current_layer()
        if layer is not None and layer.redo():
            self._after_history_change(layer)

    def _after_history_change(self, layer) -> None:
        self.canvas.set_annotation(layer.composed(self._prediction_labels), self._confidence)
        self._on_edited()

    def clear_edits(self) -> None:
        layer = self._current_layer()
        if layer is not None and layer.has_edits:
            layer.clear()
            self._after_history_change(layer)

    def toggle_reviewed(self) -> None:
        if self.project is None or self.current is None:
            return
        record = self.project.record(self.current)
        try:
            self.project.mark_reviewed(self.current, record.status is not ImageStatus.REVIEWED)
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 5000)
        self.file_model.refresh(self.current)
        self._refresh_counts()
        self._schedule_save()
        self._update_actions()

    # ================================================================================================ dialogs
    def show_export(self) -> None:
        if self.project is None or self.project.parts is None:
            QMessageBox.information(self, "Nothing to export", "Open a folder and predict some images first.")
            return
        from .export_dialog import ExportDialog

        self.save_project()
        dialog = ExportDialog(self.project, self)
        dialog.exec()

    def show_train(self) -> None:
        from .train_dialog import TrainDialog

        folder = self.project.images_folder if self.project is not None else None
        dialog = TrainDialog(self, data_folder=folder, runs_dir=data_dir() / "runs", device=self.settings.device)
        dialog.checkpointChosen.connect(self.load_checkpoint)
        dialog.exec()

    def show_shortcuts(self) -> None:
        dialogs.ShortcutsDialog(self._actions, self).exec()

    def set_theme(self, theme: str) -> None:
        self.settings.theme = theme
        apply_theme(QApplication.instance(), theme)
        self._save_settings()

    # ================================================================================================ problems list
    def _add_problem(self, relpath: str, message: str) -> None:
        """One line per image (a second failure of the same image replaces its line)."""
        for row in range(self.problems.count()):
            if self.problems.item(row).data(Qt.UserRole) == relpath:
                self.problems.item(row).setText(f"{relpath}: {message}")
                return
        item = QListWidgetItem(icon("error", "#dc2626"), f"{relpath}: {message}")
        item.setData(Qt.UserRole, relpath)
        self.problems.addItem(item)
        self.problems_dock.setWindowTitle(f"Problems ({self.problems.count()})")

    def _refresh_problems(self) -> None:
        self.problems.clear()
        if self.project is not None:
            for record in self.project.records():
                if record.status is ImageStatus.ERROR:
                    self._add_problem(record.relpath, record.error or "unknown error")
        self.problems_dock.setWindowTitle(f"Problems ({self.problems.count()})")

    # ================================================================================================ state
    def _update_actions(self) -> None:
        has_project = self.project is not None
        has_image = has_project and self.current is not None
        loaded = self.session.loaded
        busy = self._predict_thread is not None
        self.act_predict.setEnabled(has_image and loaded and not busy)
        self.act_predict_all.setEnabled(has_project and loaded and not busy)
        self.act_repredict_all.setEnabled(has_project and loaded and not busy)
        self.act_cancel.setEnabled(busy)
        self.act_export.setEnabled(has_project)
        self.act_load.setEnabled(self._load_thread is None and not busy)
        layer = self._current_layer() if has_image else None
        self.act_undo.setEnabled(layer is not None and layer.can_undo)
        self.act_redo.setEnabled(layer is not None and layer.can_redo)
        self.act_clear_edits.setEnabled(layer is not None and layer.has_edits)
        status = self.project.record(self.current).status if has_image else None
        self.act_reviewed.setEnabled(status in (ImageStatus.PREDICTED, ImageStatus.EDITED, ImageStatus.REVIEWED))
        self.act_reviewed.setChecked(status is ImageStatus.REVIEWED)

    def _restore_layout(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        if self.settings.window_state:
            self.restoreState(QByteArray.fromBase64(self.settings.window_state.encode()))

    def _save_settings(self) -> None:
        if self.save_settings:
            self.settings.save()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.cancel_prediction(wait=True)
        if self._load_thread is not None:
            self._load_thread.wait()
        self.close_project()
        self.session.unload()
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()
        self._save_settings()
        event.accept()

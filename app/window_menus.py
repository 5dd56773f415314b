"""The main window's actions, menus, toolbars and status bar (a mixin of ``MainWindow``)."""
from __future__ import annotations


from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QSlider, QSpinBox, QToolBar


from . import dialogs
from .icons import icon
from .model_session import available_devices
from .paint_combo import PaintLabelCombo
from .window_annotate import TOOL_TEXTS



class MenusMixin:
    """Builds every QAction once, with its shortcut and tip, and places it in menus and toolbars."""

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
        self.act_subfolders = a("Include &subfolders", self.set_include_subfolders, None, "subfolders", checkable=True,
                                tip="List the images in subfolders too (remembered per folder)")
        self.act_subfolders.setChecked(self.settings.include_subfolders)
        self.act_subfolders.setIconText("Subfolders")
        self.act_export = a("&Export…", self.show_export, "Ctrl+E", "export", tip="Export PNG masks and/or COCO")
        self.act_import = a("&Import…", self.show_import, "Ctrl+I", "import",
                            tip="Import annotations (COCO, PNG label maps, VOC, labelme, YOLO, CVAT) as your own layer")
        self.act_quit = a("&Quit", self.close, QKeySequence.Quit)
        self.act_predict = a("&Predict image", self.predict_current, "Ctrl+P", "predict", tip="Predict the current image")
        self.act_predict_all = a("Predict &all", lambda: self.predict_all(), "Ctrl+Shift+P", "predict_all",
                                 tip="Predict every image that has no prediction yet, in the background")
        self.act_repredict_all = a("Re-predict every image…", self.repredict_all, None,
                                   tip="Predict images again (asks first; edits and reviewed marks are kept)")
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
        self.act_actual = a("Zoom &100 %", lambda: self.canvas.zoom_actual(), "Ctrl+1", "zoom_actual",
                            tip="Actual pixels (the number keys choose the paint label)")
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
        for name, key in (("pan", "P"), ("brush", "B"), ("eraser", "E"), ("fill", "G")):
            text, tip = TOOL_TEXTS[name]
            action = a(text, lambda _=False, n=name: self.set_tool(n), key, name, checkable=True, tip=tip)
            self.tool_group.addAction(action)
            self.tool_actions[name] = action
        self.tool_actions["pan"].setChecked(True)
        self.act_bigger = a("Bigger brush", lambda: self.brush_size.stepBy(2), "]")
        self.act_smaller = a("Smaller brush", lambda: self.brush_size.stepBy(-2), "[")
        self._build_paint_key_actions()
        self._build_refine_actions()

    def _build_menus_and_toolbars(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.act_open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addAction(self.act_subfolders)
        self.subfolders_button.setDefaultAction(self.act_subfolders)
        file_menu.addAction(self.act_load)
        file_menu.addSeparator()
        file_menu.addAction(self.act_import)
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
        self._add_refine_menu(model)
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
        self.paint_label = PaintLabelCombo()
        self.paint_label.setToolTip("The label the brush and fill paint with: keys 1–9 the parts, Shift+1–9 your "
                                    "labels, 0 background, - don't care")
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


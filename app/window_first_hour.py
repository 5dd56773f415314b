"""What a new user meets first (a mixin of ``MainWindow``): the welcome panel while no folder is open, the demo,
the "include subfolders" choice, and the context menus of the image list and the canvas.

The parts panel builds its own context menu (``PartsPanel.context_menu``); the canvas's menu is installed from
here through Qt's custom context menu signal, so the canvas itself knows nothing about menus.
"""
from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QPoint, QSignalBlocker, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMenu, QMessageBox, QWidget

from mpae_core.annotation import ImageStatus
from mpae_core.errors import MPAEError

from .file_list import RelpathRole
from .icons import icon
from .label_keys import label_key, painted_value

REVIEWABLE = (ImageStatus.PREDICTED, ImageStatus.EDITED, ImageStatus.REVIEWED)


class FirstHourMixin:
    """Welcome panel, demo, subfolders and context menus; the window calls ``_install_first_hour`` once."""

    def _install_first_hour(self) -> None:
        self.welcome.openFolderRequested.connect(self.choose_folder)
        self.welcome.recentRequested.connect(self.open_folder)
        self.welcome.loadCheckpointRequested.connect(self.choose_checkpoint)
        self.welcome.demoRequested.connect(self.start_demo)
        self.welcome.set_recent(self.settings.recent_folders)
        self.central_stack.setCurrentWidget(self.welcome)
        for widget, build in ((self.file_view, self.image_menu_at), (self.canvas, self.canvas_menu)):
            widget.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            widget.customContextMenuRequested.connect(
                lambda pos, w=widget, b=build: self._popup(b(pos), w.viewport(), pos))

    @staticmethod
    def _popup(menu: QMenu | None, viewport: QWidget, pos: QPoint) -> None:
        if menu is not None:
            menu.exec(viewport.mapToGlobal(pos))

    # ================================================================================================ open / close
    def _project_opened(self, first_time: bool) -> None:
        """A folder was opened: a new one takes the remembered subfolder choice; the canvas replaces the welcome."""
        if first_time and self.settings.include_subfolders and not self.project.recursive:
            self.project.scan(recursive=True)
            self._schedule_save()
        with QSignalBlocker(self.act_subfolders):
            self.act_subfolders.setChecked(self.project.recursive)
        self.central_stack.setCurrentWidget(self.canvas)

    def _project_closed(self) -> None:
        self.gallery.clear()
        with QSignalBlocker(self.act_subfolders):  # back to what a folder opened for the first time gets
            self.act_subfolders.setChecked(self.settings.include_subfolders)
        self.welcome.set_recent(self.settings.recent_folders)
        self.central_stack.setCurrentWidget(self.welcome)
        self._refresh_counts()

    def _subfolders_note(self) -> str:
        return "subfolders included" if self.project is not None and self.project.recursive else "top folder only"

    def _no_images_message(self, folder: Path) -> str:
        """Why the list is empty, and the way out when the images sit in subfolders."""
        if self.project is not None and not self.project.recursive:
            try:
                subfolders = any(p.is_dir() and not p.name.startswith(".") for p in Path(folder).iterdir())
            except OSError:
                subfolders = False
            if subfolders:
                return (f"No images in the top folder of {folder}; to list those of its subfolders, turn on "
                        "File ▸ Include subfolders.")
        return f"No images found in {folder}."

    def set_include_subfolders(self, include: bool) -> None:
        """List the images of subfolders too (or stop looking there); the project remembers it, and it is the
        default for folders opened for the first time."""
        self.settings.include_subfolders = bool(include)
        self._save_settings()
        if self.project is None or self.project.recursive == bool(include):
            return
        if self.project.read_only is not None:
            with QSignalBlocker(self.act_subfolders):
                self.act_subfolders.setChecked(self.project.recursive)
            self.statusBar().showMessage(f"This folder's list cannot change: {self.project.read_only}.", 10000)
            return
        added = self.project.scan(recursive=bool(include))
        self.file_model.set_project(self.project)
        if self.current is not None:
            self._select_in_list(self.current)
        self._refresh_counts()
        self._schedule_save()
        if include:
            message = f"Subfolders included: {len(added)} more image{'' if len(added) == 1 else 's'}."
        else:
            nested = sum(1 for r in self.project.relpaths() if "/" in r)
            message = "Subfolders are no longer searched for new images" + (
                f"; the {nested} images already listed from them stay, with their work." if nested else ".")
        self.statusBar().showMessage(message, 10000)
        if self.current is None and len(self.project):
            self.show_image(self.project.relpaths()[0])

    # ================================================================================================ demo
    def start_demo(self) -> bool:
        """What ``mpae-annotate --demo`` does: open a copy of the demo images, load the demo model, predict all."""
        from .gui import prepare_demo

        try:
            images, checkpoint = prepare_demo()
        except (MPAEError, OSError) as exc:
            QMessageBox.critical(self, "Demo unavailable", str(exc))
            return False
        if not self.open_folder(images, load_project_checkpoint=False):
            return False
        if self.load_checkpoint(checkpoint):
            self.after_model_loaded(self.predict_all)
        return True

    # ================================================================================================ image list menu
    def image_menu_at(self, pos: QPoint) -> QMenu | None:
        index = self.file_view.indexAt(pos)
        return None if not index.isValid() else self.image_menu(self.file_filter.data(index, RelpathRole))

    def image_menu(self, relpath: str) -> QMenu:
        """Commands for one image of the list (not necessarily the one shown)."""
        record = self.project.record(relpath)
        menu = QMenu(self)
        menu.addAction(icon("open_folder"), "Open", lambda: self.show_image(relpath))
        predict = menu.addAction(icon("predict"), "Predict this image", lambda: self._start_prediction([relpath]))
        predict.setEnabled(self.act_predict_all.isEnabled())  # a model that fits, a writable project, idle
        reviewed = menu.addAction(icon("reviewed"), "Reviewed", lambda: self.toggle_reviewed(relpath=relpath))
        reviewed.setCheckable(True)
        reviewed.setChecked(record.status is ImageStatus.REVIEWED)
        reviewed.setEnabled(self.writable and record.status in REVIEWABLE)
        clear = menu.addAction("Clear edits (Ctrl+Z brings them back)", lambda: self._clear_edits_of(relpath))
        clear.setEnabled(self.writable and record.has_edits)
        menu.addSeparator()
        path = self.project.image_path(relpath)
        menu.addAction("Show in file manager",
                       lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent))))
        menu.addAction("Copy path", lambda: QGuiApplication.clipboard().setText(str(path)))
        return menu

    def _clear_edits_of(self, relpath: str) -> None:
        """Open the image, then clear its edits as Edit ▸ Clear edits does: undoable, and in plain sight."""
        self.show_image(relpath)
        if self.current == relpath:
            if self._layer is None and self.project.record(relpath).has_edits:
                self._layer = self.project.edits(relpath)  # still on its way from disk: read it now, once
            self.clear_edits()

    # ================================================================================================ canvas menu
    def canvas_menu(self, pos: QPoint) -> QMenu:
        """Tools, the paint label (with the one under the cursor first), review, zoom and overlay toggles."""
        menu = QMenu(self)
        for action in (self.act_undo, self.act_redo):
            menu.addAction(action)
        menu.addSeparator()
        for action in self.tool_actions.values():
            menu.addAction(action)
        picked = self._paint_index_at(pos)
        if picked is not None:
            menu.addAction(self.paint_label.itemIcon(picked), f"Paint with {self.paint_label.itemText(picked)} "
                           "(under the cursor)", lambda: self.paint_label.setCurrentIndex(picked))
        labels = menu.addMenu("Paint with")
        for index in range(self.paint_label.count()):
            key = label_key(self.paint_label.itemData(index)) or self.paint_label.item_number(index)
            text = f"{self.paint_label.itemText(index)}\t{key}"  # the key in the menu's shortcut column
            action = labels.addAction(self.paint_label.itemIcon(index), text,
                                      lambda i=index: self.paint_label.setCurrentIndex(i))
            action.setCheckable(True)
            action.setChecked(index == self.paint_label.currentIndex())
        menu.addSeparator()
        menu.addAction(self.act_reviewed)
        menu.addSeparator()
        for action in (self.act_fit, self.act_overlay, self.act_outline, self.act_heatmap):
            menu.addAction(action)
        return menu

    def _paint_index_at(self, pos: QPoint) -> int | None:
        """The paint list's entry for the label under ``pos`` (viewport coordinates), or None."""
        labels = self.canvas.labels()
        if labels is None:
            return None
        scene = self.canvas.mapToScene(pos)
        x, y = math.floor(scene.x()), math.floor(scene.y())
        if not (0 <= y < labels.shape[0] and 0 <= x < labels.shape[1]):
            return None
        parts = self.project.parts if self.project is not None else None
        index = self.paint_label.findData(painted_value(parts, int(labels[y, x])))  # a merged slot: its group
        return index if index >= 0 else None

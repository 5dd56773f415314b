"""Annotating beyond the model (a mixin of ``MainWindow``): painting images that have no prediction, the keys that
choose the paint label, what the eraser and the fill do, and a sentence whenever a paint tool painted nothing.

An image without a prediction is background under the person's edits. Its size comes from its photo (the display
decodes it anyway), which the project records so that the image gets an edit layer; it turns "edited" with the first
stroke and exports like any other. A stored edit layer is read on a worker and handed to the project here.
"""
from __future__ import annotations

import dataclasses
import functools

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox, QWidget

from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL, USER_LABEL_BASE
from mpae_core.annotation.parts import part_number
from mpae_core.errors import MPAEError
from mpae_core.inference import PartPrediction

from .display import LabelSource
from .label_keys import BACKGROUND_KEY, DONT_CARE_KEY, KEYED_LABELS, USER_PREFIX

#: tool → (menu text, what it does); the eraser's words change on an image without prediction.
TOOL_TEXTS = {
    "pan": ("Pan", "Pan: drag to move the image (Space-drag pans with any tool)"),
    "brush": ("Brush", "Brush: paint with the chosen label (the number keys choose it)"),
    "eraser": ("Erase edits (back to the prediction)", "Eraser: takes your edits away, so the model's prediction "
               "shows again; to mark background, paint with Background (0)"),
    "fill": ("Fill", "Fill one region with the chosen label: one click, then the tool before it is back"),
}
ERASER_WITHOUT_PREDICTION = ("Erase edits (back to background)", "Eraser: takes your edits away; this image has no "
                             "prediction, so erased pixels are background again")
#: The paint keys, as the shortcuts list shows them.
PAINT_KEY_ROWS = [
    (f"Paint with part 1 … {KEYED_LABELS} (the parts panel's numbers)", f"1 … {KEYED_LABELS}"),
    (f"Paint with your label {USER_PREFIX}1 … {USER_PREFIX}{KEYED_LABELS}", f"Shift+1 … Shift+{KEYED_LABELS}"),
    ("Paint background", BACKGROUND_KEY),
    ("Paint don't care (255)", DONT_CARE_KEY),
]


def ask_to_fill(parent: QWidget, text: str) -> bool:
    """Ask before a fill covers most of the image; True to fill."""
    box = QMessageBox(QMessageBox.Icon.Question, "Fill most of the image?", text, parent=parent)
    fill = box.addButton("Fill", QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(box.addButton(QMessageBox.StandardButton.Cancel))
    box.exec()
    return box.clickedButton() is fill


class AnnotateMixin:
    """Images without prediction, paint keys, tool meanings and refusals; ``_install_annotate`` wires it once.
    It comes before ``EditingMixin`` among the window's bases: its ``_on_edited`` extends that one."""

    def _install_annotate(self) -> None:
        self._paint_block: str | None = None  # why the shown image cannot be painted (its photo or edits failed)
        self.display.sizeKnown.connect(self._on_size_known)
        self.display.photoFailed.connect(
            lambda relpath, message: self._block_painting(relpath, f"the image cannot be read: {message}"))
        self.display.failed.connect(lambda message: self._block_painting(self.current, message))
        self.canvas.paintRefused.connect(self._on_paint_refused)
        self.canvas.toolChanged.connect(self.set_tool)
        self.canvas.confirm_fill = self._confirm_fill
        users = self.parts_panel.user_labels
        users.hiddenChanged.connect(self._on_user_visibility)
        users.activeValueChanged.connect(self._on_active_value)
        users.galleryRequested.connect(self.show_user_label_gallery)

    # ================================================================================================ labels
    def _labels_of(self, relpath: str) -> LabelSource | None:
        """What the image's labels are made of: its prediction, or background when it has none (at its photo's
        size), and its edit layer (read on a worker when it is stored on disk)."""
        self._paint_block = None
        self._layer = None
        try:
            prediction = self.project.prediction(relpath)
        except MPAEError as exc:
            self.statusBar().showMessage(str(exc), 10000)
            self._block_painting(relpath, str(exc))
            return None
        self._describe_eraser(prediction is not None)
        size = self.project.record(relpath).size
        if prediction is None and size is None:
            return LabelSource()  # its size comes with the photo: _on_size_known
        return self._with_layer(relpath, prediction, None if prediction is not None else size)

    def _with_layer(self, relpath: str, prediction: PartPrediction | None,
                    size: tuple[int, int] | None) -> LabelSource:
        try:
            load = self.project.edits_loader(relpath)
            if load is None:
                self._layer = self.project.edits(relpath)  # cached, or nothing stored: cheap
                return LabelSource(prediction, layer=self._layer, size=size)
        except MPAEError as exc:
            self._block_painting(relpath, str(exc))
            return LabelSource(prediction, size=size)
        return LabelSource(prediction, load_layer=load, install=functools.partial(self._install_layer, relpath),
                           size=size)

    def _install_layer(self, relpath: str, layer: EditLayer) -> EditLayer:
        """A stored edit layer was read on a worker: the project takes it, and painting goes to it."""
        installed = self.project.install_edit_layer(relpath, layer)
        if relpath == self.current:
            self._layer = installed
            self._update_actions()
        return installed

    def _on_size_known(self, relpath: str, size: tuple[int, int]) -> None:
        """The photo of an image without prediction was decoded: the project learns its size (saved with the next
        change), so it gets an edit layer over a background base."""
        if self.project is None or relpath != self.current:
            return
        if self.project.read_only is not None:  # nothing may be painted or recorded: show it as it is
            self.display.show_labels(LabelSource(size=size))
            return
        try:
            self.project.add_image(relpath, size)
        except MPAEError as exc:
            self._block_painting(relpath, str(exc))
            self.statusBar().showMessage(str(exc), 10000)
            self.display.show_labels(LabelSource(size=size))
            return
        self.display.show_labels(self._with_layer(relpath, None, size))
        self._update_actions()

    def _on_edited(self) -> None:
        """After the editing mixin's: the counts (status line, parts and labels panels) follow within a second."""
        super()._on_edited()  # type: ignore[misc]
        self._counts_timer.start()

    # ================================================================================================ refusals
    def _block_painting(self, relpath: str | None, reason: str) -> None:
        if relpath is not None and relpath == self.current:
            self._paint_block = reason.rstrip(".")

    def _on_paint_refused(self, reason: str) -> None:
        """A paint tool painted nothing: the status bar says why (the window's reason first, then the canvas's)."""
        relpath = self.current
        if self.project is None or relpath is None:
            text = "Open a folder of images first: there is nothing to paint on."
        elif self.project.read_only is not None:
            text = f"Cannot paint on {relpath}: this project is read-only here ({self.project.read_only})."
        elif self._paint_block:
            text = f"Cannot paint on {relpath}: {self._paint_block}."
        elif self._layer is None and self.display.busy():
            text = f"Nothing painted on {relpath}: it is still being read; paint once it is shown."
        else:
            text = f"Nothing painted on {relpath}: {reason}."
        self.statusBar().showMessage(text, 10000)

    def _confirm_fill(self, fraction: float, label: int) -> bool:
        index = self.paint_label.findData(label)
        name = self.paint_label.numbered_text(index) if index >= 0 else str(label)
        return ask_to_fill(self, f"This fill paints {fraction:.0%} of {self.current} with {name}. Fill it anyway? "
                                 "(Ctrl+Z undoes it.)")

    # ================================================================================================ tools
    def _describe_eraser(self, has_prediction: bool) -> None:
        """The eraser goes back to the prediction, or to background on an image that has none: its words say so."""
        text, tip = TOOL_TEXTS["eraser"] if has_prediction else ERASER_WITHOUT_PREDICTION
        action = self.tool_actions["eraser"]
        action.setText(text)
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} (E)")

    def _tool_status(self, name: str) -> str:
        """The status-bar sentence for a tool just chosen."""
        label = self.paint_label.numbered_text(self.paint_label.currentIndex())
        if name == "brush":
            return (f"Brush: paints with {label}; the number keys choose the label (0 background, "
                    f"{DONT_CARE_KEY} don't care, Shift+1… your labels).")
        if name == "fill":
            before = self.tool_actions[self.canvas.tool_before_fill()].text()
            return f"Fill: click a region to fill it with {label}; then the {before} tool is back."
        if name == "eraser":
            return self.tool_actions["eraser"].statusTip() + "."
        return TOOL_TEXTS[name][1] + "."

    # ================================================================================================ paint keys
    def _build_paint_key_actions(self) -> None:
        """1–9 the parts, Shift+1–9 the person's own labels, 0 background, - don't care."""
        self.paint_key_actions: list[QAction] = []
        for number in range(1, KEYED_LABELS + 1):
            self._paint_key(str(number), functools.partial(self.paint_with_part, number))
            self._paint_key(f"Shift+{number}", functools.partial(self.paint_with_user_label, number))
        self._paint_key(BACKGROUND_KEY, functools.partial(self.paint_with, BACKGROUND))
        self._paint_key(DONT_CARE_KEY, functools.partial(self.paint_with, IGNORE_LABEL))

    def _paint_key(self, key: str, slot) -> None:
        action = QAction(f"Paint with {key}", self)
        action.setShortcut(QKeySequence(key))
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        self.paint_key_actions.append(action)

    def paint_with_part(self, number: int) -> bool:
        """Choose part ``number`` (the panel's numbering; a merged part paints as its group's root)."""
        parts = self.project.parts if self.project is not None else None
        if parts is None or not 1 <= number <= parts.num_parts:
            have = f"parts 1–{parts.num_parts}" if parts is not None and parts.num_parts else "no parts yet"
            self.statusBar().showMessage(f"There is no part {number}: this project has {have}.", 8000)
            return False
        root = parts.root(number - 1)
        if parts.is_background(root):
            self.statusBar().showMessage(
                f"Part {part_number(root)} ({parts.display_name(root)}) is exported as background: paint with "
                f"{BACKGROUND_KEY} (Background), or export it as its own label again in the parts panel.", 8000)
            return False
        merged = f" (part {number} is merged into it)" if root != number - 1 else ""
        return self.paint_with(root + 1, merged)

    def paint_with_user_label(self, number: int) -> bool:
        """Choose the person's own label ⇧``number``."""
        parts = self.project.parts if self.project is not None else None
        value = USER_LABEL_BASE + number - 1
        if parts is None or not parts.has_value(value):
            self.statusBar().showMessage(f"There is no label {USER_PREFIX}{number} yet: add your own labels with "
                                         "“Add label…” in the parts panel.", 8000)
            return False
        if parts.value_is_background(value):
            self.statusBar().showMessage(f"{parts.value_name(value)} is exported as background: paint with "
                                         f"{BACKGROUND_KEY} (Background), or untick its “As bg”.", 8000)
            return False
        return self.paint_with(value)

    def paint_with(self, value: int, note: str = "") -> bool:
        """Make ``value`` the paint label; the pan tool and the eraser give way to the brush."""
        index = self.paint_label.findData(value)
        if index < 0:
            self.statusBar().showMessage("Open a folder first: there is nothing to paint on.", 8000)
            return False
        self.paint_label.setCurrentIndex(index)
        if self.canvas.tool() in ("pan", "eraser"):
            self.set_tool("brush")
        tool = self.tool_actions[self.canvas.tool()].text()
        self.statusBar().showMessage(f"{tool}: painting with {self.paint_label.numbered_text(index)}{note}.", 8000)
        return True

    # ================================================================================================ user labels
    def _on_active_value(self, value: int) -> None:
        index = self.paint_label.findData(value)
        if index >= 0:
            self.paint_label.setCurrentIndex(index)

    def _on_user_visibility(self, hidden) -> None:
        self.canvas.set_style(dataclasses.replace(self.canvas.style(), hidden_user_labels=frozenset(hidden)))

    def show_user_label_gallery(self, value: int) -> None:
        if self.project is None:
            return
        self.gallery_dock.show()
        self.gallery_dock.raise_()
        self.gallery.show_user_label(self.project, value)

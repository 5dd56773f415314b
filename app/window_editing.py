"""The part view and painting: overlay style, paint labels, tools, undo/redo, review (a mixin of ``MainWindow``)."""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import QSignalBlocker

from mpae_core.annotation import ImageStatus


class EditingMixin:
    """How parts are shown and painted on the current image, and its review mark."""

    # ================================================================================================ parts and view
    def _on_parts_changed(self) -> None:
        parts = self.project.parts if self.project is not None else None
        self.canvas.set_parts(parts)  # re-renders the overlay (a large one in the background)
        self._fill_paint_labels()
        self._schedule_save()

    def _refresh_counts(self) -> None:
        if self.project is None:
            self._status_counts = {}
            self.counts_label.clear()
            return
        counts = self.project.status_counts()
        self._status_counts = counts  # what the actions that need corrected images read (see window_refine)
        text = " · ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no images"
        self.counts_label.setText(f"{text} · {self._subfolders_note()}")
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
        """Paint choices: background, each root part, the person's own labels, don't care, each with its number;
        keeps the current choice."""
        current = self.paint_label.currentData()
        if self.paint_label.count() <= 2:  # only background/don't care so far: the first part is the better default
            current = None
        with QSignalBlocker(self.paint_label):
            self.paint_label.set_choices(self.project.parts if self.project is not None else None)
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
        self.statusBar().showMessage(self._tool_status(name), 8000)

    def _on_hover(self, text: str) -> None:
        self.hover_label.setText(text)

    # ================================================================================================ editing
    def _current_layer(self):
        """The current image's edit layer (None without a prediction: there is nothing to edit yet)."""
        if self.project is None or self.current is None:
            return None
        return self._layer

    def _on_edited(self) -> None:
        if self.current is not None:
            self.file_model.refresh(self.current)
        self._schedule_save(soon=True)  # a finished stroke is on disk within ~0.5 s
        self._update_actions()

    def _enable_editing(self, enabled: bool) -> None:
        """Painting tools, the paint label and part-table changes (off while the project is read-only)."""
        for name, action in self.tool_actions.items():
            action.setEnabled(enabled or name == "pan")
        if not enabled and self.canvas.tool() != "pan":
            self.set_tool("pan")
        self.paint_label.setEnabled(enabled)
        self.parts_panel.set_read_only(not enabled)

    def undo(self) -> None:
        layer = self._current_layer()
        if layer is not None and layer.undo():
            self._after_history_change(layer)

    def redo(self) -> None:
        layer = self._current_layer()
        if layer is not None and layer.redo():
            self._after_history_change(layer)

    def _after_history_change(self, layer) -> None:
        self.canvas.recompose(layer.changed_box)  # only the box the step touched
        self._on_edited()

    def clear_edits(self) -> None:
        layer = self._current_layer()
        if self.writable and layer is not None and layer.has_edits:
            layer.clear()
            self._after_history_change(layer)

    def toggle_reviewed(self, _checked: bool = False, relpath: str | None = None) -> None:
        """Mark the current image (or ``relpath``) reviewed, or not reviewed when it is."""
        relpath = relpath or self.current
        if not self.writable or relpath is None:
            return
        record = self.project.record(relpath)
        try:
            self.project.mark_reviewed(relpath, record.status is not ImageStatus.REVIEWED)
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 5000)
        self.file_model.refresh(relpath)
        self._refresh_counts()
        self._schedule_save()
        self._update_actions()


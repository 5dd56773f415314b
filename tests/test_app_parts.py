"""The parts panel and the part gallery over a small predicted project (K=4; image i lacks part i % 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QItemSelectionModel, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from app.gallery import PartGallery, crop_part  # noqa: E402
from app.parts_panel import (  # noqa: E402
    COL_COLOR,
    COL_COUNT,
    COL_GALLERY,
    COL_BACKGROUND,
    COL_NAME,
    COL_VISIBLE,
    PartsPanel,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def panel(qtbot, predicted_project):
    widget = PartsPanel()
    qtbot.addWidget(widget)
    widget.set_project(predicted_project)
    widget.resize(360, 400)
    return widget


def _cell(panel: PartsPanel, row: int, col: int, role=Qt.ItemDataRole.DisplayRole):
    return panel.model.data(panel.model.index(row, col), role)


def _select(panel: PartsPanel, *slots: int) -> None:
    panel.select_slot(slots[0])
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for slot in slots[1:]:
        panel.view.selectionModel().select(panel.model.index(panel.model.row_of(slot), 0), flags)


def _activate(qtbot, widget) -> None:
    """Show and activate a window: shortcuts and the in-place editor need focus (offscreen too)."""
    from PySide6.QtWidgets import QApplication

    widget.show()
    qtbot.waitExposed(widget)
    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget, timeout=2000)


def test_lists_parts_with_counts(panel, predicted_project):
    counts = predicted_project.part_image_counts()
    assert panel.model.rowCount() == 4
    assert [_cell(panel, r, COL_NAME) for r in range(4)] == ["part_01", "part_02", "part_03", "part_04"]
    assert [int(_cell(panel, r, COL_COUNT)) for r in range(4)] == [int(c) for c in counts]
    assert list(counts) != [6, 6, 6, 6]  # each image lacks one part, so the counts say something
    assert _cell(panel, 0, COL_COLOR, Qt.ItemDataRole.EditRole) == QColor(*predicted_project.parts.display_color(0))


def test_rename_in_place(qtbot, panel, predicted_project):
    index = panel.model.index(2, COL_NAME)
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        assert panel.model.setData(index, "  wing ")
    assert predicted_project.parts.display_name(2) == "wing"
    assert _cell(panel, 2, COL_NAME) == "wing"
    assert not panel.error_label.isVisibleTo(panel)


@pytest.mark.parametrize("bad", ["", "part_01", "background", "a\tb"])
def test_invalid_rename_keeps_old_name(qtbot, panel, predicted_project, bad):
    index = panel.model.index(2, COL_NAME)
    with qtbot.assertNotEmitted(panel.partsChanged):
        assert not panel.model.setData(index, bad)
    assert predicted_project.parts.display_name(2) == "part_03"
    assert panel.error_label.isVisibleTo(panel) and panel.error_label.text()


def test_recolor_through_model(qtbot, panel, predicted_project):
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        assert panel.model.setData(panel.model.index(1, COL_COLOR), QColor("#123456"))
    assert predicted_project.parts.display_color(1) == (0x12, 0x34, 0x56)


def test_merge_and_unmerge(qtbot, panel, predicted_project):
    parts = predicted_project.parts
    records = list(predicted_project.records())
    either = sum(1 for r in records if r.has_prediction and {1, 3} & set(r.present))
    assert either > max(predicted_project.part_image_counts()[[1, 3]])  # the merged count is a union, not a max

    _select(panel, 3, 1)
    assert panel.merge_button.isEnabled()
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        panel.merge_selected()
    assert parts.root(3) == 1 and parts.root(1) == 1  # into the lowest selected slot
    assert [panel.model.row_slot(r) for r in range(panel.model.rowCount())] == [0, 1, 3, 2]
    assert panel.model.is_member_row(2)
    assert int(_cell(panel, 1, COL_COUNT)) == either
    assert "part_04" in _cell(panel, 2, COL_NAME)
    assert panel.active_slot() == 1

    panel.select_slot(3)
    assert panel.unmerge_button.isEnabled()
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        panel.unmerge_selected()
    assert parts.root(3) == 3
    assert [panel.model.row_slot(r) for r in range(4)] == [0, 1, 2, 3]
    assert [int(_cell(panel, r, COL_COUNT)) for r in range(4)] == list(predicted_project.part_image_counts())


def test_unmerge_root_splits_group_and_merge_needs_two(qtbot, panel, predicted_project):
    parts = predicted_project.parts
    panel.select_slot(0)
    assert not panel.merge_button.isEnabled() and not panel.unmerge_button.isEnabled()
    _select(panel, 0, 2, 3)
    panel.merge_selected()
    assert parts.members(0) == [0, 2, 3]
    panel.select_slot(0)
    panel.unmerge_selected()
    assert all(parts.root(s) == s for s in range(4))


def test_ignore_toggle(qtbot, panel, predicted_project):
    parts = predicted_project.parts
    panel.select_slot(2)
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        panel.toggle_background_selected()
    assert parts.is_background(2)
    assert _cell(panel, 2, COL_BACKGROUND, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    _activate(qtbot, panel)
    panel.view.setFocus()
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        qtbot.keyClick(panel.view, Qt.Key.Key_I)
    assert not parts.is_background(2)
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):
        qtbot.keyClick(panel.view, Qt.Key.Key_Delete)
    assert parts.is_background(2)
    # the checkbox, as a click would set it
    assert panel.model.setData(panel.model.index(0, COL_BACKGROUND), Qt.CheckState.Checked.value,
                               Qt.ItemDataRole.CheckStateRole)
    assert parts.is_background(0)


def test_f2_starts_rename(qtbot, panel, predicted_project):
    from PySide6.QtWidgets import QApplication, QLineEdit

    _activate(qtbot, panel)
    panel.select_slot(1)
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_F2)
    editor = QApplication.focusWidget()
    assert isinstance(editor, QLineEdit) and editor.text() == "part_02"
    editor.setText("tail")
    with qtbot.waitSignal(panel.partsChanged, timeout=1000):  # the delegate commits on a queued call
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert predicted_project.parts.display_name(1) == "tail"


def test_visibility_toggle_emits_hidden_set(qtbot, panel, predicted_project):
    with qtbot.waitSignal(panel.visibilityChanged, timeout=1000) as blocker:
        panel.model.setData(panel.model.index(1, COL_VISIBLE), False)
    assert blocker.args == [frozenset({1})]
    assert panel.hidden_slots() == frozenset({1})
    # clicking the eye toggles it back
    panel.show()
    qtbot.waitExposed(panel)
    rect = panel.view.visualRect(panel.model.index(1, COL_VISIBLE))
    with qtbot.waitSignal(panel.visibilityChanged, timeout=1000) as blocker:
        qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [frozenset()]
    # a hidden group hides its merged members too
    panel.set_slot_hidden(0, True)
    _select(panel, 0, 3)
    with qtbot.waitSignal(panel.visibilityChanged, timeout=1000) as blocker:
        panel.merge_selected()
    assert blocker.args == [frozenset({0, 3})]


def test_active_slot_and_gallery_request(qtbot, panel):
    with qtbot.waitSignal(panel.activeSlotChanged, timeout=1000) as blocker:
        panel.select_slot(2)
    assert blocker.args == [2] and panel.active_slot() == 2
    with qtbot.waitSignal(panel.galleryRequested, timeout=1000) as blocker:
        panel.gallery_button.click()
    assert blocker.args == [2]
    with qtbot.waitSignal(panel.activeSlotChanged, timeout=1000) as blocker:
        panel.view.clearSelection()
    assert blocker.args == [-1] and panel.active_slot() is None
    panel.show()
    qtbot.waitExposed(panel)
    rect = panel.view.visualRect(panel.model.index(3, COL_GALLERY))
    with qtbot.waitSignal(panel.galleryRequested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [3]


def test_panel_without_project(qtbot, panel):
    with qtbot.waitSignal(panel.activeSlotChanged, timeout=1000):
        panel.select_slot(1)
    panel.set_project(None)
    assert panel.model.rowCount() == 0 and panel.active_slot() is None and panel.hidden_slots() == frozenset()
    panel.merge_selected()
    panel.toggle_background_selected()
    panel.refresh()


def test_panel_screenshot(qtbot, panel, predicted_project):
    predicted_project.parts.rename(0, "head")
    predicted_project.parts.merge([3], 1)
    predicted_project.parts.set_as_background(2)
    panel.refresh()
    panel.set_slot_hidden(0, True)
    panel.select_slot(1)
    panel.show()
    qtbot.waitExposed(panel)
    ARTIFACTS.mkdir(exist_ok=True)
    assert panel.grab().save(str(ARTIFACTS / "parts_panel.png"))


def test_crop_part_tints_part_and_dims_rest():
    image = np.full((40, 60, 3), 200, np.uint8)
    from PIL import Image

    labels = np.zeros((20, 30), np.uint16)  # half resolution
    labels[5:10, 10:20] = 3
    rgb, area = crop_part(Image.fromarray(image), labels, [2], (255, 0, 0), thumb=64)
    assert area == pytest.approx(50 / 600)
    assert max(rgb.shape[:2]) == 64
    centre = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2]
    assert centre[0] > centre[1] + 50  # tinted red
    assert rgb[0, 0].max() < 150  # dimmed outside
    assert crop_part(Image.fromarray(image), labels, [0], (255, 0, 0)) is None


def test_gallery_tiles_only_where_part_present(qtbot, predicted_project):
    gallery = PartGallery()
    qtbot.addWidget(gallery)
    gallery.resize(700, 500)
    slot = 1
    present = {r.relpath for r in predicted_project.records() if slot in r.present}
    assert 0 < len(present) < len(predicted_project)
    with qtbot.waitSignal(gallery.loadFinished, timeout=10000):
        gallery.show_part(predicted_project, slot)
    qtbot.waitUntil(lambda: not gallery.is_busy(), timeout=5000)
    tiles = gallery.tile_relpaths()
    assert set(tiles) == present
    assert gallery.title_label.text() == f"2 part_02 · {len(present)} images"  # the panel's number first
    assert all(not gallery.grid.item(i).icon().isNull() for i in range(gallery.grid.count()))

    gallery.show()
    qtbot.waitExposed(gallery)
    item = gallery.grid.item(0)
    rect = gallery.grid.visualItemRect(item)
    with qtbot.waitSignal(gallery.imageActivated, timeout=1000) as blocker:
        qtbot.mouseClick(gallery.grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [item.data(Qt.ItemDataRole.UserRole)]
    ARTIFACTS.mkdir(exist_ok=True)
    assert gallery.grab().save(str(ARTIFACTS / "gallery.png"))


def test_gallery_merged_group_broken_image_and_cancel(qtbot, predicted_project, caplog):
    parts = predicted_project.parts
    parts.merge([3], 1)
    broken = predicted_project.relpaths()[0]
    predicted_project.image_path(broken).write_bytes(b"not an image")
    gallery = PartGallery()
    qtbot.addWidget(gallery)
    gallery.show_part(predicted_project, 0, max_crops=2)  # replaced at once: its tiles must not show up
    with qtbot.waitSignal(gallery.loadFinished, timeout=10000):
        gallery.show_part(predicted_project, 3)
    qtbot.waitUntil(lambda: not gallery.is_busy(), timeout=5000)
    either = {r.relpath for r in predicted_project.records() if {1, 3} & set(r.present)}
    assert set(gallery.tile_relpaths()) == either
    assert gallery.title_label.text().startswith("2 part_02 · ")  # a member shows its group (number: its root)
    broken_items = [gallery.grid.item(i) for i in range(gallery.grid.count())
                    if gallery.grid.item(i).data(Qt.ItemDataRole.UserRole) == broken]
    assert broken_items and "cannot read" in broken_items[0].text()
    assert any("Gallery skips" in r.getMessage() for r in caplog.records)


def test_gallery_without_part(qtbot):
    gallery = PartGallery()
    qtbot.addWidget(gallery)
    with qtbot.waitSignal(gallery.loadFinished, timeout=1000):
        gallery.show_part(None, 0)
    assert gallery.grid.count() == 0 and not gallery.is_busy()

"""Annotating beyond the model (issue 11, item 3): images without a prediction are painted and exported, the person's
own labels live beside the model's parts (panel, paint list, overlay, hover, gallery, export, reopen), number keys
choose the paint label, the eraser and the fill say what they do (the fill is one click and asks before flooding most
of the image), one numbering everywhere, a paint tool that paints nothing says why, and a stored edit layer is read
off the GUI thread."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from conftest import make_predicted_project, show_main_window  # noqa: E402
from mpae_core.annotation import AnnotationProject, ImageStatus  # noqa: E402
from mpae_core.annotation.export import export_png  # noqa: E402
from mpae_core.annotation.labels import BACKGROUND, IGNORE_LABEL, UNSET, USER_LABEL_BASE  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TAIL = (230, 20, 200)  # the colour of the user label the tests add


pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)


@pytest.fixture
def window(qtbot):
    win = show_main_window(qtbot)
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=2000)
    yield win
    win.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three predicted 128x96 images (K=4) and two that no model has seen: new.png, and broken.png (not an image)."""
    project = make_predicted_project(tmp_path / "images", num_images=3)
    project.close()
    pixels = np.random.default_rng(5).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "images" / "new.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png at all")
    return tmp_path / "images"


def opened(window, folder: Path, relpath: str):
    assert window.open_folder(folder, load_project_checkpoint=False)
    window.show_image(relpath)
    assert window.wait_for_display()
    return window.project


def drag(qtbot, canvas, points) -> None:
    viewport = canvas.viewport()
    positions = [canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)) for x, y in points]
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=positions[0])
    for pos in positions[1:]:
        qtbot.mouseMove(viewport, pos)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=positions[-1])


def overlay_rgb(canvas, x: int, y: int) -> tuple[int, int, int]:
    assert canvas.wait_for_overlay()
    colour = canvas.overlay_image().pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()


def press(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, key, modifier)


def add_label(window, monkeypatch, name: str = "tail", color=TAIL) -> int | None:
    """Parts panel ▸ "Add label…", the dialog answered with ``name`` and ``color``; the new label's value."""
    action = next((a for a in window.parts_panel.context_menu(QPoint(-1, -1)).actions() if a.text() == "Add label…"),
                  None)
    assert action is not None, "the parts panel offers no way to add a label"
    from app.user_labels_panel import AddLabelDialog

    def fill_in(dialog):
        dialog.name_edit.setText(name)
        dialog.color.setRgb(*color)
        dialog.accept()
        return dialog.result()

    monkeypatch.setattr(AddLabelDialog, "exec", fill_in)
    parts = window.project.parts
    before = set() if parts is None else {u.value for u in parts.user_labels}
    action.trigger()
    added = {u.value for u in window.project.parts.user_labels} - before
    return added.pop() if added else None


def answer_questions(monkeypatch, button: str) -> list[str]:
    """Every QMessageBox is answered with the button called ``button``; returns the questions' texts."""
    asked: list[str] = []

    def answer(box):
        asked.append(box.text())
        next(b for b in box.buttons() if b.text().replace("&", "") == button).click()
        return box.result()

    monkeypatch.setattr(QMessageBox, "exec", answer)
    return asked


# ----- images without a prediction ---------------------------------------------------------------------------------
def test_a_new_image_is_painted_over_background_edited_undone_filled_reviewed_and_exported(qtbot, window, folder,
                                                                                         tmp_path):
    project = opened(window, folder, "new.png")
    assert project.record("new.png").status is ImageStatus.NEW
    labels = window.canvas.labels()
    assert labels is not None and labels.shape == (96, 128) and not labels.any()  # background everywhere
    assert project.record("new.png").size == (96, 128)  # known from its photo, so it has an edit layer

    window.set_tool("brush")
    window.brush_size.setValue(4)
    window.paint_with_part(2)
    drag(qtbot, window.canvas, [(20, 30), (60, 30)])
    layer = project.edits("new.png")
    assert layer.data[30, 40] == 2 and window.canvas.labels()[30, 40] == 2
    assert project.record("new.png").status is ImageStatus.EDITED
    assert overlay_rgb(window.canvas, 40, 30) == pytest.approx(project.parts.display_color(1), abs=40)
    assert 1 in project.record("new.png").present  # the count of part 2 includes this hand edit
    qtbot.waitUntil(lambda: window.parts_panel.model.image_count(1) == project.part_image_counts()[1], timeout=3000)
    assert "1 edited" in window.counts_label.text()
    window.undo()
    assert not layer.has_edits and not window.canvas.labels().any()
    window.redo()
    assert layer.data[30, 40] == 2

    window.set_tool("fill")
    window.paint_with_part(3)
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.canvas.mapFromScene(QPointF(40.5, 30.5)))
    assert layer.data[30, 40] == 3 and layer.data[30, 21] == 3 and layer.data[80, 100] == UNSET
    window.toggle_reviewed()
    assert project.record("new.png").status is ImageStatus.REVIEWED

    result = export_png(project, None, tmp_path / "export")
    with Image.open(result.masks_dir / "new.png") as mask:
        pixels = np.asarray(mask)
    assert pixels.shape == (96, 128) and pixels[30, 40] == 3 and pixels[80, 100] == 0


def test_an_image_whose_photo_cannot_be_read_says_why_nothing_is_painted(qtbot, window, folder):
    project = opened(window, folder, "broken.png")
    window.set_tool("brush")
    drag(qtbot, window.canvas, [(10, 10), (20, 10)])
    message = window.statusBar().currentMessage()
    assert message.startswith("Cannot paint on broken.png: the image cannot be read")
    assert not project.record("broken.png").has_edits
    window.set_tool("fill")
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=window.canvas.rect().center())
    assert window.statusBar().currentMessage().startswith("Cannot paint on broken.png")


def test_a_read_only_project_says_why_nothing_is_painted(qtbot, window, folder):
    holder = AnnotationProject.open(folder)  # another window holds the project
    try:
        project = opened(window, folder, "new.png")
        assert project.read_only is not None
        window.set_tool("brush")
        drag(qtbot, window.canvas, [(10, 10), (30, 10)])
        assert window.statusBar().currentMessage().startswith("Cannot paint on new.png: this project is read-only "
                                                              "here (another window or process")
        assert project.record("new.png").size is None  # nothing recorded in a project this window may not write
    finally:
        holder.close()


def test_the_canvas_says_why_a_stroke_painted_nothing(qtbot, window, folder):
    opened(window, folder, "img_00.png")
    window.canvas.set_edit_target(None, None)
    window.set_tool("brush")
    drag(qtbot, window.canvas, [(10, 10), (20, 10)])
    assert window.statusBar().currentMessage() == "Nothing painted on img_00.png: it has no edit layer."
    window.set_tool("fill")
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(2, 2))  # beside the image
    assert window.statusBar().currentMessage() == "Nothing painted on img_00.png: it has no edit layer."


# ----- the person's own labels -------------------------------------------------------------------------------------
def test_a_user_label_is_added_painted_coloured_counted_exported_and_reopened(qtbot, window, folder, tmp_path,
                                                                              monkeypatch):
    project = opened(window, folder, "img_01.png")
    value = add_label(window, monkeypatch)
    assert value == USER_LABEL_BASE and project.parts.value_name(value) == "tail"
    users = window.parts_panel.user_labels
    combo = window.paint_label
    assert [combo.itemText(i) for i in range(combo.count())][-2:] == ["tail", "Don't care (255)"]  # after the parts
    assert combo.numbered_text(combo.findData(value)) == "⇧1  tail"
    assert users.model.rowCount() == 1 and users.model.data(users.model.index(0, 0)) == "⇧1"

    press(qtbot, window, Qt.Key.Key_1, Qt.KeyboardModifier.ShiftModifier)
    assert combo.currentData() == value and window.canvas.tool() == "brush"
    window.brush_size.setValue(5)
    drag(qtbot, window.canvas, [(30, 60), (90, 60)])
    assert window.canvas.labels()[60, 60] == value
    assert overlay_rgb(window.canvas, 60, 60) == pytest.approx(TAIL, abs=40)  # the label's colour, not background
    assert "⇧1 tail" in window.canvas.describe_pixel(60, 60)
    window._refresh_counts()
    assert users.model.image_count(value) == 1

    hidden = []
    window.canvas.set_style = lambda style, real=window.canvas.set_style: (hidden.append(style), real(style))
    users.model.set_hidden(value, True)
    assert hidden[-1].hidden_user_labels == frozenset({value})
    assert overlay_rgb(window.canvas, 60, 60) != pytest.approx(TAIL, abs=40)
    users.model.set_hidden(value, False)

    result = export_png(project, None, tmp_path / "export")
    names = (tmp_path / "export" / "labels.txt").read_text().splitlines()
    assert names == ["background", "part_01", "part_02", "part_03", "part_04", "tail"]  # after the model's parts
    with Image.open(result.masks_dir / "img_01.png") as mask:
        assert np.asarray(mask)[60, 60] == 5

    ARTIFACTS.mkdir(exist_ok=True)
    qtbot.wait(50)
    assert window.grab().save(str(ARTIFACTS / "annotate_window.png"))

    window.parts_panel.resize(380, 420)
    assert window.parts_panel.grab().save(str(ARTIFACTS / "parts_panel_user_labels.png"))
    combo.showPopup()
    qtbot.wait(50)
    assert combo.view().window().grab().save(str(ARTIFACTS / "paint_list.png"))
    combo.hidePopup()

    window.close_project()
    again = AnnotationProject.open(folder)
    assert again.parts.value_name(value) == "tail" and again.parts.value_color(value) == TAIL
    assert again.edits("img_01.png").data[60, 60] == value
    assert value in again.record("img_01.png").user_present
    again.close()
    assert window.open_folder(folder, load_project_checkpoint=False)
    assert window.paint_label.findText("tail") >= 0


def test_user_labels_are_renamed_recoloured_and_exported_as_background_in_the_panel(qtbot, window, folder,
                                                                                     monkeypatch, tmp_path):
    from app.parts_panel import COL_BACKGROUND, COL_COLOR, COL_NAME

    project = opened(window, folder, "img_00.png")
    value = add_label(window, monkeypatch)
    users = window.parts_panel.user_labels
    users.view.setFocus()
    users.view.setCurrentIndex(users.model.index(0, COL_NAME))
    qtbot.keyClick(users.view, Qt.Key.Key_F2)
    editor = QApplication.focusWidget()
    assert editor.text() == "tail"
    editor.setText("fin")
    with qtbot.waitSignal(window.parts_panel.partsChanged, timeout=1000):
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert project.parts.value_name(value) == "fin" and window.paint_label.findText("fin") >= 0
    errors = []
    users.error.connect(errors.append)
    assert not users.model.setData(users.model.index(0, COL_NAME), "part_02")
    assert errors == ["Part 2 is already called 'part_02'; merge into it instead of giving two labels the same name."]
    assert users.model.setData(users.model.index(0, COL_COLOR), "#102030")
    assert project.parts.value_color(value) == (16, 32, 48)
    window.paint_with(value)
    drag(qtbot, window.canvas, [(60, 40), (70, 40)])
    assert users.model.setData(users.model.index(0, COL_BACKGROUND), Qt.CheckState.Checked.value,
                               Qt.ItemDataRole.CheckStateRole)
    assert project.parts.value_is_background(value) and window.paint_label.findData(value) < 0
    assert "(exported as background)" in window.canvas.describe_pixel(65, 40)
    result = export_png(project, None, tmp_path / "export")
    assert "fin" not in [label.name for label in result.labels]
    with Image.open(result.masks_dir / "img_00.png") as mask:
        assert np.asarray(mask)[40, 65] == 0


def test_the_newest_user_label_is_removed_only_while_unused_and_its_gallery_shows_painted_images(qtbot, window,
                                                                                                folder, monkeypatch):
    project = opened(window, folder, "img_00.png")
    value = add_label(window, monkeypatch)
    users = window.parts_panel.user_labels
    window.paint_with(value)
    drag(qtbot, window.canvas, [(60, 40), (70, 40)])
    errors = []
    users.error.connect(errors.append)
    assert not users.remove_last()
    assert errors and "painted on 'img_00.png'" in errors[-1]
    with qtbot.waitSignal(window.gallery.loadFinished, timeout=20_000):
        users.galleryRequested.emit(value)
    assert window.gallery.tile_relpaths() == ["img_00.png"]
    assert window.gallery.title_label.text() == "⇧1 tail · 1 image"
    window.undo()
    assert users.remove_last() and not project.parts.user_labels
    assert window.paint_label.findText("tail") < 0


def test_a_project_without_a_model_gets_labels_of_its_own(qtbot, window, tmp_path, monkeypatch):
    images = tmp_path / "fresh"
    images.mkdir()
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(images / "a.png")
    project = opened(window, images, "a.png")
    assert project.parts is None
    assert add_label(window, monkeypatch, "wing") == USER_LABEL_BASE
    assert add_label(window, monkeypatch, "wing") is None  # the dialog says the name is taken and stays open
    value = add_label(window, monkeypatch, "tail")
    assert value == USER_LABEL_BASE + 1
    assert project.parts.num_parts == 0 and window.paint_label.currentData() == value
    window.set_tool("brush")
    drag(qtbot, window.canvas, [(10, 10), (30, 10)])
    assert project.label_map("a.png")[10, 20] == value


# ----- number keys -------------------------------------------------------------------------------------------------
def test_number_keys_choose_the_paint_label_and_zoom_moved_to_ctrl_1(qtbot, window, folder):
    project = opened(window, folder, "img_00.png")
    combo, canvas = window.paint_label, window.canvas
    press(qtbot, window, Qt.Key.Key_3)
    assert combo.currentData() == 3 and canvas.active_label() == 3 and canvas.tool() == "brush"
    assert combo.numbered_text(combo.currentIndex()) == "3  part_03"
    assert window.statusBar().currentMessage() == "Brush: painting with 3  part_03."
    press(qtbot, window, Qt.Key.Key_0)
    assert combo.currentData() == BACKGROUND
    press(qtbot, window, Qt.Key.Key_Minus)
    assert combo.currentData() == IGNORE_LABEL
    press(qtbot, window, Qt.Key.Key_7)
    assert combo.currentData() == IGNORE_LABEL and "There is no part 7" in window.statusBar().currentMessage()
    press(qtbot, window, Qt.Key.Key_1, Qt.KeyboardModifier.ShiftModifier)
    assert "There is no label ⇧1" in window.statusBar().currentMessage()

    project.parts.merge(2, 1)  # part 3 into part 2: its key paints with the group
    window._on_parts_changed()
    press(qtbot, window, Qt.Key.Key_3)
    assert combo.currentData() == 2 and "part 3 is merged into it" in window.statusBar().currentMessage()

    window.filter_edit.setFocus()  # digits still type where text is typed
    for key in (Qt.Key.Key_I, Qt.Key.Key_1):
        qtbot.keyClick(window.filter_edit, key)
    assert window.filter_edit.text() == "i1" and combo.currentData() == 2
    window.filter_edit.clear()
    window.brush_size.setFocus()
    window.brush_size.selectAll()
    qtbot.keyClick(window.brush_size, Qt.Key.Key_4)
    assert window.brush_size.value() == 4 and combo.currentData() == 2

    window.canvas.zoom_fit()
    zoom = canvas.zoom()
    press(qtbot, window, Qt.Key.Key_1)
    assert canvas.zoom() == pytest.approx(zoom) and combo.currentData() == 1  # 1 paints, it does not zoom
    press(qtbot, window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom() == pytest.approx(1.0)


def test_the_shortcuts_list_shows_the_paint_keys(qtbot, window, monkeypatch):
    from app import dialogs

    shown = []
    monkeypatch.setattr(dialogs.ShortcutsDialog, "exec", lambda dialog: shown.append(dialog))
    window.show_shortcuts()
    table = shown[0].table
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Zoom 100 %"] == "Ctrl+1"
    assert rows["Paint with part 1 … 9 (the parts panel's numbers)"] == "1 … 9"
    assert rows["Paint background"] == "0" and rows["Paint don't care (255)"] == "-"
    assert rows["Add label (in the parts list)"] == "Ctrl+Shift+N"


# ----- eraser and fill ---------------------------------------------------------------------------------------------
def test_the_eraser_says_it_goes_back_to_the_prediction_or_to_background(qtbot, window, folder):
    opened(window, folder, "img_00.png")
    eraser = window.tool_actions["eraser"]
    assert eraser.text() == "Erase edits (back to the prediction)"
    window.set_tool("eraser")
    assert "the model's prediction shows again" in window.statusBar().currentMessage()
    assert window.canvas._cursor_items[1].pen().style() == Qt.PenStyle.DashLine  # its circle is not the brush's
    window.show_image("new.png")
    assert window.wait_for_display()
    assert eraser.text() == "Erase edits (back to background)" and "no prediction" in eraser.toolTip()


def test_a_fill_is_one_click_and_asks_before_covering_most_of_the_image(qtbot, window, folder, monkeypatch):
    project = opened(window, folder, "img_00.png")
    asked = answer_questions(monkeypatch, "Cancel")
    window.set_tool("fill")
    window.paint_label.setCurrentIndex(window.paint_label.findData(BACKGROUND))
    y, x = (int(v) for v in np.argwhere(window.canvas.labels() == 2)[0])  # part 2's blob: a small region
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.canvas.mapFromScene(QPointF(x + 0.5, y + 0.5)))
    assert not asked and project.edits("img_00.png").data[y, x] == BACKGROUND
    assert window.canvas.tool() == "pan"  # one click, one fill: the tool before it is back

    window.show_image("new.png")  # background everywhere: any fill covers it all
    assert window.wait_for_display()
    window.set_tool("brush")
    window.paint_with_part(1)
    window.set_tool("fill")
    centre = window.canvas.mapFromScene(QPointF(64.5, 48.5))
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert asked and "100% of new.png with 1  part_01" in asked[0]
    assert not project.edits("new.png").has_edits
    assert "not confirmed" in window.statusBar().currentMessage()
    assert window.canvas.tool() == "brush" and window.tool_actions["brush"].isChecked()  # not armed any more

    answer_questions(monkeypatch, "Fill")
    window.set_tool("fill")
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert (project.edits("new.png").data == 1).all()
    assert window.canvas.tool() == "brush"


# ----- one numbering -----------------------------------------------------------------------------------------------
def test_parts_are_numbered_from_1_everywhere(qtbot, window, folder, caplog):
    from PySide6.QtCore import QItemSelectionModel

    from app.parts_panel import COL_COLOR, COL_NAME

    opened(window, folder, "img_01.png")
    panel = window.parts_panel
    assert [panel.model.data(panel.model.index(r, COL_COLOR)) for r in range(4)] == ["1", "2", "3", "4"]
    panel.select_slot(1)
    panel.view.selectionModel().select(panel.model.index(2, 0), QItemSelectionModel.Select | QItemSelectionModel.Rows)
    with caplog.at_level(logging.INFO, logger="app.parts_panel"):
        panel.merge_selected()
    assert "Merged parts 3 into part 2" in caplog.text
    row = panel.model.row_of(2)
    assert panel.model.data(panel.model.index(row, COL_NAME)) == "↳ part_03 (part 3)"
    assert panel.model.data(panel.model.index(row, COL_NAME), Qt.ItemDataRole.ToolTipRole).startswith(
        "Part 3 (part_03) is merged into part 2 (part_02)")
    labels = window.canvas.labels()
    y, x = np.argwhere(labels == 3)[0]
    assert "· 2 part_02 ·" in window.canvas.describe_pixel(int(x), int(y))  # a merged slot shows its group's number
    errors = []
    panel.model.error.connect(errors.append)
    panel.model.setData(panel.model.index(panel.model.row_of(3), COL_NAME), "part_02")
    assert errors == ["Part 2 is already called 'part_02'; merge into it instead of giving two labels the same name."]


# ----- the edit layer is read off the GUI thread -------------------------------------------------------------------
def test_showing_an_edited_image_reads_its_layer_on_a_worker(qtbot, window, tmp_path, monkeypatch):
    import mpae_core.annotation.project_edits as project_edits

    project = make_predicted_project(tmp_path / "large", num_images=2, size=(600, 800))
    edited = project.relpaths()[1]
    project.edits(edited).brush(400, 300, 40, 4)
    project.close()
    reads = []
    real_read = project_edits.read_uint16_png
    monkeypatch.setattr(project_edits, "read_uint16_png",
                        lambda path: (reads.append(threading.current_thread() is threading.main_thread()),
                                      real_read(path))[1])
    assert window.open_folder(tmp_path / "large", load_project_checkpoint=False)
    assert window.wait_for_display()
    window.show_image(edited)
    assert True not in reads and window._current_layer() is None  # show_image returned without reading it
    assert window.wait_for_display()
    assert reads == [False]  # read once, on a worker
    layer = window._current_layer()
    assert layer is window.project.edits(edited) and layer.data[300, 400] == 4
    np.testing.assert_array_equal(window.canvas.labels(), window.project.label_map(edited))
    window.set_tool("brush")
    window.paint_with_part(2)
    drag(qtbot, window.canvas, [(100, 100), (140, 100)])
    assert layer.data[100, 120] == 2 and window.project.record(edited).status is ImageStatus.EDITED


# ----- the overlay's colours for the person's own labels -----------------------------------------------------------
def test_the_overlay_colours_user_labels_with_small_tables():
    from mpae_core.annotation.parts import PartTable

    from app.overlay import OverlayStyle, colour_lut, lut_indices, render_overlay

    parts = PartTable.default(3)
    tail = parts.add_user_label("tail", TAIL)
    shadow = parts.add_user_label("shadow", (10, 200, 10))
    parts.set_user_label_as_background(shadow)
    labels = np.array([[0, 1, 3, IGNORE_LABEL, tail, shadow, USER_LABEL_BASE + 7]], dtype=np.uint16)
    assert colour_lut(parts, OverlayStyle()).shape == (3 + 2 + 2, 4)  # one row per user label, never 65 k
    assert lut_indices(labels, 3, 2).tolist() == [[0, 1, 3, 4, 5, 6, 0]]  # an unknown value draws as background
    rgba = render_overlay(labels, parts, OverlayStyle(opacity=1.0))
    assert tuple(rgba[0, 4]) == (*TAIL, 255)
    assert rgba[0, 5, 3] == 127 and tuple(rgba[0, 5, :3]) == (96, 96, 96)  # exported as background: dim grey
    assert rgba[0, 6, 3] == 0
    hidden = render_overlay(labels, parts, OverlayStyle(opacity=1.0, hidden_user_labels=frozenset({tail})))
    assert hidden[0, 4, 3] == 0 and tuple(hidden[0, 1]) == tuple(rgba[0, 1])
    seam = np.array([[tail, tail, 1, 1]], dtype=np.uint16)
    outline = render_overlay(seam, parts, OverlayStyle(outline_only=True))[0, :, 3]
    assert outline.tolist() == [0, 255, 255, 0]  # the boundary between a user label and a part is drawn


def test_dont_care_and_export_as_background_are_named_apart(qtbot, window, folder):
    from app.parts_panel import COL_BACKGROUND

    opened(window, folder, "img_00.png")
    combo = window.paint_label
    dont_care = combo.itemData(combo.findData(IGNORE_LABEL), Qt.ItemDataRole.ToolTipRole)
    assert dont_care and dont_care.startswith("Don't care: exported as 255")
    assert "exported as background is 0" in dont_care
    assert combo.itemData(combo.findData(BACKGROUND), Qt.ItemDataRole.ToolTipRole).startswith("Background: exported "
                                                                                              "as 0")
    header = window.parts_panel.model.headerData(COL_BACKGROUND, Qt.Orientation.Horizontal,
                                                 Qt.ItemDataRole.ToolTipRole)
    assert header.startswith("Export as background") and "ignore" not in header.lower()
    window.parts_panel.model.setData(window.parts_panel.model.index(1, COL_BACKGROUND), Qt.CheckState.Checked.value,
                                     Qt.ItemDataRole.CheckStateRole)
    labels = window.canvas.labels()
    y, x = (int(v) for v in np.argwhere(labels == 2)[0])
    assert " · 2 part_02 (exported as background) · " in window.canvas.describe_pixel(x, y)
    window.canvas.set_active_label(IGNORE_LABEL)
    window.set_tool("brush")
    drag(qtbot, window.canvas, [(x, y)])
    assert "don't care" in window.canvas.describe_pixel(x, y)


def test_clear_edits_from_the_list_works_while_the_layer_is_still_on_its_way(qtbot, window, tmp_path):
    project = make_predicted_project(tmp_path / "large", num_images=2, size=(600, 800))
    edited = project.relpaths()[1]
    project.edits(edited).brush(400, 300, 40, 4)
    project.close()
    assert window.open_folder(tmp_path / "large", load_project_checkpoint=False)
    assert window.wait_for_display()
    window.image_menu(edited).actions()[3].trigger()  # "Clear edits (Ctrl+Z brings them back)"
    assert window.wait_for_display()
    assert not window.project.record(edited).has_edits
    np.testing.assert_array_equal(window.canvas.labels(), window.project.label_map(edited))
    window.undo()
    assert window.project.edits(edited).data[300, 400] == 4

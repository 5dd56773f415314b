"""Issue 11, "a first hour without traps": subfolders, the gallery after switching folders, the dark theme, the
shortcuts list and context menus, the welcome panel, and an image list that sorts by a confidence that means
something. Offscreen, with small generated folders and no model unless a test loads one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QContextMenuEvent, QGuiApplication, QIcon, QImage, QPalette  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QMenu, QPushButton  # noqa: E402

from app.file_list import RelpathRole, StatusRole  # noqa: E402
from conftest import make_predicted_project, show_main_window  # noqa: E402
from mpae_core.annotation import AnnotationProject, ImageStatus  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)


def _window(qtbot, **settings):
    return show_main_window(qtbot, wait_exposed=False, **settings)


@pytest.fixture
def window(qtbot):
    win = _window(qtbot)
    yield win
    win.close()


@pytest.fixture
def predicted_folder(tmp_path) -> Path:
    """Six predicted images (K=4) whose project is saved and closed, so a window can open it."""
    make_predicted_project(tmp_path / "predicted").close()
    return tmp_path / "predicted"


def _images(folder: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (40 * i % 255, 90, 160)).save(folder / name)
    return folder


@pytest.fixture
def restored_theme():
    """Themes change the whole application: put its style and palette back afterwards."""
    app = QApplication.instance()
    style, palette = app.style().name(), QPalette(app.palette())
    yield app
    app.setStyle(style)
    app.setPalette(palette)


def _luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114


def _rgba(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    data = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return data[:, : image.width()].astype(np.float64)


def _icon_luminance(icon: QIcon, mode: QIcon.Mode) -> float:
    pixels = _rgba(icon.pixmap(32, 32, mode).toImage())
    return float(_luminance(pixels[pixels[..., 3] > 128][:, :3]).mean())


def _right_click(widget, pos: QPoint) -> list[str]:
    """Right-click ``widget`` at ``pos``; the texts of the context menu that opened (it is closed at once)."""
    shown: list[str] = []

    def close_menus() -> None:
        for menu in QApplication.topLevelWidgets():
            if isinstance(menu, QMenu) and menu.isVisible():
                shown.extend(a.text().replace("&", "") for a in menu.actions() if not a.isSeparator())
                menu.close()

    QTimer.singleShot(100, close_menus)
    QApplication.sendEvent(widget, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, widget.mapToGlobal(pos)))
    QTest.qWait(150)
    return shown


def _action(menu: QMenu, text: str):
    return next(a for a in menu.actions() if a.text().startswith(text))


# ----- 1. include subfolders, remembered per project -----------------------------------------------------------------
def test_include_subfolders_rescans_shows_it_and_is_remembered_per_project(qtbot, window, tmp_path):
    first = _images(tmp_path / "first", ["a.png", "b.png", "sub/c.png", "sub/deeper/d.png"])
    second = _images(tmp_path / "second", ["e.png", "more/f.png"])
    assert window.open_folder(first)
    assert window.file_model.rowCount() == 2 and not window.act_subfolders.isChecked()
    assert "top folder only" in window.counts_label.text()
    assert window.subfolders_button.defaultAction() is window.act_subfolders  # the list header says it too

    window.act_subfolders.trigger()
    assert window.file_model.rowCount() == 4 and window.project.recursive
    assert "subfolders included" in window.counts_label.text()
    assert "2 more images" in window.statusBar().currentMessage()
    window.close_project()
    assert AnnotationProject.open(first, write=False).recursive  # the index stores the choice

    assert window.open_folder(second)  # a folder opened for the first time takes the last choice
    assert window.project.recursive and window.file_model.rowCount() == 2 and window.act_subfolders.isChecked()
    window.act_subfolders.trigger()  # off for this one only
    assert not window.project.recursive and not window.act_subfolders.isChecked()
    assert "already listed" in window.statusBar().currentMessage()  # f.png stays, with any work done on it
    window.close_project()
    assert window.open_folder(first)
    assert window.act_subfolders.isChecked() and window.file_model.rowCount() == 4


def test_a_folder_whose_images_are_all_in_subfolders_says_how_to_list_them(qtbot, window, tmp_path):
    folder = _images(tmp_path / "nested", ["train/a.png", "val/b.png"])
    assert window.open_folder(folder)
    assert window.file_model.rowCount() == 0
    assert "Include subfolders" in window.statusBar().currentMessage()


# ----- 2. the gallery of the previous folder ---------------------------------------------------------------------
def test_opening_another_folder_clears_the_previous_part_gallery(qtbot, window, predicted_folder, tmp_path):
    assert window.open_folder(predicted_folder)
    window.show_gallery(0)
    qtbot.waitUntil(lambda: not window.gallery.is_busy(), timeout=20_000)
    assert window.gallery.tile_relpaths()
    assert window.open_folder(_images(tmp_path / "other", ["x.png"]))
    assert window.gallery.tile_relpaths() == [] and window.gallery.title_label.text() == "No part selected"


# ----- 3. the dark theme -------------------------------------------------------------------------------------------
def test_dark_theme_icons_follow_a_theme_switch_and_look_disabled_when_disabled(qtbot, restored_theme):
    from app.icons import icon
    from app.theme import apply_theme

    apply_theme(restored_theme, "light")
    undo = icon("undo")  # made in the light theme, as at start-up before a switch
    apply_theme(restored_theme, "dark")
    window_luminance = float(_luminance(np.array([restored_theme.palette().window().color().getRgb()[:3]]))[0])
    normal, disabled = _icon_luminance(undo, QIcon.Mode.Normal), _icon_luminance(undo, QIcon.Mode.Disabled)
    assert normal - window_luminance > 120  # a light glyph on the dark window
    assert normal - disabled > 70  # and a disabled one is clearly dimmer, not brighter
    apply_theme(restored_theme, "light")
    assert _icon_luminance(undo, QIcon.Mode.Normal) < 80  # dark again on the light window


def test_dark_theme_disabled_buttons_look_disabled(qtbot, restored_theme):
    from app.theme import apply_theme

    apply_theme(restored_theme, "dark")
    enabled, disabled = QPushButton("Merge parts"), QPushButton("Merge parts")
    disabled.setEnabled(False)
    images = []
    for button in (enabled, disabled):
        qtbot.addWidget(button)
        button.resize(140, 32)
        images.append(_luminance(_rgba(button.grab().toImage())[..., :3]))
    face_enabled, face_disabled = (float(np.median(i)) for i in images)
    text_enabled, text_disabled = (float(np.percentile(i, 99.5)) for i in images)
    assert face_disabled <= face_enabled + 5  # not a light face among dark ones (Qt's default disabled colours)
    assert text_enabled - text_disabled > 60


def test_dark_theme_export_as_background_checkboxes_are_visible(qtbot, restored_theme, predicted_project):
    from app.parts_panel import COL_BACKGROUND, PartsPanel
    from app.theme import apply_theme

    apply_theme(restored_theme, "dark")
    panel = PartsPanel()
    qtbot.addWidget(panel)
    panel.set_project(predicted_project)
    panel.resize(420, 300)
    panel.show()
    qtbot.waitExposed(panel)
    shot = _luminance(_rgba(panel.view.viewport().grab().toImage())[..., :3])
    for row in (1, 2):  # unchecked and not selected
        rect = panel.view.visualRect(panel.model.index(row, COL_BACKGROUND))
        cell = shot[rect.top() + 2 : rect.bottom() - 1, rect.left() + 2 : rect.right() - 1]
        assert float(np.abs(cell - np.median(cell)).max()) > 60, "the check box outline does not stand out"


# ----- 4. shortcuts list and context menus -----------------------------------------------------------------------
def test_f1_lists_the_parts_panel_shortcuts_too(qtbot, window, monkeypatch):
    from app import dialogs

    shown = []
    monkeypatch.setattr(dialogs.ShortcutsDialog, "exec", lambda dialog: shown.append(dialog))
    window.show_shortcuts()
    table = shown[0].table
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Rename part (in the parts list)"] == "F2"
    assert rows["Export as background (in the parts list)"] == "Del, I"
    assert rows["Merge parts (in the parts list)"] == "Ctrl+M"
    assert "Ctrl+G" in rows["Show the part's gallery (in the parts list)"]
    assert rows["Undo"] == "Ctrl+Z" and rows["Fill"] == "G"  # the window's own, as before


def test_parts_panel_context_menu_acts_on_the_clicked_part(qtbot, window, predicted_folder):
    assert window.open_folder(predicted_folder)
    panel = window.parts_panel
    from app.parts_panel import COL_NAME

    pos = panel.view.visualRect(panel.model.index(2, COL_NAME)).center()
    shown = _right_click(panel.view.viewport(), pos)
    assert {"Rename part", "Change colour…", "Merge parts", "Un-merge", "Export as background", "Hide part",
            "Show the part's gallery"} <= set(shown)
    assert panel.selected_slots() == [2]  # the right-click selected the part it pointed at
    menu = panel.context_menu(pos)
    assert not _action(menu, "Merge parts").isEnabled() and _action(menu, "Rename part").isEnabled()
    _action(menu, "Export as background").trigger()
    assert window.project.parts.is_background(2)
    assert _action(panel.context_menu(pos), "Export as own labels again").isEnabled()
    _action(panel.context_menu(pos), "Hide part").trigger()
    assert 2 in panel.hidden_slots()
    with qtbot.waitSignal(panel.galleryRequested, timeout=1000) as blocker:
        _action(panel.context_menu(pos), "Show the part's gallery").trigger()
    assert blocker.args == [2]


def test_image_list_context_menu(qtbot, window, predicted_folder):
    assert window.open_folder(predicted_folder)
    index = window.file_filter.index(2, 0)
    relpath = index.data(RelpathRole)
    shown = _right_click(window.file_view.viewport(), window.file_view.visualRect(index).center())
    assert {"Open", "Predict this image", "Reviewed", "Show in file manager", "Copy path"} <= set(shown)
    menu = window.image_menu(relpath)
    assert not _action(menu, "Predict this image").isEnabled()  # no model loaded
    assert not _action(menu, "Clear edits").isEnabled()  # nothing painted there
    _action(menu, "Reviewed").trigger()
    assert window.project.record(relpath).status is ImageStatus.REVIEWED
    assert window.current != relpath  # marking from the list does not open the image
    _action(window.image_menu(relpath), "Copy path").trigger()
    assert QGuiApplication.clipboard().text() == str(window.project.image_path(relpath))
    _action(window.image_menu(relpath), "Open").trigger()
    assert window.current == relpath


def test_canvas_context_menu_offers_tools_and_the_label_under_the_cursor(qtbot, window, predicted_folder):
    assert window.open_folder(predicted_folder)
    window.show_image("img_01.png")
    assert window.wait_for_display()  # the labels arrive from a worker
    labels = window.canvas.labels()
    y, x = np.argwhere(labels == 3)[0]  # a pixel of part_03
    pos = window.canvas.mapFromScene(float(x) + 0.5, float(y) + 0.5)
    shown = _right_click(window.canvas.viewport(), pos)
    assert {"Pan", "Brush", "Fill", "Mark reviewed", "Zoom to fit", "Confidence heat map", "Outline only",
            "Paint with"} <= set(shown)
    window.paint_label.setCurrentIndex(0)
    _action(window.canvas_menu(pos), "Paint with part_03 (under the cursor)").trigger()
    assert window.paint_label.currentText() == "part_03"


# ----- 5. the welcome panel --------------------------------------------------------------------------------------
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_welcome_panel_while_no_folder_is_open(qtbot, tmp_path, predicted_folder, restored_theme, theme):
    from app.theme import apply_theme

    apply_theme(restored_theme, theme)
    gone = str(tmp_path / "moved-away")
    win = _window(qtbot, recent_folders=[str(predicted_folder), gone])
    assert win.central_stack.currentWidget() is win.welcome and win.welcome.isVisible()
    assert win.welcome.recent_folders() == [str(predicted_folder), gone]
    assert not win.welcome.recent_list.item(1).flags() & Qt.ItemFlag.ItemIsEnabled  # a folder that is gone
    qtbot.wait(50)
    ARTIFACTS.mkdir(exist_ok=True)
    assert win.grab().save(str(ARTIFACTS / f"welcome_{theme}.png"))
    win.welcome.recent_list.itemClicked.emit(win.welcome.recent_list.item(0))
    assert win.project is not None and win.central_stack.currentWidget() is win.canvas
    win.close_project()
    assert win.central_stack.currentWidget() is win.welcome
    win.close()


def test_welcome_buttons_open_load_and_start_the_demo(qtbot, window, monkeypatch, tmp_path):
    from app.gui import DEMO_DIR

    asked = []
    monkeypatch.setattr("app.window.QFileDialog.getExistingDirectory", lambda *a, **k: asked.append("folder") or "")
    monkeypatch.setattr("app.window_model.QFileDialog.getOpenFileName",
                        lambda *a, **k: asked.append("checkpoint") or ("", ""))
    window.welcome.open_button.click()
    window.welcome.load_button.click()
    assert asked == ["folder", "checkpoint"]
    if not (DEMO_DIR / "demo.safetensors").is_file():
        pytest.skip(f"demo assets missing from {DEMO_DIR}")
    with qtbot.waitSignal(window.predictionFinished, timeout=180_000) as blocker:
        window.welcome.demo_button.click()
    assert blocker.args[0].done == len(list((DEMO_DIR / "images").iterdir()))
    assert window.project.images_folder == tmp_path / "data" / "demo" / "images"
    assert window.central_stack.currentWidget() is window.canvas
    qtbot.waitUntil(lambda: not window.predicting, timeout=10_000)
    confidences = [r.confidence for r in window.project.records()]
    assert max(confidences) - min(confidences) > 0.3  # not "100 %" on every image


# ----- 6. sorting by confidence ----------------------------------------------------------------------------------
def test_image_list_sorts_least_sure_first_and_by_status(qtbot, window, predicted_folder):
    project = AnnotationProject.open(predicted_folder)
    project.add_image("zz_new.png")
    _images(predicted_folder, ["zz_new.png"])
    confidences = {r.relpath: r.confidence for r in project.records() if r.has_prediction}
    assert len(set(confidences.values())) > 1
    project.close()
    assert window.open_folder(predicted_folder)
    order = lambda: [window.file_filter.index(r, 0).data(RelpathRole)  # noqa: E731
                     for r in range(window.file_filter.rowCount())]
    names = order()
    window.sort_combo.setCurrentIndex(window.sort_combo.findData("confidence"))
    assert order() == sorted(confidences, key=lambda r: (confidences[r], names.index(r))) + ["zz_new.png"]
    window.project.mark_reviewed(order()[0])
    window.file_model.refresh(order()[0])
    window.sort_combo.setCurrentIndex(window.sort_combo.findData("status"))
    assert order()[0] == "zz_new.png" and window.file_filter.index(len(names) - 1, 0).data(
        StatusRole) == ImageStatus.REVIEWED.value
    window.sort_combo.setCurrentIndex(window.sort_combo.findData("name"))
    assert order() == names


def test_images_predicted_by_an_older_version_show_no_confidence(qtbot, window, predicted_folder):
    import json

    from app.file_list import ConfidenceRole
    from mpae_core.annotation.records import CONFIDENCE_KEY

    index_path = AnnotationProject.open(predicted_folder, write=False).index_path
    index = json.loads(index_path.read_text())
    index["images"][0]["confidence"] = 0.9993  # the old saturated figure, under the old key
    del index["images"][0][CONFIDENCE_KEY]
    index_path.write_text(json.dumps(index))
    assert window.open_folder(predicted_folder)
    old, new = window.file_filter.index(0, 0), window.file_filter.index(1, 0)
    assert old.data(ConfidenceRole) is None and "confidence: —" in old.data(Qt.ToolTipRole)
    assert new.data(ConfidenceRole) is not None and "share of the image the model labels clearly" in new.data(
        Qt.ToolTipRole)

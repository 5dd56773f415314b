"""The whole desktop flow, offscreen: open a folder, load a random-weight checkpoint, predict everything on the
worker thread, rename and merge parts, paint and undo, export, cancel a batch, reopen the project."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt, QTimer

from conftest import show_main_window, tiny_model
from mpae_core.annotation import ImageStatus
from mpae_core.checkpoint import save_checkpoint

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = tiny_model(seed=3)
    model.info.part_names[0] = "head"
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", embed_backbone=True)


def make_folder(folder: Path, count: int = 6, broken: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        pixels = (rng.random((90 + 4 * i, 120, 3)) * 255).astype(np.uint8)
        pixels[20:70, 30:90] = (220, 60 + 20 * (i % 5), 40)
        Image.fromarray(pixels).save(folder / f"photo_{i:02d}.jpg", quality=90)
    if broken:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder


@pytest.fixture
def window(qtbot):
    win = show_main_window(qtbot, save_settings=True, wait_exposed=False, batch_size=2)
    yield win
    win.close()


def load(qtbot, win, checkpoint) -> None:
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        assert win.load_checkpoint(checkpoint)
    qtbot.waitUntil(lambda: not win.loading, timeout=10_000)


def predict_all(qtbot, win):
    with qtbot.waitSignal(win.predictionFinished, timeout=120_000) as blocker:
        win.predict_all()
    qtbot.waitUntil(lambda: not win.predicting, timeout=10_000)
    return blocker.args[0]


def test_full_flow_open_predict_rename_merge_paint_export_reopen(qtbot, window, checkpoint, tmp_path):
    folder = make_folder(tmp_path / "photos")
    assert window.open_folder(folder)
    assert window.file_model.rowCount() == 7
    load(qtbot, window, checkpoint)
    assert "tiny.safetensors" in window.device_label.text()

    summary = predict_all(qtbot, window)
    assert (summary.done, summary.failed, summary.cancelled) == (6, 1, False)
    project = window.project
    statuses = {r.relpath: r.status for r in project.records()}
    assert statuses["broken.jpg"] is ImageStatus.ERROR
    assert all(s is ImageStatus.PREDICTED for r, s in statuses.items() if r != "broken.jpg")
    assert window.problems.count() == 1 and "broken.jpg" in window.problems.item(0).text()
    assert project.parts.display_name(0) == "head"  # names come from the checkpoint

    # parts: rename and merge in the parts panel; the store's table changes and the overlay and paint list follow
    from PySide6.QtCore import QItemSelectionModel

    from app.parts_panel import COL_NAME

    panel = window.parts_panel
    with qtbot.waitSignal(panel.partsChanged):
        assert panel.model.setData(panel.model.index(panel.model.row_of(1), COL_NAME), "wing")
    assert project.parts.display_name(1) == "wing"
    assert window.paint_label.findText("wing") >= 0
    panel.view.clearSelection()
    for slot in (1, 2):
        panel.view.selectionModel().select(panel.model.index(panel.model.row_of(slot), 0),
                                           QItemSelectionModel.Select | QItemSelectionModel.Rows)
    with qtbot.waitSignal(panel.partsChanged):
        panel.merge_selected()
    assert project.parts.root(2) == 1
    assert project.parts.display_color(2) == project.parts.display_color(1)
    assert window.paint_label.findText("part_03") < 0  # a merged slot is painted as its root
    window.show_image("photo_00.jpg")
    assert window.wait_for_display()  # the picture and labels arrive from workers
    labels = window.canvas.labels()
    assert labels is not None and labels.shape == (90, 120)

    # paint a stroke with the brush, then undo it
    window.set_tool("brush")
    window.brush_size.setValue(6)
    index = window.paint_label.findText("wing")
    assert index >= 0
    window.paint_label.setCurrentIndex(index)
    layer = project.edits("photo_00.jpg")
    window.canvas.zoom_fit()
    qtbot.wait(50)
    viewport = window.canvas.viewport()
    start = window.canvas.mapFromScene(20.0, 45.0)
    end = window.canvas.mapFromScene(100.0, 45.0)
    qtbot.mousePress(viewport, Qt.LeftButton, pos=start)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(viewport, QPoint(int(start.x() + t * (end.x() - start.x())), start.y()))
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=end)
    assert layer.has_edits
    assert project.record("photo_00.jpg").status is ImageStatus.EDITED
    painted = layer.edited_pixels
    window.undo()
    assert not layer.has_edits
    window.redo()
    assert layer.edited_pixels == painted
    window.toggle_reviewed()
    assert project.record("photo_00.jpg").status is ImageStatus.REVIEWED

    # export through the app's dialog (the store's exporter on a worker thread)
    from app.export_dialog import ExportDialog

    out = tmp_path / "export"
    dialog = ExportDialog(window.project, window, default_out_dir=out)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.ended, timeout=60_000) as ended:
        assert dialog.start_export()
    assert ended.args == ["done"]
    assert dialog.result().images == 6
    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]][:2] == ["head", "wing"]
    assert len(coco["images"]) == 6
    with Image.open(out / "masks" / "photo_00.png") as mask:
        assert mask.size == (120, 90) and mask.mode == "P"
    dialog.close()

    ARTIFACTS.mkdir(exist_ok=True)
    window.set_tool("pan")
    window.show_image("photo_01.jpg")
    assert window.wait_for_display()
    qtbot.wait(100)
    window.file_model.wait_for_thumbnails()
    qtbot.wait(100)
    assert window.grab().save(str(ARTIFACTS / "main_window.png"))

    # reopen in a fresh window: statuses, names, merges and edits come back
    window.close()
    from app.settings import AppSettings
    from app.window import MainWindow

    again = MainWindow(AppSettings())
    qtbot.addWidget(again)
    assert again.open_folder(folder, load_project_checkpoint=False)
    reopened = again.project
    assert reopened.record("photo_00.jpg").status is ImageStatus.REVIEWED
    assert reopened.record("broken.jpg").status is ImageStatus.ERROR
    assert reopened.parts.display_name(1) == "wing" and reopened.parts.root(2) == 1
    assert reopened.edits("photo_00.jpg").edited_pixels == painted
    assert reopened.checkpoint == checkpoint
    again.close()


def test_event_loop_serves_timers_during_a_batch_and_cancel_stops_within_a_batch(qtbot, window, checkpoint,
                                                                                  tmp_path):
    folder = make_folder(tmp_path / "many", count=24, broken=False)
    window.open_folder(folder)
    load(qtbot, window, checkpoint)
    ticks = []
    timer = QTimer(interval=5)
    timer.timeout.connect(lambda: ticks.append(window.predicting))
    timer.start()
    progress = []
    window.settings.batch_size = 2
    with qtbot.waitSignal(window.predictionFinished, timeout=120_000) as blocker:
        window.predict_all()
        worker = window._predict_worker
        worker.progress.connect(lambda done, *_: progress.append(done))
        qtbot.waitUntil(lambda: len(progress) >= 1, timeout=60_000)
        window.cancel_prediction()
    timer.stop()
    summary = blocker.args[0]
    assert summary.cancelled
    assert summary.done < 24 and summary.done <= progress[0] + 2 * 2  # stopped within a batch of the request
    assert sum(ticks) >= 3, "the GUI thread's timers did not run while the worker predicted"
    qtbot.waitUntil(lambda: not window.predicting, timeout=10_000)
    done = sum(r.has_prediction for r in window.project.records())
    assert done == summary.done
    # the rest can be predicted later
    summary = predict_all(qtbot, window)
    assert summary.done == 24 - done and not summary.cancelled


def test_missing_backbone_reports_and_bad_checkpoint_is_one_sentence(qtbot, window, tmp_path, monkeypatch):
    from app import window as window_module

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 32)
    shown = []
    monkeypatch.setattr(window_module.QMessageBox, "critical", lambda *a: shown.append(a[2]))
    with qtbot.waitSignal(window.modelFailed, timeout=30_000) as blocker:
        window.load_checkpoint(bad)
    assert "bad.pth" in blocker.args[0] and "\n" not in blocker.args[0]
    assert shown and shown[0] == blocker.args[0]

    model = tiny_model()
    no_backbone = save_checkpoint(model, tmp_path / "nobackbone.safetensors", embed_backbone=False)
    monkeypatch.delenv("MPAE_BACKBONE_WEIGHTS", raising=False)
    qtbot.waitUntil(lambda: not window.loading, timeout=10_000)
    asked = []
    monkeypatch.setattr(window_module.dialogs, "ask_backbone_weights", lambda parent, msg: asked.append(msg))
    with qtbot.waitSignal(window.modelFailed, timeout=30_000):
        window.load_checkpoint(no_backbone)
    assert asked and "backbone" in asked[0].lower()
    assert not window.session.loaded


def test_shortcuts_dialog_lists_navigation_and_undo(qtbot, window):
    from app.dialogs import ShortcutsDialog

    dialog = ShortcutsDialog(window._actions, window)
    qtbot.addWidget(dialog)
    texts = {dialog.table.item(r, 0).text(): dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())}
    assert "A" in texts["Previous image"] and "D" in texts["Next image"]
    assert texts["Undo"] == "Ctrl+Z" and "Ctrl+Shift+Z" in texts["Redo"]


def test_settings_round_trip_and_damaged_file(tmp_path):
    from app.settings import AppSettings

    settings = AppSettings(device="cpu", theme="dark")
    settings.add_recent_folder(tmp_path)
    settings.save(tmp_path)
    loaded = AppSettings.load(tmp_path)
    assert loaded.device == "cpu" and loaded.theme == "dark" and loaded.recent_folders == [str(tmp_path.resolve())]
    (tmp_path / "settings.json").write_text("{not json")
    assert AppSettings.load(tmp_path) == AppSettings()
    assert (tmp_path / "settings.json.bad").is_file()


def test_demo_opens_a_copy_loads_the_demo_checkpoint_and_predicts_every_image(qtbot, tmp_path):
    from app.gui import DEMO_DIR, launch

    if not (DEMO_DIR / "demo.safetensors").is_file():
        pytest.skip(f"demo assets missing from {DEMO_DIR}")
    win = launch(demo=True)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.predictionFinished, timeout=180_000) as blocker:
        pass
    summary = blocker.args[0]
    images = sorted(p.name for p in (DEMO_DIR / "images").iterdir())
    assert summary.total == len(images) and summary.done == len(images) and summary.failed == 0
    assert win.project.images_folder == tmp_path / "data" / "demo" / "images"  # a copy: the repo stays clean
    assert not (DEMO_DIR / "images" / ".mpae").exists()
    assert win.session.checkpoint.name == "demo.safetensors"
    assert win.wait_for_display()
    assert win.canvas.labels() is not None
    qtbot.waitUntil(lambda: not win.predicting, timeout=10_000)
    win.resize(1280, 800)
    win.show_image(win.project.relpaths()[3])
    assert win.wait_for_display()
    win.file_model.wait_for_thumbnails()
    qtbot.wait(200)
    win.parts_panel.select_slot(0)
    win.show_gallery(0)
    qtbot.waitUntil(lambda: not win.gallery.is_busy(), timeout=30_000)
    qtbot.wait(100)
    ARTIFACTS.mkdir(exist_ok=True)
    assert win.grab().save(str(ARTIFACTS / "demo_window.png"))
    win.close()


def test_switching_models_releases_the_old_one(qtbot, window, checkpoint):
    import gc
    import weakref

    load(qtbot, window, checkpoint)
    first = weakref.ref(window.session.model)
    load(qtbot, window, checkpoint)  # switching (here: reloading) frees the previous model before building the next
    gc.collect()
    assert first() is None and window.session.model is not None
    window.session.unload()
    assert not window.session.loaded and window.session.describe() == "No model loaded"


def test_closing_while_a_model_loads_asks_nothing_afterwards(qtbot, tmp_path, monkeypatch):
    """A load that fails (or finishes) after the window closed must not open a dialog over nothing, nor crash."""
    from app import window as window_module
    from app.settings import AppSettings
    from app.window import MainWindow

    no_backbone = save_checkpoint(tiny_model(), tmp_path / "nobackbone.safetensors", embed_backbone=False)
    monkeypatch.delenv("MPAE_BACKBONE_WEIGHTS", raising=False)
    asked = []
    monkeypatch.setattr(window_module.dialogs, "ask_backbone_weights", lambda parent, msg: asked.append(msg))
    for _ in range(3):
        win = MainWindow(AppSettings(batch_size=2), save_settings=False)
        win.show()
        assert win.load_checkpoint(no_backbone)
        win.close()  # waits for the loader; its answer is still queued
        qtbot.wait(200)
        assert asked == [] and not win.session.loaded
        win.deleteLater()

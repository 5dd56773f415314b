"""Instant browsing (issue 11): showing an image never does image-sized work on the GUI thread, a screen-sized preview
comes before the full resolution, results of images the person already left are dropped, strokes made before the
full-resolution labels exist are kept, the name filter opens nothing while typing, and Space pans wherever the focus
is. Structure and order are asserted, never time (benchmarks/bench_app_browse.py measures that)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from conftest import make_predicted_project, show_main_window  # noqa: E402
from mpae_core import inference  # noqa: E402
from mpae_core.annotation.labels import IGNORE_LABEL, UNSET  # noqa: E402
from mpae_core.inference import PartPrediction  # noqa: E402

LARGE = (1200, 1600)  # (height, width): larger than the canvas, so there is a preview stage


pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)


@pytest.fixture
def window(qtbot):
    win = show_main_window(qtbot)
    yield win
    win.close()


@pytest.fixture
def large_project(tmp_path):
    """Three predicted 1600x1200 images (closed: the window under test opens the folder itself)."""
    project = make_predicted_project(tmp_path / "large", num_images=3, size=LARGE)
    project.close()
    return project


def settle(window) -> bool:
    """Wait until the current image is fully shown (the window before the staged display showed it at once)."""
    wait = getattr(window, "wait_for_display", None)
    return True if wait is None else wait()


class MainThreadSpy:
    """Records the label-map and confidence-map sizes computed on the GUI thread (image-sized work there is a bug)."""

    def __init__(self, monkeypatch) -> None:
        self.on_gui_thread: list[tuple[str, tuple[int, int]]] = []
        self.anywhere: list[tuple[str, tuple[int, int]]] = []
        for name in ("label_map_at", "_labels_and_confidence"):
            original = getattr(inference, name)
            spy = self._wrap(name, original)
            monkeypatch.setattr(inference, name, spy)
            try:  # the display module holds its own reference
                import app.display as display

                if getattr(display, name, None) is original:
                    monkeypatch.setattr(display, name, spy)
            except ImportError:
                pass

    def _wrap(self, name, original):
        def spy(logits, size, *args, **kwargs):
            height, width = (int(v) for v in size)
            if kwargs.get("rows") is not None:  # a band: only those rows are computed
                height = len(range(*kwargs["rows"].indices(height)))
            entry = (name, (height, width))
            self.anywhere.append(entry)
            if threading.current_thread() is threading.main_thread():
                self.on_gui_thread.append(entry)
            return original(logits, size, *args, **kwargs)

        return spy

    def image_sized_on_gui_thread(self, size: tuple[int, int]) -> list:
        return [entry for entry in self.on_gui_thread if entry[1][0] * entry[1][1] >= size[0] * size[1] // 4]


def test_show_image_returns_before_image_sized_work_and_the_preview_comes_first(qtbot, window, large_project,
                                                                                monkeypatch):
    first, big = large_project.relpaths()[:2]
    assert window.open_folder(large_project.images_folder, load_project_checkpoint=False)
    settle(window)
    spy = MainThreadSpy(monkeypatch)
    events = []
    window.imageShown.connect(lambda r: events.append(("current", r)))
    window.show_image(big)
    assert not spy.image_sized_on_gui_thread(LARGE), "show_image computed a full-resolution map on the GUI thread"
    assert window.canvas.labels() is None  # nothing of the new image is known yet

    canvas = window.canvas
    for name in ("set_photo_preview", "set_photo_full", "set_label_preview", "set_labels"):
        real = getattr(canvas, name)
        monkeypatch.setattr(canvas, name, lambda *a, _n=name, _r=real: (events.append((_n, None)), _r(*a))[1])
    window.display.previewShown.connect(lambda r: events.append(("preview shown", r)))
    window.displayReady.connect(lambda r: events.append(("ready", r)))
    assert window.wait_for_display()
    order = [kind for kind, _ in events]
    assert order[0] == "current" and order[-1] == "ready" and order.count("ready") == 1
    for early, late in (("set_photo_preview", "set_photo_full"), ("set_label_preview", "set_labels"),
                        ("preview shown", "ready"), ("set_label_preview", "preview shown")):
        assert order.index(early) < order.index(late), order
    assert not spy.image_sized_on_gui_thread(LARGE)
    assert ("label_map_at", LARGE) in spy.anywhere  # on a worker
    assert not [e for e in spy.anywhere if e[0] == "_labels_and_confidence"]  # no confidence map at all

    np.testing.assert_array_equal(window.canvas.labels(), large_project.label_map(big))
    photo = window.canvas._photo_item.level("full")
    assert (photo.height(), photo.width()) == LARGE
    from mpae_core.images import load_image

    pixels = load_image(large_project.image_path(big))
    for x, y in ((0, 0), (800, 600), (1599, 1199)):
        assert photo.pixelColor(x, y).getRgb()[:3] == pixels.getpixel((x, y))
    preview = window.canvas._photo_item.level("preview")
    assert 0 < preview.width() < LARGE[1]  # the screen-sized stage exists and is smaller
    assert first != big


def test_results_of_images_left_behind_are_dropped(qtbot, window, large_project, monkeypatch):
    import app.display as display

    relpaths = large_project.relpaths()
    assert window.open_folder(large_project.images_folder, load_project_checkpoint=False)
    assert window.wait_for_display()
    release = threading.Event()
    real_decode = display.decode_preview

    def slow_for_the_first(path, box):
        if path.name == relpaths[1]:
            release.wait(10)  # the person moves on before this image's preview is decoded
        return real_decode(path, box)

    monkeypatch.setattr(display, "decode_preview", slow_for_the_first)
    shown_sizes = []
    real_set_preview = window.canvas.set_photo_preview
    monkeypatch.setattr(window.canvas, "set_photo_preview",
                        lambda image, size: (shown_sizes.append(window.display.relpath), real_set_preview(image, size)))
    window.show_image(relpaths[1])
    window.show_image(relpaths[2])
    assert window.wait_for_display()
    release.set()
    qtbot.wait(300)  # the stale job finishes now; its result must go nowhere
    window.wait_for_display()
    assert window.current == relpaths[2] and shown_sizes == [relpaths[2]]
    np.testing.assert_array_equal(window.canvas.labels(), large_project.label_map(relpaths[2]))


def test_a_stroke_and_a_fill_made_before_the_full_labels_are_kept(qtbot, window, large_project, monkeypatch):
    import app.display as display

    relpath = large_project.relpaths()[1]
    assert window.open_folder(large_project.images_folder, load_project_checkpoint=False)
    assert window.wait_for_display()
    release = threading.Event()
    real_full = display.full_labels
    monkeypatch.setattr(display, "full_labels", lambda *a: (release.wait(20), real_full(*a))[1])
    with qtbot.waitSignal(window.display.previewShown, timeout=20_000):
        window.show_image(relpath)
    canvas = window.canvas
    assert canvas.labels() is None  # only the preview so far
    window.set_tool("brush")
    window.brush_size.setValue(20)
    window.paint_label.setCurrentIndex(window.paint_label.findData(IGNORE_LABEL))
    viewport = canvas.viewport()
    start, end = canvas.mapFromScene(QPointF(300.5, 200.5)), canvas.mapFromScene(QPointF(900.5, 200.5))
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, end)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    layer = window.project.edits(relpath)
    assert layer.has_edits and layer.data[200, 600] == IGNORE_LABEL
    window.set_tool("fill")
    canvas.set_active_label(0)
    fill_at = canvas.mapFromScene(QPointF(600.5, 200.5))  # inside the stroke: needs the full labels
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=fill_at)
    assert canvas.busy() and layer.data[200, 600] == IGNORE_LABEL  # waiting, not lost, not applied to a guess

    release.set()
    assert window.wait_for_display()
    assert layer.data[200, 600] == 0 and layer.data[200, 310] == 0  # the fill ran on the painted region
    prediction = large_project.prediction(relpath).label_map()
    np.testing.assert_array_equal(canvas.labels(), layer.composed(prediction))
    assert not canvas.busy()


def test_a_prediction_for_the_shown_image_refreshes_it_in_the_background(qtbot, window, large_project, monkeypatch):
    relpath = large_project.relpaths()[0]
    assert window.open_folder(large_project.images_folder, load_project_checkpoint=False)
    assert settle(window)
    layer = window.project.edits(relpath)
    layer.brush(100, 100, 10, 2)
    window.canvas.recompose()
    logits = torch.zeros(5, 8, 8)
    logits[0] = 5.0  # the new prediction says "slot 0" everywhere
    spy = MainThreadSpy(monkeypatch)
    window._on_predicted(relpath, PartPrediction.from_logits(logits, LARGE))
    assert not spy.image_sized_on_gui_thread(LARGE)
    assert settle(window)
    labels = window.canvas.labels()
    assert labels[100, 100] == 2 and labels[600, 800] == 1 and (labels[layer.data == UNSET] == 1).all()


def test_undo_redraws_only_the_changed_box(qtbot, window, large_project, monkeypatch):
    import app.overlay as overlay

    relpath = large_project.relpaths()[0]
    assert window.open_folder(large_project.images_folder, load_project_checkpoint=False)
    assert settle(window)
    window.set_tool("brush")
    window.brush_size.setValue(5)
    viewport = window.canvas.viewport()
    at = window.canvas.mapFromScene(QPointF(400.5, 300.5))
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=at)
    assert window.project.edits(relpath).has_edits
    rendered = []
    real_render = overlay.render_overlay
    monkeypatch.setattr(overlay, "render_overlay", lambda labels, *a, **k: (rendered.append(np.shape(labels)),
                                                                            real_render(labels, *a, **k))[1])
    import app.canvas as canvas_module

    monkeypatch.setattr(canvas_module, "render_overlay", overlay.render_overlay, raising=False)
    window.undo()
    window.redo()
    assert rendered and max(h * w for h, w in rendered) < 100 * 100  # boxes, never the 1600x1200 map


def test_typing_in_the_filter_opens_no_image(qtbot, window, tmp_path):
    from PIL import Image

    folder = tmp_path / "pets"
    folder.mkdir()
    for name in ("cat_01", "cat_02", "dog_01", "dog_02"):
        Image.new("RGB", (32, 24), (90, 60, 30)).save(folder / f"{name}.jpg")
    assert window.open_folder(folder, load_project_checkpoint=False)
    window.show_image("dog_02.jpg")
    opened = []
    window.imageShown.connect(opened.append)
    window.filter_edit.setFocus()
    qtbot.keyClicks(window.filter_edit, "cat_0")
    qtbot.waitUntil(lambda: window.file_filter.rowCount() == 2, timeout=5000)
    qtbot.keyClicks(window.filter_edit, "2")
    qtbot.waitUntil(lambda: window.file_filter.rowCount() == 1, timeout=5000)
    assert opened == [] and window.current == "dog_02.jpg"
    assert not window.file_view.currentIndex().isValid()  # the current image is filtered out: nothing selected
    window.filter_edit.setText("dog")
    qtbot.waitUntil(lambda: window.file_filter.rowCount() == 2, timeout=5000)
    assert window.file_view.currentIndex().data() == "dog_02.jpg"  # still matching: it stays selected
    assert opened == []
    window.next_image()  # stepping goes through the filtered list
    assert window.current == "dog_02.jpg"
    window.previous_image()
    assert window.current == "dog_01.jpg"


def test_filter_follows_status_changes_without_a_reset(qtbot, predicted_project):
    from app.file_list import ImageFilterModel, ImageListModel

    source = ImageListModel()
    source.set_project(predicted_project)
    filtered = ImageFilterModel()
    filtered.setSourceModel(source)
    filtered.set_filter("img_0", "predicted")
    assert filtered.rowCount() == 6
    resets = []
    filtered.modelReset.connect(lambda: resets.append(1))
    predicted_project.mark_reviewed("img_03.png")
    source.refresh("img_03.png")
    assert filtered.rowCount() == 5 and filtered.index_of("img_03.png").isValid() is False
    predicted_project.mark_reviewed("img_03.png", False)
    source.refresh("img_03.png")
    assert [filtered.index(r, 0).data() for r in range(filtered.rowCount())] == predicted_project.relpaths()
    assert resets == []


def test_space_pans_after_clicking_the_list_and_never_paints(qtbot, window, predicted_project):
    predicted_project.close()
    assert window.open_folder(predicted_project.images_folder, load_project_checkpoint=False)
    assert settle(window)
    relpath = window.current
    view = window.file_view
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(view.currentIndex()).center())
    assert settle(window) and window.current == relpath
    assert QApplication.focusWidget() is view  # the list has the keyboard, not the canvas
    window.set_tool("brush")
    canvas = window.canvas
    canvas.zoom_by(4.0)
    viewport = canvas.viewport()
    centre = viewport.rect().center()
    qtbot.mouseMove(viewport, centre)
    before = canvas.mapToScene(centre)
    qtbot.keyPress(window.windowHandle(), Qt.Key.Key_Space)  # as the platform delivers it: to the window
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(viewport, centre + QPoint(60, 0))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=centre + QPoint(60, 0))
    qtbot.keyRelease(window.windowHandle(), Qt.Key.Key_Space)
    layer = window.project.edits(relpath)
    assert not layer.has_edits  # Space+drag panned...
    assert canvas.mapToScene(centre).x() == pytest.approx(before.x() - 60 / canvas.zoom(), abs=0.5)  # ...by 60 px
    assert window.current == relpath  # and Space did not act on the list
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=centre)  # without Space the brush paints again
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=centre)
    assert layer.has_edits


def test_space_still_types_in_the_filter(qtbot, window, predicted_project):
    predicted_project.close()
    assert window.open_folder(predicted_project.images_folder, load_project_checkpoint=False)
    qtbot.mouseMove(window.canvas.viewport(), window.canvas.viewport().rect().center())
    window.filter_edit.setFocus()
    for key in (Qt.Key.Key_A, Qt.Key.Key_Space, Qt.Key.Key_B):
        qtbot.keyClick(window.windowHandle(), key)  # through the window, as the platform delivers keys
    assert window.filter_edit.text() == "a b" and not window.canvas.space_held()


def test_hover_confidence_comes_from_the_logits_without_a_map(qtbot, window, large_project, monkeypatch):
    relpath = large_project.relpaths()[0]
    assert window.open_folder(large_project.images_folder, load_project_checkpoint=False)
    assert settle(window)
    expected = large_project.prediction(relpath).confidence_map()[700, 900]
    spy = MainThreadSpy(monkeypatch)
    text = window.canvas.describe_pixel(900, 700)
    assert text.endswith(f" · {round(float(expected) * 100)} %")
    assert spy.anywhere == []


def test_rows_that_move_or_leave_by_themselves_open_nothing(qtbot, window, predicted_project):
    predicted_project.close()
    assert window.open_folder(predicted_project.images_folder, load_project_checkpoint=False)
    window.sort_combo.setCurrentIndex(window.sort_combo.findData("confidence"))
    first = window.file_filter.index(0, 0).data()  # the least sure image
    window.show_image(first)
    assert settle(window)
    opened = []
    window.imageShown.connect(opened.append)
    logits = torch.full((5, 8, 8), -5.0)
    logits[1] = 8.0  # a sure prediction: the image moves down the "least sure first" list
    window._on_predicted(first, PartPrediction.from_logits(logits, (96, 128)))
    assert window.file_filter.index_of(first).row() > 0
    assert window.file_view.currentIndex().data() == first and window.current == first and opened == []
    window.status_filter.setCurrentIndex(window.status_filter.findData("predicted"))
    window.toggle_reviewed()  # it leaves the "predicted" list
    assert not window.file_filter.index_of(first).isValid()
    assert window.current == first and opened == [] and not window.file_view.currentIndex().isValid()
    assert settle(window)

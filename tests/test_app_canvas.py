"""Overlay rendering (numpy) and the image canvas: zoom, pan, brush/eraser/fill into the EditLayer, hover text."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.canvas import ImageCanvas  # noqa: E402
from app.overlay import (  # noqa: E402
    HEAT_COLORMAP,
    IGNORE_RGB,
    IGNORED_SLOT_RGB,
    OverlayStyle,
    colour_lut,
    pil_to_qimage,
    render_overlay,
    rgba_to_qimage,
)
from mpae_core.annotation.labels import IGNORE_LABEL, UNSET  # noqa: E402
from mpae_core.annotation.parts import PartTable  # noqa: E402
from mpae_core.images import load_image  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


# ----- overlay ------------------------------------------------------------------------------------------------------
def stripes() -> np.ndarray:
    """Columns of label values 0, 1, 2, 3, 4 and IGNORE_LABEL, 4 pixels wide each."""
    values = np.array([0, 1, 2, 3, 4, IGNORE_LABEL], dtype=np.uint16)
    return np.repeat(values, 4)[None, :].repeat(6, axis=0)


def test_colours_and_alpha_follow_the_part_table():
    parts = PartTable.default(4)
    out = render_overlay(stripes(), parts, OverlayStyle(opacity=0.4))
    assert out.shape == (6, 24, 4) and out.dtype == np.uint8
    assert (out[:, 0:4, 3] == 0).all()  # background transparent
    for slot in range(4):
        assert tuple(out[2, 4 * (slot + 1)]) == (*parts.display_color(slot), 102)
    assert tuple(out[2, 20]) == (*IGNORE_RGB, 102)


def test_hidden_ignored_and_merged_slots():
    parts = PartTable.default(4)
    parts.merge(2, 0)  # slot 2 shows as slot 0
    parts.set_as_background(3)
    out = render_overlay(stripes(), parts, OverlayStyle(opacity=1.0))
    assert tuple(out[0, 12, :3]) == parts[0].color != parts[2].color  # merged slot takes its root's colour
    assert tuple(out[0, 16]) == (*IGNORED_SLOT_RGB, 127)  # ignored slot: dim grey
    hidden = render_overlay(stripes(), parts, OverlayStyle(opacity=1.0, hidden_slots=frozenset({0})))
    assert (hidden[:, 4:8, 3] == 0).all() and (hidden[:, 12:16, 3] == 0).all()  # hiding the root hides its group
    assert (hidden[:, 8:12, 3] == 255).all()
    only_member = render_overlay(stripes(), parts, OverlayStyle(hidden_slots=frozenset({2})))
    assert (only_member[:, 12:16, 3] == 0).all() and (only_member[:, 4:8, 3] > 0).all()
    no_ignored = render_overlay(stripes(), parts, OverlayStyle(show_ignored=False))
    assert (no_ignored[:, 16:24, 3] == 0).all()


def test_unknown_label_values_draw_as_background():
    labels = np.array([[1, 99, IGNORE_LABEL, 70000 % 65536]], dtype=np.uint16)
    out = render_overlay(labels, PartTable.default(2), OverlayStyle())
    assert out[0, 0, 3] > 0 and out[0, 1, 3] == 0 and out[0, 2, 3] > 0 and out[0, 3, 3] == 0
    assert colour_lut(PartTable.default(2), OverlayStyle()).shape == (4, 4)


def test_outline_marks_display_boundaries_only():
    parts = PartTable.default(3)
    labels = np.zeros((12, 12), dtype=np.uint8)
    labels[2:10, 2:6] = 1
    labels[2:10, 6:10] = 2
    out = render_overlay(labels, parts, OverlayStyle(outline_only=True, opacity=0.2))
    edge = out[..., 3] > 0
    assert (out[edge, 3] == 255).all()  # outlines are opaque whatever the opacity
    assert edge[2, 2] and edge[9, 4] and edge[5, 5] and edge[5, 6]  # ring and the seam between the parts
    assert not edge[5, 3] and not edge[5, 8] and not edge[0, 0]
    parts.merge(1, 0)
    merged = render_overlay(labels, parts, OverlayStyle(outline_only=True))[..., 3] > 0
    assert not merged[5, 5] and not merged[5, 6]  # merged parts draw no seam
    assert merged[2, 2] and merged[9, 8]


def test_heatmap_colours_foreground_by_confidence():
    parts = PartTable.default(2)
    labels = np.array([[0, 1, 2, 1]], dtype=np.uint8)
    confidence = np.array([[1.0, 0.0, 1.0, 0.5]], dtype=np.float32)
    out = render_overlay(labels, parts, OverlayStyle(heatmap=True, opacity=1.0), confidence)
    assert out[0, 0, 3] == 0
    assert tuple(out[0, 1, :3]) == tuple(HEAT_COLORMAP[0]) and tuple(out[0, 2, :3]) == tuple(HEAT_COLORMAP[255])
    assert out[0, 1, 2] > out[0, 1, 1] and out[0, 2, 1] > out[0, 2, 2]  # low = blue-ish, high = yellow
    assert (out[0, 1:, 3] == 255).all()
    hidden = render_overlay(labels, parts, OverlayStyle(heatmap=True, hidden_slots=frozenset({1})), confidence)
    assert hidden[0, 2, 3] == 0
    without = render_overlay(labels, parts, OverlayStyle(heatmap=True, opacity=1.0))  # no map: part colours
    assert tuple(without[0, 1, :3]) == parts.display_color(0)


@pytest.mark.parametrize("style", [OverlayStyle(), OverlayStyle(outline_only=True),
                                   OverlayStyle(heatmap=True, outline_only=True)])
def test_box_render_equals_the_crop_of_a_full_render(style):
    rng = np.random.default_rng(1)
    labels = np.kron(rng.integers(0, 5, (8, 10)), np.ones((5, 5), dtype=np.int64)).astype(np.uint16)
    labels[0:3, 0:7] = IGNORE_LABEL
    confidence = rng.random(labels.shape).astype(np.float32)
    parts = PartTable.default(4)
    full = render_overlay(labels, parts, style, confidence)
    for box in [(slice(0, 40), slice(0, 50)), (slice(7, 19), slice(3, 4)), (slice(0, 1), slice(10, 50)),
                (slice(33, None), slice(None, 12)), (slice(5, 5), slice(0, 10))]:
        np.testing.assert_array_equal(render_overlay(labels, parts, style, confidence, box), full[box])


def test_render_is_fast_on_a_large_map():
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 17, (150, 200)), np.ones((20, 20), dtype=np.uint8)).astype(np.uint8)
    parts = PartTable.default(16)
    start = time.perf_counter()
    out = render_overlay(labels, parts, OverlayStyle())
    elapsed = time.perf_counter() - start
    assert out.shape == (3000, 4000, 4)
    assert elapsed < 1.5, f"rendering a 4000x3000 overlay took {elapsed:.2f} s"


def test_qimage_conversions_own_their_pixels():
    array = np.zeros((3, 5, 4), dtype=np.uint8)
    array[1, 2] = (10, 20, 30, 255)
    image = rgba_to_qimage(array)
    del array
    assert (image.width(), image.height()) == (5, 3)
    colour = image.pixelColor(2, 1)
    assert (colour.red(), colour.green(), colour.blue(), colour.alpha()) == (10, 20, 30, 255)
    pil = Image.new("RGB", (7, 3), (1, 2, 3))
    pil.putpixel((6, 2), (200, 100, 50))
    qimage = pil_to_qimage(pil)
    assert (qimage.width(), qimage.height()) == (7, 3)
    assert qimage.pixelColor(6, 2).getRgb()[:3] == (200, 100, 50)
    assert pil_to_qimage(Image.new("P", (2, 2))).width() == 2
    assert pil_to_qimage(Image.new("L", (4, 2), 77)).pixelColor(3, 1).red() == 77


# ----- canvas -------------------------------------------------------------------------------------------------------
@pytest.fixture
def loaded(qtbot, predicted_project):
    """A shown 600x450 canvas with the first image, its overlay, confidence and edit layer."""
    project = predicted_project
    relpath = project.relpaths()[0]
    prediction = project.prediction(relpath)
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(600, 450)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(pil_to_qimage(load_image(project.image_path(relpath))))
    canvas.set_parts(project.parts)
    canvas.set_annotation(project.label_map(relpath), prediction.confidence_map())
    layer = project.edits(relpath)
    canvas.set_edit_target(layer, prediction.label_map())
    return canvas, layer, prediction.label_map(), project


def view_pos(canvas: ImageCanvas, x: float, y: float) -> QPoint:
    """The viewport position of the centre of image pixel (x, y)."""
    return canvas.mapFromScene(QPointF(x + 0.5, y + 0.5))


def drag(qtbot, canvas: ImageCanvas, points, button=Qt.MouseButton.LeftButton) -> None:
    viewport = canvas.viewport()
    positions = [view_pos(canvas, x, y) for x, y in points]
    qtbot.mousePress(viewport, button, pos=positions[0])
    for pos in positions[1:]:
        qtbot.mouseMove(viewport, pos)
    qtbot.mouseRelease(viewport, button, pos=positions[-1])


def overlay_rgba(canvas: ImageCanvas) -> np.ndarray:
    image = canvas.overlay_image().convertToFormat(QImage.Format.Format_RGBA8888)
    pixels = np.array(image.constBits(), dtype=np.uint8).reshape(image.height(), image.width(), 4)
    return pixels.astype(int)


def test_canvas_shows_the_image_and_zooms(loaded, qtbot):
    canvas, *_ = loaded
    viewport = canvas.viewport().size()
    fit = min(viewport.width() / 128, viewport.height() / 96)
    assert canvas.zoom() == pytest.approx(fit)
    assert canvas.overlay_image().size().toTuple() == (128, 96)
    with qtbot.waitSignal(canvas.zoomChanged) as changed:
        canvas.zoom_actual()
    assert changed.args == [pytest.approx(1.0)] and canvas.zoom() == pytest.approx(1.0)
    canvas.zoom_by(2.0)
    assert canvas.zoom() == pytest.approx(2.0)
    canvas.zoom_by(1e6)
    assert canvas.zoom() == pytest.approx(64.0)  # clamped
    canvas.zoom_fit()
    assert canvas.zoom() == pytest.approx(fit)
    canvas.resize(300, 450)
    qtbot.wait(10)
    assert canvas.zoom() < fit  # stays fitted when the window shrinks


def test_wheel_zooms_around_the_cursor(loaded):
    canvas, *_ = loaded
    canvas.zoom_actual()
    anchor = view_pos(canvas, 100, 20)
    before = canvas.mapToScene(anchor)
    event = QWheelEvent(QPointF(anchor), QPointF(canvas.viewport().mapToGlobal(anchor)), QPoint(0, 0),
                        QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas.viewport(), event)
    assert canvas.zoom() == pytest.approx(1.25 ** 2)
    after = canvas.mapToScene(anchor)
    assert abs(after.x() - before.x()) < 1.0 and abs(after.y() - before.y()) < 1.0


def test_middle_drag_and_pan_tool_pan(loaded, qtbot):
    canvas, layer, *_ = loaded
    canvas.zoom_by(4.0)
    canvas.set_tool("brush")
    start = canvas.mapToScene(canvas.viewport().rect().center())
    centre = canvas.viewport().rect().center()
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.MiddleButton, pos=centre)
    qtbot.mouseMove(canvas.viewport(), centre + QPoint(80, 40))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.MiddleButton, pos=centre + QPoint(80, 40))
    moved = canvas.mapToScene(canvas.viewport().rect().center())
    zoom = canvas.zoom()
    assert moved.x() == pytest.approx(start.x() - 80 / zoom, abs=0.2)
    assert moved.y() == pytest.approx(start.y() - 40 / zoom, abs=0.2)
    assert not layer.has_edits  # panning with the brush selected paints nothing
    canvas.set_tool("pan")
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(canvas.viewport(), centre - QPoint(80, 40))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre - QPoint(80, 40))
    back = canvas.mapToScene(canvas.viewport().rect().center())
    assert abs(back.x() - start.x()) < 1.0 and abs(back.y() - start.y()) < 1.0
    canvas.set_tool("brush")
    qtbot.keyPress(canvas, Qt.Key.Key_Space)  # space held: the left button pans whatever the tool
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(canvas.viewport(), centre + QPoint(40, 0))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre + QPoint(40, 0))
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.mapToScene(canvas.viewport().rect().center()).x() == pytest.approx(start.x() - 40 / zoom, abs=0.2)
    assert not layer.has_edits


def test_brush_drag_is_one_undo_step(loaded, qtbot):
    canvas, layer, prediction, project = loaded
    canvas.set_tool("brush")
    canvas.set_brush_radius(3)
    canvas.set_active_label(1)  # slot 0 is absent from this image's prediction
    with qtbot.waitSignal(canvas.edited):
        drag(qtbot, canvas, [(10, 10), (20, 10), (30, 12), (40, 10)])
    assert (layer.data[10, 10:41] == 1).all() and (layer.data[12, 30] == 1)
    assert layer.data[10, 50] == UNSET and layer.data[20, 25] == UNSET
    labels = canvas.labels()
    np.testing.assert_array_equal(labels, layer.composed(prediction))
    overlay = overlay_rgba(canvas)
    expected = render_overlay(labels, project.parts, canvas.style(), None)
    assert np.abs(overlay - expected).max() <= 2  # the box repaint matches a full render
    assert tuple(overlay[10, 25, :3]) == pytest.approx(project.parts.display_color(0), abs=2)
    assert layer.undo()
    assert not layer.has_edits and not layer.can_undo  # the whole drag was one step


def test_brush_without_edit_target_does_nothing(loaded, qtbot):
    canvas, layer, *_ = loaded
    canvas.set_edit_target(None, None)
    canvas.set_tool("brush")
    with qtbot.assertNotEmitted(canvas.edited):
        drag(qtbot, canvas, [(10, 10), (40, 10)])
        canvas.set_tool("fill")
        drag(qtbot, canvas, [(5, 5)])
    assert not layer.has_edits


def test_brush_with_background_and_eraser_back_to_prediction(loaded, qtbot):
    canvas, layer, prediction, _ = loaded
    assert prediction[20, 100] == 2
    canvas.set_tool("brush")
    canvas.set_brush_radius(4)
    canvas.set_active_label(0)
    drag(qtbot, canvas, [(90, 20), (110, 20)])
    assert canvas.labels()[20, 100] == 0 and layer.data[20, 100] == 0
    canvas.set_tool("eraser")
    with qtbot.waitSignal(canvas.edited):
        drag(qtbot, canvas, [(85, 20), (115, 20)])
    assert not layer.has_edits
    np.testing.assert_array_equal(canvas.labels(), prediction)
    assert layer.undo() and layer.data[20, 100] == 0  # the erase drag is its own step
    canvas.recompose()
    assert canvas.labels()[20, 100] == 0


def test_fill_sets_the_connected_region(loaded, qtbot):
    canvas, layer, prediction, _ = loaded
    canvas.set_tool("fill")
    canvas.set_active_label(IGNORE_LABEL)
    with qtbot.waitSignal(canvas.edited):
        drag(qtbot, canvas, [(5, 5)])
    labels = canvas.labels()
    assert labels[5, 5] == IGNORE_LABEL and labels[0, 60] == IGNORE_LABEL  # the whole top-left background
    assert labels[20, 100] == prediction[20, 100] == 2
    np.testing.assert_array_equal(labels, layer.composed(prediction))
    assert tuple(overlay_rgba(canvas)[5, 5, :3]) == pytest.approx(IGNORE_RGB, abs=2)


def test_hover_names_the_part_and_confidence(loaded, qtbot):
    canvas, _, _, project = loaded
    texts: list[str] = []
    canvas.hovered.connect(texts.append)
    qtbot.mouseMove(canvas.viewport(), view_pos(canvas, 100, 20))
    assert texts and texts[-1].startswith("x 100, y 20 · ")
    assert project.parts.display_name(1) in texts[-1] and texts[-1].endswith(" %")
    qtbot.mouseMove(canvas.viewport(), view_pos(canvas, 5, 5))
    assert "background" in texts[-1]
    canvas.zoom_actual()
    qtbot.mouseMove(canvas.viewport(), QPoint(2, 2))  # outside the 128x96 image at 100 %
    assert texts[-1] == ""
    QApplication.sendEvent(canvas.viewport(), QEvent(QEvent.Type.Leave))
    assert texts[-1] == ""
    project.parts.rename(1, "beak")
    canvas.set_parts(project.parts)
    assert "beak" in canvas.describe_pixel(100, 20)


def test_style_changes_redraw_and_screenshot(loaded, qtbot):
    canvas, _, _, project = loaded
    canvas.set_style(OverlayStyle(outline_only=True))
    outline = overlay_rgba(canvas)
    assert (outline[..., 3] == 255).sum() < (outline[..., 3] > 0).size // 3
    canvas.set_style(replace(canvas.style(), outline_only=False, heatmap=True, opacity=0.6))
    assert tuple(overlay_rgba(canvas)[5, 5]) == (0, 0, 0, 0)
    canvas.set_style(OverlayStyle(opacity=0.55))
    canvas.set_tool("brush")
    canvas.set_brush_radius(6)
    canvas.set_active_label(1)
    drag(qtbot, canvas, [(15, 15), (30, 20), (45, 15)])
    qtbot.mouseMove(canvas.viewport(), view_pos(canvas, 60, 30))  # leave the brush circle in view
    qtbot.wait(20)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = canvas.grab()
    assert shot.save(str(ARTIFACTS / "canvas.png"))
    assert (shot.width(), shot.height()) == (600, 450)

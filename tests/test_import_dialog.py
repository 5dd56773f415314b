"""File ▸ Import, headless (pytest-qt): the preview of formats, labels and images, the import on its worker thread,
the window letting go of its project meanwhile and showing the imported work afterwards, and a read-only refusal."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from app.import_dialog import ImportDialog  # noqa: E402
from mpae_core.annotation import AnnotationProject, ImageStatus  # noqa: E402
from mpae_core.annotation.export import export_indices  # noqa: E402
from mpae_core.annotation.parts import ExportLabel  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
              pytest.mark.usefixtures("private_settings")]  # settings in tmp_path (conftest)
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def coco_source(project: AnnotationProject, tmp_path: Path) -> Path:
    """A COCO file for two of the project's images and one it does not have, naming a part and a new label."""
    relpaths = project.relpaths()
    height, width = project.record(relpaths[0]).size
    indices = np.zeros((height, width), np.uint8)
    indices[10:40, 10:60] = 1
    indices[50:80, 70:120] = 2
    items = [(relpaths[0], indices), (relpaths[1], indices), ("zebra.png", np.zeros((4, 4), np.uint8))]
    labels = [ExportLabel(1, "part_01", (1, 2, 3)), ExportLabel(2, "horn", (200, 100, 0))]
    export_indices(items, labels, tmp_path / "src", formats="coco")
    return tmp_path / "src" / "coco.json"


def wait_preview(qtbot, dialog: ImportDialog) -> None:
    qtbot.waitUntil(lambda: not dialog.is_previewing() and dialog._preview is not None, timeout=20000)


def test_the_dialog_previews_then_imports_on_a_worker(qtbot, tmp_path, predicted_project):
    project = predicted_project
    source = coco_source(project, tmp_path)
    project.edits(project.relpaths()[1]).brush(5, 5, 3, 1)  # the person's work on the second image
    dialog = ImportDialog(project, source=source)
    qtbot.addWidget(dialog)
    dialog.show()
    wait_preview(qtbot, dialog)
    assert dialog.format_label.text() == "COCO instances JSON" and str(source) in dialog.format_label.toolTip()
    rows = [(dialog.labels_table.item(r, 1).text(), dialog.labels_table.item(r, 2).text())
            for r in range(dialog.labels_table.rowCount())]
    assert rows == [("part_01", "part 'part_01'"), ("horn", "new label")]
    text = dialog.images_label.text()
    assert text.startswith("3 annotated images in the source: 2 of this project's, of which 1 already annotated here "
                           "(kept as they are)")
    assert "'zebra.png' is not an image of this project" in text
    assert dialog.import_button.isEnabled()
    ARTIFACTS.mkdir(exist_ok=True)
    qtbot.wait(50)  # let the layout take the preview's size
    assert dialog.grab().save(str(ARTIFACTS / "import_dialog.png"))

    with qtbot.waitSignal(dialog.ended, timeout=30000) as ended:
        assert dialog.start_import()
    assert ended.args == ["done"], dialog.message_label.text()
    report = dialog.report()
    assert report.imported == [project.relpaths()[0]] and report.created == ["horn"] and len(report.kept) == 1
    assert "Imported 1 image" in dialog.message_label.text() and "New labels: horn." in dialog.message_label.text()
    assert not dialog.import_button.isEnabled() and dialog.cancel_button.text() == "Close"
    reopened = AnnotationProject.open(project.images_folder, write=False)  # the default release saved and closed it
    first, second = reopened.relpaths()[:2]
    assert reopened.record(first).status is ImageStatus.EDITED and reopened.record(second).has_edits
    horn = reopened.parts.user_labels[0]
    assert horn.name == "horn"  # COCO keeps no colours: a palette colour
    assert reopened.label_map(first)[60, 80] == horn.value and reopened.label_map(first)[20, 20] == 1


def test_a_read_only_project_cannot_import(qtbot, tmp_path, predicted_project):
    source = coco_source(predicted_project, tmp_path)
    second = AnnotationProject.open(predicted_project.images_folder)  # the first one holds the lock
    dialog = ImportDialog(second, source=source)
    qtbot.addWidget(dialog)
    wait_preview(qtbot, dialog)
    assert not dialog.import_button.isEnabled()
    assert dialog.import_button.toolTip().startswith("This project is read-only here: another window or process")
    assert not dialog.start_import() and "read-only" in dialog.message_label.text()


def test_a_source_that_cannot_be_read_says_why(qtbot, tmp_path, predicted_project):
    (tmp_path / "notes.json").write_text("{}")
    dialog = ImportDialog(predicted_project, source=tmp_path / "notes.json")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.is_previewing() and bool(dialog.message_label.text()), timeout=20000)
    assert "is not an annotation file this app reads" in dialog.message_label.text()
    assert not dialog.import_button.isEnabled()
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("coco"))  # the person insists: COCO
    qtbot.waitUntil(lambda: not dialog.is_previewing() and "not a readable COCO file" in dialog.message_label.text(),
                    timeout=20000)


def test_file_import_in_the_window_releases_and_reopens_the_project(qtbot, tmp_path, predicted_project,
                                                                    monkeypatch):
    from app.settings import AppSettings
    from app.window import MainWindow

    folder = predicted_project.images_folder
    source = coco_source(predicted_project, tmp_path)
    predicted_project.close()
    window = MainWindow(AppSettings(), save_settings=False)
    qtbot.addWidget(window)
    window.show()
    assert window.open_folder(folder, load_project_checkpoint=False)
    third = window.project.relpaths()[2]
    window.show_image(third)
    monkeypatch.setattr(ImportDialog, "exec", lambda self: self.show())  # modal exec would block the test
    assert window.act_import.isEnabled() and "&Import…" in [a.text() for a in window.menuBar().actions()[0].menu()
                                                             .actions()]
    window.act_import.trigger()
    dialog = window.findChild(ImportDialog)
    dialog.source_edit.setText(str(source))
    dialog.start_preview()
    wait_preview(qtbot, dialog)
    with qtbot.waitSignal(dialog.ended, timeout=30000):
        assert dialog.start_import()
    qtbot.waitUntil(lambda: window.project is not None, timeout=5000)
    assert window.current == third  # the image shown before
    first = window.project.relpaths()[0]
    assert window.project.record(first).status is ImageStatus.EDITED
    assert window.file_model.row_of(first) >= 0 and window.project.read_only is None
    assert [u.name for u in window.project.parts.user_labels] == ["horn"]
    assert "Imported 2 images" in window.statusBar().currentMessage()
    window.close()

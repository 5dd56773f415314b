"""The window never loses or downgrades work: a model that does not fit is refused or asked about, re-predicting
asks and keeps edits and reviews, the index is saved on a clock during runs, changed or deleted photos are flagged,
and a second window on the same folder is read-only."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from conftest import make_predicted_project, tiny_model
from mpae_core.annotation import AnnotationProject, FileState, ImageStatus
from mpae_core.annotation.records import file_stamp
from mpae_core.checkpoint import model_fingerprint, save_checkpoint
from test_app_window import ARTIFACTS, load, make_folder, predict_all
from test_app_window import window  # noqa: F401 (fixture: a shown window)

pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints: 'a' (K=4), 'b' and 'c' (K=4, other weights), 'a_refined' (from a), 'k6' (K=6)."""
    folder = tmp_path_factory.mktemp("models")
    a = tiny_model(seed=3)
    a.info.part_names[0] = "head"
    paths = {"a": save_checkpoint(a, folder / "a.safetensors", embed_backbone=True)}
    b = tiny_model(seed=5)
    paths["b"] = save_checkpoint(b, folder / "b.safetensors", embed_backbone=True)
    c = tiny_model(seed=7)
    c.info.part_names[:] = ["eye", "nose", "mouth", "ear"]
    paths["c"] = save_checkpoint(c, folder / "c.safetensors", embed_backbone=True)
    refined = tiny_model(seed=9)
    paths["a_refined"] = save_checkpoint(refined, folder / "a_refined.safetensors", embed_backbone=True,
                                         provenance={"lineage": [model_fingerprint(a)]})
    paths["k6"] = save_checkpoint(tiny_model(seed=3, num_parts=6), folder / "k6.safetensors", embed_backbone=True)
    return paths


class DialogAnswers:
    """Answers the next modal message boxes by clicking a button whose text starts with the given words; keeps
    what each box said, and saves a picture of it when asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[str]]] = []  # (text, informative text, button texts)
        self._queue: list[tuple[str, Path | None]] = []
        self._timer = QTimer(interval=20)
        self._timer.timeout.connect(self._poll)

    def answer(self, button: str, picture: Path | None = None) -> "DialogAnswers":
        self._queue.append((button, picture))
        self._timer.start()
        return self

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _poll(self) -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox) or not box.isVisible() or not self._queue:
            return
        button, picture = self._queue.pop(0)
        texts = [b.text().replace("&", "") for b in box.buttons()]
        self.seen.append((box.text(), box.informativeText(), texts))
        if picture is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            assert box.grab().save(str(picture))
        matches = [b for b in box.buttons() if b.text().replace("&", "").startswith(button)]
        assert matches, f"no button '{button}' in {texts}"
        matches[0].click()
        if not self._queue:
            self._timer.stop()


def load_and_answer(qtbot, win, checkpoint: Path, answers: DialogAnswers | None = None) -> None:
    load(qtbot, win, checkpoint)
    if answers is not None:
        assert answers.pending == 0, "the question that was expected never came"


def index_on_disk(folder: Path) -> dict:
    return json.loads((folder / ".mpae" / "project.json").read_text())


def paint(win, relpath: str) -> int:
    """A finished stroke on the image's edit layer, reported to the window as the canvas reports one."""
    layer = win.project.edits(relpath)
    layer.stroke(10, 10, 60, 40, 6, 1)
    win.canvas.edited.emit()
    return layer.edited_pixels


# ---------------------------------------------------------------------------------------------------- model fit
def test_a_model_with_another_number_of_parts_is_refused_and_changes_nothing(qtbot, window, models, tmp_path):
    folder = tmp_path / "images"
    project = make_predicted_project(folder)
    project.mark_reviewed("img_00.png")
    project.edits("img_01.png").stroke(5, 5, 30, 30, 4, 2)
    project.close()
    before = {r.relpath: r.status for r in AnnotationProject.open(folder, write=False).records()}

    assert window.open_folder(folder)
    answers = DialogAnswers().answer("OK", ARTIFACTS / "k_mismatch_refusal.png")
    load_and_answer(qtbot, window, models["k6"], answers)
    text, informative, buttons = answers.seen[0]
    assert text == window.project.describe_misfit("k6.safetensors", 6)
    assert "k6.safetensors" in text and "6 parts" in text and "4" in text and "\n" not in text
    assert not informative and buttons == ["OK"]
    assert not window.act_predict.isEnabled() and not window.act_predict_all.isEnabled()
    assert not window.act_repredict_all.isEnabled()

    window.predict_all()
    window.predict_current()
    qtbot.wait(200)
    assert not window.predicting
    assert {r.relpath: r.status for r in window.project.records()} == before
    assert window.project.checkpoint is None and window.project.model_family == []
    window.save_project()
    on_disk = index_on_disk(folder)
    assert on_disk["checkpoint"] is None and on_disk["model_family"] == []
    assert {r["path"]: r["status"] for r in on_disk["images"]} == {k: v.value for k, v in before.items()}
    assert window.project.parts.num_parts == 4
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "k_mismatch_window.png"))


def test_another_model_with_the_same_parts_is_used_only_after_the_person_chose(qtbot, window, models, tmp_path):
    folder = make_folder(tmp_path / "photos", count=3, broken=False)
    window.open_folder(folder)
    load(qtbot, window, models["a"])  # a new project: the model's table, silently
    predict_all(qtbot, window)
    project = window.project
    fingerprint_a = window.session.identity.fingerprint
    assert project.model_family == [fingerprint_a] and project.parts.display_name(0) == "head"
    record = project.record("photo_00.jpg")
    assert record.model == fingerprint_a and record.stamp == file_stamp(folder / "photo_00.jpg")
    project.parts.rename(1, "wing")
    painted = paint(window, "photo_01.jpg")

    # a refinement of model a fits without a question
    load_and_answer(qtbot, window, models["a_refined"])
    assert window.act_predict_all.isEnabled()

    # model b: the question; Cancel changes nothing and keeps predicting off
    answers = DialogAnswers().answer("Cancel", ARTIFACTS / "unknown_model_question.png")
    load_and_answer(qtbot, window, models["b"], answers)
    text, informative, buttons = answers.seen[0]
    assert "b.safetensors" in text and "head, wing" in informative
    assert sorted(buttons) == ["Cancel", "Start a new part table from this model", "Use with the current part names"]
    assert not window.act_predict_all.isEnabled()
    assert project.model_family == [fingerprint_a]

    # model b again: keep the names; it joins the family and predicts with them
    load_and_answer(qtbot, window, models["b"], DialogAnswers().answer("Use with the current"))
    fingerprint_b = window.session.identity.fingerprint
    assert project.model_family == [fingerprint_a, fingerprint_b]
    assert window.act_predict_all.isEnabled()
    with qtbot.waitSignal(window.predictionFinished, timeout=60_000):
        window.predict_current()
    qtbot.waitUntil(lambda: not window.predicting, timeout=10_000)
    assert project.record(window.current).model == fingerprint_b
    assert project.parts.display_name(1) == "wing"

    # model c: a new part table from its names; names and merges are replaced, the edits stay
    load_and_answer(qtbot, window, models["c"], DialogAnswers().answer("Start a new part table"))
    assert project.model_family == [window.session.identity.fingerprint]
    assert [project.parts.display_name(s) for s in range(4)] == ["eye", "nose", "mouth", "ear"]
    assert project.edits("photo_01.jpg").edited_pixels == painted
    assert project.record("photo_01.jpg").status is ImageStatus.EDITED
    assert window.paint_label.findText("eye") >= 0


def test_the_checkpoint_is_recorded_only_once_a_fitting_model_predicted(qtbot, window, models, tmp_path):
    folder = make_folder(tmp_path / "photos", count=2, broken=False)
    window.open_folder(folder)
    load(qtbot, window, models["a"])
    assert window.project.checkpoint is None  # loading alone records nothing
    predict_all(qtbot, window)
    assert window.project.checkpoint == models["a"]


# ---------------------------------------------------------------------------------------------------- re-predict
def test_repredict_every_image_asks_and_keeps_edits_and_reviews(qtbot, window, models, tmp_path):
    folder = make_folder(tmp_path / "photos", count=5, broken=False)
    window.open_folder(folder)
    load(qtbot, window, models["a"])
    predict_all(qtbot, window)
    project = window.project
    painted = paint(window, "photo_01.jpg")
    project.mark_reviewed("photo_02.jpg")

    answers = DialogAnswers().answer("Cancel")
    window.repredict_all()
    qtbot.waitUntil(lambda: answers.pending == 0, timeout=10_000)
    assert not window.predicting

    answers = DialogAnswers().answer("Re-predict only the 3 untouched images", ARTIFACTS / "repredict_question.png")
    with qtbot.waitSignal(window.predictionFinished, timeout=60_000) as blocker:
        window.repredict_all()
    text, informative, _ = answers.seen[0]
    assert "5 images" in text and "1 of them have edits and 1 are marked reviewed" in informative
    assert blocker.args[0].total == 3
    qtbot.waitUntil(lambda: not window.predicting, timeout=10_000)

    answers = DialogAnswers().answer("Re-predict all")
    with qtbot.waitSignal(window.predictionFinished, timeout=60_000) as blocker:
        window.repredict_all()
    assert blocker.args[0].total == 5 and blocker.args[0].done == 5
    qtbot.waitUntil(lambda: not window.predicting, timeout=10_000)
    assert project.record("photo_02.jpg").status is ImageStatus.REVIEWED
    assert project.record("photo_01.jpg").status is ImageStatus.EDITED
    assert project.edits("photo_01.jpg").edited_pixels == painted


# ---------------------------------------------------------------------------------------------------- saving
def test_the_index_is_written_on_a_clock_while_a_run_goes_on(qtbot, window, models, tmp_path):
    folder = make_folder(tmp_path / "photos", count=24, broken=False)
    window.open_folder(folder)
    window.settings.batch_size = 2
    load(qtbot, window, models["a"])
    predictor = window.session.predictor
    predict = predictor.predict

    def slow_predict(*args, **kwargs):  # ~0.2 s a batch: a run of 2.4 s or more, a new prediction every 0.1 s
        time.sleep(0.2)
        return predict(*args, **kwargs)

    predictor.predict = slow_predict
    seen_during_run = []
    poll = QTimer(interval=100)
    poll.timeout.connect(lambda: seen_during_run.append(
        sum(r["prediction"] for r in index_on_disk(folder)["images"])) if window.predicting else None)
    poll.start()
    summary = predict_all(qtbot, window)
    poll.stop()
    assert summary.done == 24
    assert max(seen_during_run, default=0) >= 4, f"the index was not written during the run: {seen_during_run}"


def test_a_finished_stroke_is_on_disk_within_a_second(qtbot, window, tmp_path):
    folder = tmp_path / "images"
    make_predicted_project(folder).close()
    window.open_folder(folder)
    painted = paint(window, "img_00.png")
    qtbot.wait(900)
    copy = AnnotationProject.open(folder, write=False)
    assert copy.record("img_00.png").has_edits
    assert copy.edits("img_00.png").edited_pixels == painted


def test_a_failed_background_save_is_reported_and_written_again(qtbot, window, tmp_path, monkeypatch):
    from mpae_core.annotation import project as project_module

    folder = tmp_path / "images"
    make_predicted_project(folder).close()
    window.open_folder(folder)
    window.saver.flush()

    def full_disk(path, data, **_options):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(project_module, "atomic_write_json", full_disk)
    window.project.mark_reviewed("img_03.png")
    with qtbot.waitSignal(window.saver.failed, timeout=5_000) as failed:
        window.saver.save_in_background()
    assert "No space left" in failed.args[0] and "project.json" in failed.args[0]
    assert "No space left" in window.statusBar().currentMessage()
    assert window.project.dirty  # marked unsaved: the next save writes it
    monkeypatch.undo()
    window.saver.flush()
    assert AnnotationProject.open(folder, write=False).record("img_03.png").status is ImageStatus.REVIEWED


# ---------------------------------------------------------------------------------------------------- files on disk
def test_changed_and_deleted_photos_are_flagged_in_the_list_problems_and_export(qtbot, window, models, tmp_path):
    from app.export_dialog import ExportDialog
    from app.file_list import FileStateRole

    folder = tmp_path / "images"
    make_predicted_project(folder).close()
    Image.new("RGB", (64, 48), "red").save(folder / "img_01.png")  # replaced by another photo
    (folder / "img_02.png").unlink()
    with qtbot.waitSignal(window.filesChecked, timeout=10_000) as checked:
        window.open_folder(folder)
    assert sorted(checked.args[0]) == ["img_01.png", "img_02.png"]
    model = window.file_model
    state = {r: model.index(model.row_of(r)).data(FileStateRole) for r in ("img_00.png", "img_01.png", "img_02.png")}
    assert state == {"img_00.png": "", "img_01.png": "changed", "img_02.png": "missing"}
    assert "changed on disk" in model.index(model.row_of("img_01.png")).data(Qt.ToolTipRole)
    problems = [window.problems.item(i).text() for i in range(window.problems.count())]
    assert ("'img_01.png' changed on disk after it was predicted: its mask may not fit; predict it again (edits "
            "are kept).") in problems
    assert any(p.startswith("'img_02.png' was deleted") for p in problems)
    window.problems_dock.raise_()
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "changed_files_window.png"))

    dialog = ExportDialog(window.project, window)
    qtbot.addWidget(dialog)
    assert any("Left out: 1 images that changed on disk" in label.text() for label in dialog.findChildren(QLabel))
    dialog.close()

    # the shown image is checked when it is shown
    Image.new("RGB", (128, 96), "blue").save(folder / "img_03.png")
    window.show_image("img_03.png")
    assert window.project.record("img_03.png").file_state is FileState.CHANGED
    assert any(window.problems.item(i).text().startswith("'img_03.png' changed")
               for i in range(window.problems.count()))

    # predicting it again clears the flag and its problem line
    load(qtbot, window, models["a"])
    with qtbot.waitSignal(window.predictionFinished, timeout=60_000):
        window.predict_current()
    qtbot.waitUntil(lambda: not window.predicting, timeout=10_000)
    assert window.project.record("img_03.png").file_state is FileState.UNCHANGED
    assert not any("img_03.png" in window.problems.item(i).text() for i in range(window.problems.count()))


def test_the_stamp_is_the_file_as_it_was_read_not_as_it_is_when_stored(qtbot, window, models, tmp_path,
                                                                       monkeypatch):
    from app import workers

    folder = make_folder(tmp_path / "photos", count=1, broken=False)
    window.open_folder(folder)
    load(qtbot, window, models["a"])
    read = workers.load_image

    def read_then_replaced(path):
        image = read(path)
        with open(path, "ab") as handle:  # someone saves another version while the model runs
            handle.write(b"\0" * 64)
        return image

    monkeypatch.setattr(workers, "load_image", read_then_replaced)
    predict_all(qtbot, window)
    assert window.project.check_files() == ["photo_00.jpg"]
    assert window.project.record("photo_00.jpg").file_state is FileState.CHANGED


# ---------------------------------------------------------------------------------------------------- read-only
def test_a_second_window_on_the_same_folder_is_read_only(qtbot, window, models, tmp_path):
    from app.parts_panel import COL_NAME
    from app.settings import AppSettings
    from app.window import MainWindow

    folder = tmp_path / "images"
    make_predicted_project(folder).close()
    assert window.open_folder(folder)
    assert window.project.read_only is None and window.read_only_banner.isHidden()

    second = MainWindow(AppSettings(batch_size=2))
    qtbot.addWidget(second)
    second.resize(1280, 800)
    second.show()
    assert second.open_folder(folder)
    assert second.project.read_only and "another window" in second.project.read_only
    assert second.read_only_banner.isVisible() and "Read-only" in second.read_only_label.text()
    assert "(read-only)" in second.windowTitle()
    load(qtbot, second, models["a"])
    for action in (second.act_predict, second.act_predict_all, second.act_repredict_all, second.act_reviewed,
                   second.tool_actions["brush"], second.tool_actions["eraser"], second.tool_actions["fill"]):
        assert not action.isEnabled(), action.text()
    assert second.canvas.tool() == "pan" and not second.paint_label.isEnabled()
    panel = second.parts_panel
    assert not panel.model.setData(panel.model.index(panel.model.row_of(1), COL_NAME), "wing")
    assert second.project.parts.display_name(1) != "wing"
    assert not panel.merge_button.isEnabled()
    second.predict_all()
    assert not second.predicting
    ARTIFACTS.mkdir(exist_ok=True)
    assert second.grab().save(str(ARTIFACTS / "read_only_window.png"))
    second.close()

    # the first window still writes; once it closes, the folder opens writable again
    assert window.tool_actions["brush"].isEnabled() and window.act_reviewed.isEnabled()
    window.close()
    third = MainWindow(AppSettings())
    qtbot.addWidget(third)
    assert third.open_folder(folder)
    assert third.project.read_only is None
    third.close()

"""Model ▸ Improve from my corrections in the window (pytest-qt): when the action is on, the refine dialog with a
stand-in command and with the real ``training.run refine`` on a tiny project, loading the refined model without the
"unknown model" question, re-predicting only the images nobody edited or reviewed, its summary, a refused run's
sentence, and Model ▸ Project models.

The stand-in command writes a run folder the way ``training.run refine`` does, with a prepared "refined" model (other
weights, the parent's fingerprint as lineage), so the re-prediction's summary has masks that really change.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from conftest import show_main_window, tiny_model  # noqa: E402
from mpae_core.annotation import AnnotationProject, ImageStatus  # noqa: E402
from mpae_core.checkpoint import LINEAGE_KEY, load_checkpoint, model_fingerprint, save_checkpoint  # noqa: E402
from refine_helpers import K, SIZE, predicted_project, tree_digest  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EDITED, REVIEWED = "img_0.png", "img_1.png"


pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)


@pytest.fixture
def no_model_question(monkeypatch):
    """The refined model must be accepted without asking how to use it."""
    from app import safety_dialogs

    def asked(*_args, **_kwargs):
        raise AssertionError("the window asked about an unknown model")

    monkeypatch.setattr(safety_dialogs, "ask_unknown_model", asked)
    monkeypatch.setattr(safety_dialogs, "refuse_model", asked)


@pytest.fixture
def window(qtbot):
    win = show_main_window(qtbot, size=(1100, 720), device="cpu")
    yield win
    win.close()


def _make_folder(tmp_path: Path, corrected: bool = True) -> Path:
    """Five predicted images; with ``corrected``: part 1 named "head", img_0 painted, img_1 reviewed."""
    project = predicted_project(tmp_path)
    if corrected:
        project.parts.rename(0, "head")
        project.edits(EDITED).brush(20, 18, 8, 1)
        project.mark_reviewed(REVIEWED)
        project.save()
    project.close()
    return project.images_folder


def _open(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignal(window.modelLoaded, timeout=30000):
        assert window.open_folder(folder)
    qtbot.waitUntil(lambda: not window.loading, timeout=5000)
    assert window.session.loaded and window._model_refusal is None


def _files_of(project_dir: Path, relpath: str) -> dict[str, str]:
    """Digests of an image's prediction and edit files."""
    return {k: v for k, v in tree_digest(project_dir).items() if k.startswith(("predictions/", "edits/"))
            and Path(k).name.startswith(relpath)}


def _index(project_dir: Path) -> dict[str, dict]:
    data = json.loads((project_dir / "project.json").read_text())
    return {entry["path"]: entry for entry in data["images"]}


def _save_screenshot(widget, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert widget.grab().save(str(path))
    return path


def _refined_checkpoint(parent: Path, path: Path, seed: int = 1, **provenance) -> Path:
    """A model with other weights that says it was refined from ``parent`` (its lineage), as refine writes it."""
    parent_model = load_checkpoint(parent)
    model = tiny_model(seed=seed, image_size=SIZE, group_size=2, num_parts=K)
    model.info = dataclasses.replace(parent_model.info, provenance={
        LINEAGE_KEY: [model_fingerprint(parent_model)], "refined_from": str(parent), **provenance})
    return save_checkpoint(model, path, embed_backbone=True)


# ----- enabled state -------------------------------------------------------------------------------------------------
def test_improve_is_enabled_only_with_a_writable_project_a_model_and_a_corrected_image(qtbot, window, tmp_path):
    action = window.act_refine
    assert action in window.models_menu.parentWidget().actions()  # Model ▸ Improve from my corrections…
    assert not action.isEnabled() and "Open a folder" in action.toolTip()
    folder = _make_folder(tmp_path, corrected=False)
    assert window.open_folder(folder, load_project_checkpoint=False)
    assert not action.isEnabled() and "Load the model" in action.toolTip()
    with qtbot.waitSignal(window.modelLoaded, timeout=30000):
        window.load_checkpoint(window.project.checkpoint)
    qtbot.waitUntil(lambda: not window.loading, timeout=5000)
    assert not action.isEnabled() and "Edit or review" in action.toolTip()

    window.toggle_reviewed()  # a reviewed image is a correction
    assert action.isEnabled() and "Fine-tune" in action.toolTip()
    window.toggle_reviewed()
    assert not action.isEnabled()

    assert window.wait_for_display()
    layer = window._current_layer()
    assert layer is not None
    layer.brush(10, 10, 4, 1)
    window.canvas.edited.emit()  # what the canvas says when a stroke ends
    assert action.isEnabled()
    window.next_image()  # the counts know the edited image, whichever image is shown
    qtbot.waitUntil(lambda: window._status_counts.get(ImageStatus.EDITED) == 1, timeout=3000)
    assert action.isEnabled()

    window.close_project()
    holder = AnnotationProject.open(folder)  # another window holds the project: this one opens it read-only
    try:
        assert window.open_folder(folder)
        qtbot.waitUntil(lambda: window.session.loaded and not window.loading, timeout=30000)
        assert window.project.read_only is not None
        assert not action.isEnabled() and "read-only" in action.toolTip()
    finally:
        window.close_project()
        holder.close()


# ----- the dialog with a stand-in command ----------------------------------------------------------------------------
STAND_IN = textwrap.dedent('''
    """Stands in for ``python -m training.run``: writes a refine run folder and a model, as refine does."""
    import json, os, shutil, signal, sys, time
    from pathlib import Path

    args = sys.argv[1:]
    out = Path(args[args.index("--out") + 1])
    project = Path(args[args.index("--project") + 1])
    print("stand-in args:", " ".join(args), flush=True)
    if os.environ.get("STAND_IN_ERROR"):
        print("INFO training.run: reading the project", file=sys.stderr, flush=True)
        print("error: " + os.environ["STAND_IN_ERROR"], file=sys.stderr, flush=True)
        sys.exit(1)
    out.mkdir(parents=True, exist_ok=True)
    steps = int(args[args.index("--steps") + 1])
    (out / "config.json").write_text(json.dumps({"command": "refine", "max_steps": steps, "epochs": 0,
                                                 "batch_size": 4}))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # the first signal: end after this step and save
    step = 0
    try:
        with (out / "metrics.jsonl").open("a") as f:
            while step < steps and not stop:
                step += 1
                f.write(json.dumps({"kind": "train", "epoch": 0, "step": step, "images_per_s": 20.0,
                                    "total": 3.0 / step, "supervised": 2.0 / step, "mpae_total": 1.0}) + "\\n")
                f.flush()
                time.sleep(0.05)
        time.sleep(0.5)  # like refine, which scores the corrected images before it saves: a second signal cancels
        target = project / "models" / "refined-standin.safetensors"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(os.environ["STAND_IN_MODEL"], target)
    except KeyboardInterrupt:  # a second signal: cancel, nothing written
        print("Cancelled: no model was written to the project.", file=sys.stderr, flush=True)
        sys.exit(130)
    (out / "result.json").write_text(json.dumps({
        "checkpoint": str(target), "steps": step, "stopped_early": step < steps, "corrected_images": 2,
        "agreement_before": 41.5, "agreement_after": 88.25}))
    print("Refined; new model:", target, flush=True)
''')


@pytest.fixture
def stand_in(tmp_path, window) -> Path:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    window.refine_command_prefix = [sys.executable, str(script)]
    window.refine_extra_env = {}
    return script


def test_refine_dialog_with_a_stand_in_command_loads_the_model_and_repredicts_only_untouched_images(
        qtbot, window, tmp_path, stand_in, no_model_question):
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    project_dir = window.project.project_dir
    parent = window.session.checkpoint
    refined = _refined_checkpoint(parent, tmp_path / "prepared.safetensors")
    window.refine_extra_env = {"STAND_IN_MODEL": str(refined)}
    assert window.act_refine.isEnabled()
    window.project.parts.rename(1, "wing")  # unsaved until Improve saves it: the command reads the project from disk

    dialog = window.show_refine()
    assert dialog is not None and dialog.isVisible() and window.refine_dialog is dialog
    assert json.loads((project_dir / "project.json").read_text())["parts"]["slots"][1]["name"] == "wing"
    dialog.steps_spin.setValue(6)
    command = dialog.command()
    assert command[:3] == [sys.executable, str(stand_in), "refine"]
    assert command[command.index("--checkpoint") + 1] == str(parent)  # the model the person annotates with
    assert command[command.index("--project") + 1] == str(project_dir)
    assert command[-2:] == ["--device", "cpu"]  # the app's device, as the train dialog does
    assert "2 images you corrected (1 edited, 1 reviewed)" in dialog.intro.text()

    before = {rel: _files_of(project_dir, rel) for rel in (EDITED, REVIEWED)}
    old_maps = {rel: window.project.prediction(rel).label_map() for rel in window.project.relpaths()}
    with qtbot.waitSignal(window.modelLoaded, timeout=30000):
        assert dialog.start()
    assert dialog.exit_code() == 0
    assert dialog.plot.point_count("total") == 6 and dialog.plot.point_count("supervised") == 6
    assert dialog.progress.value() == 1000 and "step 6/6" in dialog.progress.format()
    assert "41.5 % before, 88.2 % now" in dialog.status_label.text()
    assert window.session.checkpoint == project_dir / "models" / "refined-standin.safetensors"
    assert window._model_refusal is None
    assert [window.project.parts[k].name for k in range(2)] == ["head", "wing"]  # the part table carried over
    qtbot.waitUntil(dialog.repredict_button.isVisible, timeout=5000)
    assert dialog.repredict_button.text() == "Re-predict 3 unreviewed images"
    assert dialog.close_button.text() == "Later"

    with qtbot.waitSignal(window.repredictFinished, timeout=30000) as finished:
        dialog.repredict_button.click()
    assert window.refine_dialog is None  # it closed (and was deleted) when asked to re-predict
    report = finished.args[0]
    new_maps = {rel: window.project.prediction(rel).label_map() for rel in window.project.relpaths()}
    untouched = ["img_2.png", "img_3.png", "img_4.png"]
    assert report.images == 3 and report.kept == 0 and report.failed == 0 and not report.cancelled
    assert report.changed_images == sum(not np.array_equal(old_maps[r], new_maps[r]) for r in untouched) > 0
    assert report.pixels == 3 * 36 * 44
    exact = sum(int((old_maps[r] != new_maps[r]).sum()) for r in untouched)  # small maps: measured at full size
    assert report.changed_pixels == pytest.approx(exact)
    for rel in (EDITED, REVIEWED):  # a person's work: prediction and edits untouched, byte for byte
        assert np.array_equal(new_maps[rel], old_maps[rel])
    window.save_project()
    for rel in (EDITED, REVIEWED):
        assert _files_of(project_dir, rel) == before[rel]
    index = _index(project_dir)
    fingerprint = window.session.identity.fingerprint
    assert all(index[r]["model"] == fingerprint for r in untouched)
    assert all(index[r].get("model") != fingerprint for r in (EDITED, REVIEWED))
    assert window.repredict_box is not None
    text = window.repredict_box.text()
    assert "Re-predicted 3 unreviewed images with 'refined-standin'" in text
    assert f"Masks changed on {report.changed_images} of them" in text
    assert "your 1 edited image and 1 reviewed image" in text
    window.repredict_box.close()


def test_stop_keeps_what_was_learned_and_cancel_keeps_nothing(qtbot, window, tmp_path, stand_in):
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    window.refine_extra_env = {"STAND_IN_MODEL": str(_refined_checkpoint(window.session.checkpoint,
                                                                         tmp_path / "prepared.safetensors"))}
    dialog = window.show_refine()
    dialog.steps_spin.setValue(100000)
    with qtbot.waitSignal(dialog.refineFinished, timeout=20000) as finished:
        assert dialog.start()
        qtbot.waitUntil(lambda: dialog.plot.point_count("total") >= 3, timeout=10000)
        assert dialog.cancel_run_button.isEnabled() and not dialog.start_button.isEnabled()
        dialog.cancel_run_button.click()
    assert finished.args == [130] and dialog.result is None
    assert "Cancelled: no model was written" in dialog.status_label.text()
    assert not (window.project.project_dir / "models").exists() and not window.loading

    with qtbot.waitSignal(window.modelLoaded, timeout=20000):
        assert dialog.start()
        qtbot.waitUntil(lambda: dialog.plot.point_count("total") >= 3, timeout=10000)
        dialog.stop_button.click()
    assert dialog.exit_code() == 0 and dialog.result["stopped_early"]
    assert dialog.status_label.text().startswith("Stopped after")
    assert dialog.progress.value() < 1000
    assert window.session.checkpoint.name == "refined-standin.safetensors"
    qtbot.waitUntil(dialog.repredict_button.isVisible, timeout=5000)
    dialog.reject()  # Later: the model stays loaded, nothing is re-predicted
    assert window.refine_dialog is None and not window.predicting


def test_a_refined_model_that_cannot_be_loaded_is_said_in_the_dialog(qtbot, window, tmp_path, stand_in, monkeypatch):
    from app import window_model

    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    window.refine_extra_env = {"STAND_IN_MODEL": str(broken)}
    shown = []
    monkeypatch.setattr(window_model.QMessageBox, "critical", lambda *args: shown.append(args[2]))
    dialog = window.show_refine()
    dialog.steps_spin.setValue(2)
    with qtbot.waitSignal(window.modelFailed, timeout=20000):
        dialog.start()
    assert shown and "could not be loaded" in dialog.status_label.text()
    assert not dialog.repredict_button.isVisible()
    dialog.reject()


def test_an_image_corrected_during_the_repredict_run_keeps_its_prediction(qtbot, window, tmp_path):
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    project_dir = window.project.project_dir
    window.show_image("img_3.png")
    assert window.wait_for_display()
    before = _files_of(project_dir, "img_3.png")
    assert window.repredict_untouched()
    window.toggle_reviewed()  # reviewed while the worker predicts: its answer for img_3 must not replace the mask
    with qtbot.waitSignal(window.repredictFinished, timeout=30000) as finished:
        pass
    report = finished.args[0]
    assert report.kept == 1 and report.images == 2
    window.save_project()
    assert _files_of(project_dir, "img_3.png") == before
    assert "1 image you edited or reviewed during the run kept its earlier prediction" in window.repredict_box.text()
    window.repredict_box.close()


def test_a_refused_run_shows_the_commands_sentence_and_changes_nothing(qtbot, window, tmp_path, stand_in):
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    sentence = (f"The checkpoint '{tmp_path / 'gone.safetensors'}' does not exist; choose the model to refine with "
                "--checkpoint.")
    window.refine_extra_env = {"STAND_IN_ERROR": sentence}
    loaded = window.session.checkpoint
    dialog = window.show_refine()
    with qtbot.waitSignal(dialog.refineFinished, timeout=15000) as finished:
        dialog.start()
    assert finished.args == [1]
    assert dialog.error_label.isVisible() and dialog.error_label.text() == sentence  # as is, without "error: "
    assert "Nothing was changed" in dialog.status_label.text()
    assert not dialog.repredict_button.isVisible() and dialog.start_button.isEnabled()
    assert window.session.checkpoint == loaded and not window.loading
    assert not (window.project.project_dir / "models").exists()
    qtbot.wait(50)
    _save_screenshot(dialog, "refine_refused.png")
    dialog.reject()


def test_the_real_refine_command_refuses_a_missing_checkpoint_in_one_sentence(qtbot, window, tmp_path):
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    dialog = window.show_refine()
    dialog.checkpoint = tmp_path / "gone.safetensors"
    dialog.steps_spin.setValue(1)
    with qtbot.waitSignal(dialog.refineFinished, timeout=60000) as finished:
        dialog.start()
    assert finished.args == [1], dialog.log_view.toPlainText()[-2000:]
    text = dialog.error_label.text()
    assert "gone.safetensors" in text and "\n" not in text and not text.startswith("error:")
    assert "Traceback" not in dialog.log_view.toPlainText()
    dialog.reject()


# ----- the real command ----------------------------------------------------------------------------------------------
def test_real_refine_run_through_the_window(qtbot, window, tmp_path, no_model_question):
    """REAL ``training.run refine`` (2 steps on five 36×44 images, random tiny model): the new model is loaded with
    the project's names, re-prediction leaves the edited and the reviewed image alone; screenshots of the dialog and
    of the summary go to test-artifacts/."""
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    project_dir = window.project.project_dir
    parent_fingerprint = window.session.identity.fingerprint
    before = {rel: _files_of(project_dir, rel) for rel in (EDITED, REVIEWED)}
    dialog = window.show_refine()
    dialog.steps_spin.setValue(2)
    dialog.extra_edit.setText("--batch-size 4 --corrected-per-step 2 --log-every 1")
    with qtbot.waitSignal(dialog.refineFinished, timeout=120000) as finished:
        assert dialog.start()
    assert finished.args == [0], dialog.log_view.toPlainText()[-3000:]
    qtbot.waitUntil(dialog.repredict_button.isVisible, timeout=30000)
    new_model = Path(dialog.result["checkpoint"])
    assert new_model.parent == project_dir / "models" and new_model.is_file()
    assert window.session.checkpoint == new_model
    assert window.session.identity.lineage[0] == parent_fingerprint  # the lineage the refine command recorded
    assert window._model_refusal is None and window.project.parts[0].name == "head"
    assert dialog.plot.point_count("total") == 2
    assert dialog.repredict_button.text() == "Re-predict 3 unreviewed images"
    qtbot.wait(50)
    _save_screenshot(dialog, "refine_dialog.png")

    with qtbot.waitSignal(window.repredictFinished, timeout=30000) as done:
        dialog.repredict_button.click()
    assert done.args[0].images == 3
    window.save_project()
    for rel in (EDITED, REVIEWED):
        assert _files_of(project_dir, rel) == before[rel]
    assert window.project.model_family[-1] == window.session.identity.fingerprint  # adopted: it joined the family
    box = window.repredict_box
    qtbot.waitExposed(box)
    _save_screenshot(box, "refine_summary.png")
    box.close()


# ----- project models ------------------------------------------------------------------------------------------------
def test_project_models_menu_switches_to_any_earlier_model_without_repredicting(qtbot, window, tmp_path):
    folder = _make_folder(tmp_path)
    _open(qtbot, window, folder)
    project_dir = window.project.project_dir
    original = window.session.checkpoint
    models = project_dir / "models"
    models.mkdir()
    first = _refined_checkpoint(original, models / "refined-a.safetensors", created="2026-11-29T10:05:00",
                                steps=300, corrected_images=2)
    second = _refined_checkpoint(original, models / "refined-b.safetensors", seed=2, created="2026-11-29T11:40:00",
                                 steps=120, corrected_images=5)
    os.utime(first, ns=(10**18, 10**18))
    os.utime(second, ns=(2 * 10**18, 2 * 10**18))
    window.save_project()
    index_before = hashlib.sha256((project_dir / "project.json").read_bytes()).hexdigest()

    def entries():
        window.models_menu.aboutToShow.emit()
        return [(a.text(), a.isChecked()) for a in window.models_menu.actions()]

    assert entries() == [("29 Nov 11:40 · 120 steps · 5 corrected images", False),
                         ("29 Nov 10:05 · 300 steps · 2 corrected images", False),
                         (f"Started from: {original.name}", True)]
    with qtbot.waitSignal(window.modelLoaded, timeout=30000):
        window.models_menu.actions()[1].trigger()  # one action back to an earlier model
    qtbot.waitUntil(lambda: not window.loading, timeout=5000)
    assert window.session.checkpoint == first and window._model_refusal is None
    assert [checked for _, checked in entries()] == [False, True, False]
    assert not window.predicting
    with qtbot.waitSignal(window.modelLoaded, timeout=30000):
        window.models_menu.actions()[2].trigger()
    assert window.session.checkpoint == original
    window.save_project()
    assert hashlib.sha256((project_dir / "project.json").read_bytes()).hexdigest() == index_before  # no re-prediction


def test_project_models_menu_without_models(qtbot, window, tmp_path):
    window.models_menu.aboutToShow.emit()
    assert [a.text() for a in window.models_menu.actions()] == ["(open a folder first)"]


def test_the_repredict_summary_names_only_what_was_left_alone():
    from app.window_refine import RepredictReport

    report = RepredictReport(total=35, model="refined", images=35, changed_images=35, changed_pixels=67918,
                             pixels=893760)
    text = report.describe(edited=0, reviewed=1)
    assert "Not touched: your 1 reviewed image." in text and "0 edited" not in text
    assert "Not touched: your 2 edited images and 1 reviewed image." in report.describe(edited=2, reviewed=1)
    assert "Not touched" not in report.describe(edited=0, reviewed=0)


def test_a_lower_agreement_after_refining_says_the_corrections_keep_their_masks():
    from app.refine_dialog import RefineDialog

    result = {"checkpoint": "/p/.mpae/models/refined-1.safetensors", "steps": 600, "corrected_images": 1}
    lower = RefineDialog.describe_result({**result, "agreement_before": 100.0, "agreement_after": 82.2})
    assert lower.endswith("100.0 % before, 82.2 % now. Your corrected images keep your masks.")
    higher = RefineDialog.describe_result({**result, "agreement_before": 41.5, "agreement_after": 88.2})
    assert higher.endswith("41.5 % before, 88.2 % now.")

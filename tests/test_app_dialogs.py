"""The Train and Export dialogs and the loss plot, headless (pytest-qt).

TrainDialog is driven with a fake trainer script (a few lines of Python that write a run folder like training.run
does), so the dialog's process handling, metrics tailing and stop logic are tested in about a second each; one
real ``training.run`` smoke run (2 steps of a shrunken synthetic preset, 8-20 s on a CPU) checks the real wiring.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor, QPalette  # noqa: E402

from app.export_dialog import ExportDialog  # noqa: E402
from app.loss_plot import LossPlot, log_ticks, nice_ticks  # noqa: E402
from app.train_dialog import TrainDialog  # noqa: E402
from app.training_output import LineSplitter, read_new_records  # noqa: E402
from mpae_core.annotation import AnnotationProject, ImageStatus  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _save_screenshot(widget, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert widget.grab().save(str(path))
    return path


# ----- LossPlot ------------------------------------------------------------------------------------------------------
def _nonbackground_pixels(widget) -> int:
    image = widget.grab().toImage()
    base = widget.palette().color(QPalette.ColorRole.Base).rgb()
    return sum(1 for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
               if image.pixel(x, y) != base)


def test_loss_plot_draws_lines_where_the_points_are(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 240)
    empty = _nonbackground_pixels(plot)
    steps = np.arange(1, 51)
    plot.set_series("total", steps, 5.0 / np.sqrt(steps))
    plot.set_series("semantic", steps, 8.0 * np.exp(-steps / 20))
    for x in range(1, 51):
        plot.add_point("reconstruction", x, 0.4 - 0.005 * x)
    assert plot.point_count("reconstruction") == 50
    assert _nonbackground_pixels(plot) > empty + 200
    # the total's colour appears in the image (its line), not only in the legend swatch
    image = plot.grab().toImage()
    total = plot.color("total")
    hits = sum(1 for y in range(image.height()) for x in range(image.width() // 2)
               if QColor(image.pixel(x, y)).name() == total.name())
    assert hits > 10
    plot.set_log_y(False)
    assert _nonbackground_pixels(plot) > empty + 200
    plot.clear()
    assert plot.point_count() == 0


def test_loss_plot_draws_only_the_chosen_series(qtbot):
    plot = LossPlot(visible=["total"])
    qtbot.addWidget(plot)
    plot.set_series("total", [1, 2, 3], [3, 2, 1])
    plot.set_series("entropy", [1, 2, 3], [0.3, 0.2, 0.1])
    assert plot.drawn_series() == ["total"]
    plot.set_visible_series(None)
    assert set(plot.drawn_series()) == {"total", "entropy"}
    with pytest.raises(ValueError):
        plot.set_series("bad", [1, 2], [1])


def test_tick_helpers():
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert log_ticks(0.15, 30) == [0.2, 0.5, 1, 2, 5, 10, 20]
    assert log_ticks(1e-4, 1e2) == [1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100]


# ----- metrics tail reader -------------------------------------------------------------------------------------------
def test_read_new_records_handles_partial_and_malformed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_new_records(path, 0) == ([], 0)  # not written yet
    path.write_bytes(b'{"step": 1, "total": 2.0}\nnot json\n\n[1, 2]\n{"step": 2, "tot')
    records, offset = read_new_records(path, 0)
    assert records == [{"step": 1, "total": 2.0}]
    assert path.read_bytes()[:offset].endswith(b"[1, 2]\n")
    assert read_new_records(path, offset) == ([], offset)  # the partial line waits
    with path.open("ab") as f:
        f.write(b'al": 1.5}\n{"step": 3, "total": 1.0}\n\xff\xfe\n')
    records, offset2 = read_new_records(path, offset)
    assert records == [{"step": 2, "total": 1.5}, {"step": 3, "total": 1.0}]
    assert offset2 == path.stat().st_size
    path.write_bytes(b'{"step": 1, "total": 9.0}\n')  # a new run replaced the file: read from the start
    assert read_new_records(path, offset2) == ([{"step": 1, "total": 9.0}], path.stat().st_size)


def test_line_splitter_keeps_progress_bars_out_of_the_log():
    splitter = LineSplitter()
    assert splitter.feed(b"first line\nsecond ") == ["first line"]
    assert splitter.feed(b"line\r\n\repoch 1:  10%|#") == ["second line"]
    assert splitter.transient == "epoch 1:  10%|#"
    assert splitter.feed(b"\repoch 1:  20%|##\r") == []
    assert splitter.transient == "epoch 1:  20%|##"
    assert splitter.feed("caf\u00e9".encode()[:4]) == []  # a UTF-8 character split across two reads
    assert splitter.feed("caf\u00e9".encode()[4:] + b"\n") == ["café"]


# ----- TrainDialog with a fake trainer -------------------------------------------------------------------------------
FAKE_TRAINER = textwrap.dedent('''
    """Stands in for ``python -m training.run``: writes a run folder the way the trainer does."""
    import json, os, signal, sys, time
    from pathlib import Path

    args = sys.argv[1:]
    out = Path(args[args.index("--out") + 1])
    mode = os.environ.get("FAKE_MODE", "ok")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"epochs": 2, "max_steps": 0, "batch_size": 4, "log_every": 1}))
    print("fake trainer args:", " ".join(args), flush=True)

    def save_and_exit(signum, frame):
        (out / "checkpoints" / "last.safetensors").write_bytes(b"weights")
        print("Stopped; resume with --resume.", file=sys.stderr, flush=True)
        sys.exit(130)

    if mode == "sleep":
        signal.signal(signal.SIGTERM, save_and_exit)
        print("sleeping", flush=True)
        while True:
            time.sleep(0.05)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        while True:
            time.sleep(0.05)
    if mode == "fail":
        print("error: the data folder has no images; choose another.", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "no-vgg":
        print("error: " + os.environ["FAKE_ERROR"], file=sys.stderr, flush=True)
        sys.exit(1)

    with (out / "metrics.jsonl").open("a") as f:
        for step in range(1, 9):
            epoch = (step - 1) // 4
            record = {"kind": "train", "epoch": epoch, "step": step, "lr": 5e-4, "images_per_s": 40.0 + step,
                      "total": 5.0 / step, "reconstruction": 0.5 / step ** 0.5, "semantic": 8.0 - step * 0.5,
                      "foreground_presence": 0.8, "background_presence": 1.4 / step, "entropy": 0.1}
            line = json.dumps(record) + "\\n"
            f.write(line[:20]); f.flush(); time.sleep(0.03)  # a half-written line, as the poller may see it
            f.write(line[20:]); f.flush()
            sys.stderr.write(f"\\repoch {epoch + 1}/2: {step * 12}%|####"); sys.stderr.flush()
            if step % 4 == 0:
                f.write(json.dumps({"kind": "eval", "epoch": epoch + 1, "step": step, "nmi": 40.0 + step}) + "\\n")
                f.flush()
            time.sleep(0.1)
    (out / "checkpoints" / "last.safetensors").write_bytes(b"weights")
    print("\\nTrained to epoch 2 (step 8)", flush=True)
''')


@pytest.fixture
def fake_trainer(tmp_path) -> Path:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return script


def _dialog(qtbot, tmp_path, script: Path, mode: str = "ok", **kwargs) -> TrainDialog:
    data = tmp_path / "images"
    data.mkdir(exist_ok=True)
    dialog = TrainDialog(data_folder=data, runs_dir=tmp_path / "runs", extra_env={"FAKE_MODE": mode},
                         command_prefix=[sys.executable, str(script)], **kwargs)
    qtbot.addWidget(dialog)
    return dialog


def test_train_dialog_defaults(qtbot, tmp_path, fake_trainer):
    dialog = _dialog(qtbot, tmp_path, fake_trainer)
    assert dialog.preset_combo.currentText() == "folder"
    assert dialog.run_dir().parent == tmp_path / "runs"
    assert dialog.run_dir().name.startswith("folder-")
    dialog.preset_combo.setCurrentText("synthetic")
    assert dialog.run_dir().name.startswith("synthetic-")  # an untouched default follows the preset
    dialog.extra_edit.setText("--batch-size 16 --lr '1e-4'")
    dialog.epochs_spin.setValue(3)
    command = dialog.command()
    assert command[:3] == [sys.executable, str(fake_trainer), "train"]
    assert command[-6:] == ["--epochs", "3", "--batch-size", "16", "--lr", "1e-4"]
    assert "--resume" not in command and not dialog.resume_check.isEnabled()
    assert "--batch-size 16" in dialog.command_edit.text()
    dialog.extra_edit.setText("--lr '1e-4")
    assert not dialog.start()
    assert "unclosed quote" in dialog.error_label.text()
    dialog.extra_edit.clear()
    dialog.preset_combo.setCurrentText("folder")
    dialog.data_edit.setText(str(tmp_path / "missing"))
    assert not dialog.start()
    assert "does not exist" in dialog.error_label.text()
    # a run folder with a checkpoint offers Resume and refuses to start a second run on top of it
    run = tmp_path / "old-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.safetensors").write_bytes(b"w")
    dialog.data_edit.setText(str(tmp_path / "images"))
    dialog.run_edit.setText(str(run))
    assert dialog.resume_check.isEnabled()
    assert not dialog.start()
    assert "Resume" in dialog.error_label.text()
    dialog.resume_check.setChecked(True)
    assert dialog.command()[-1] == "--resume"


def test_train_dialog_runs_a_fake_trainer(qtbot, tmp_path, fake_trainer):
    dialog = _dialog(qtbot, tmp_path, fake_trainer)
    dialog.show()
    assert not dialog.load_button.isEnabled()
    with qtbot.waitSignal(dialog.started, timeout=5000):
        assert dialog.start()
    assert dialog.is_running() and dialog.stop_button.isEnabled() and not dialog.start_button.isEnabled()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=15000) as finished:
        pass
    assert finished.args == [0]
    assert not dialog.is_running()
    # every complete train record reached the plot; eval records went to the log and their own plot
    assert dialog.plot.point_count("total") == 8
    assert dialog.plot.series("total")[0] == [float(s) for s in range(1, 9)]
    assert "nmi" not in dialog.plot.series_names()
    assert dialog.eval_plot.series("nmi") == ([4.0, 8.0], [44.0, 48.0])
    assert dialog.eval_plot.isVisible() and dialog.eval_plot.drawn_series() == ["nmi"]
    log = dialog.log_view.toPlainText()
    assert "fake trainer args: train --preset folder" in log
    assert "evaluation after epoch 2: nmi 48.00" in log
    assert "Trained to epoch 2" in log
    assert log.count("%|") <= 1  # tqdm-style progress updates are shown apart; at most the final one is logged
    assert "Training finished" in dialog.status_label.text()
    assert dialog.progress.value() == 1000
    assert "step 8/8" in dialog.progress.format()
    assert dialog.exit_code() == 0
    assert dialog.load_button.isEnabled()
    assert "Checkpoint:" in dialog.status_label.text()
    assert "left" not in dialog.progress.format()
    qtbot.wait(50)  # let the layout settle before the screenshot
    _save_screenshot(dialog, "train_dialog.png")
    with qtbot.waitSignal(dialog.checkpointChosen, timeout=1000) as chosen:
        dialog.load_button.click()
    assert chosen.args == [str(dialog.run_dir() / "checkpoints" / "last.safetensors")]
    assert not dialog.isVisible()


def test_train_dialog_reports_a_failure(qtbot, tmp_path, fake_trainer):
    dialog = _dialog(qtbot, tmp_path, fake_trainer, mode="fail")
    with qtbot.waitSignal(dialog.trainingFinished, timeout=10000) as finished:
        dialog.start()
    assert finished.args == [1]
    assert "failed (exit code 1)" in dialog.status_label.text()
    assert "no images" in dialog.status_label.text()
    assert not dialog.load_button.isEnabled()  # no checkpoint was written


def test_train_dialog_reports_a_missing_interpreter(qtbot, tmp_path, fake_trainer):
    dialog = _dialog(qtbot, tmp_path, fake_trainer)
    dialog._command_prefix = [str(tmp_path / "no-such-python")]
    with qtbot.waitSignal(dialog.trainingFinished, timeout=5000) as finished:
        assert not dialog.start()
    assert finished.args == [-1]
    assert "Could not start" in dialog.status_label.text()
    assert dialog.start_button.isEnabled()


def test_train_dialog_stop_saves_a_resumable_run(qtbot, tmp_path, fake_trainer):
    dialog = _dialog(qtbot, tmp_path, fake_trainer, mode="sleep")
    with qtbot.waitSignal(dialog.started, timeout=5000):
        dialog.start()
    qtbot.waitUntil(lambda: "sleeping" in dialog.log_view.toPlainText(), timeout=5000)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=5000) as finished:
        dialog.stop_button.click()
    assert finished.args == [130]
    assert "Stopped" in dialog.status_label.text() and "Resume" in dialog.status_label.text()
    assert dialog.load_button.isEnabled()
    assert dialog.resume_check.isEnabled()  # the run folder now has a checkpoint to resume from


def test_train_dialog_kills_a_trainer_that_ignores_stop(qtbot, tmp_path, fake_trainer):
    dialog = _dialog(qtbot, tmp_path, fake_trainer, mode="stubborn", stop_timeout_s=0.5)
    with qtbot.waitSignal(dialog.started, timeout=5000):
        dialog.start()
    qtbot.waitUntil(lambda: "ignoring SIGTERM" in dialog.log_view.toPlainText(), timeout=5000)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=5000):
        dialog.stop()
    assert "by force" in dialog.status_label.text()


def test_closing_while_training_asks_first(qtbot, tmp_path, fake_trainer, monkeypatch):
    dialog = _dialog(qtbot, tmp_path, fake_trainer, mode="sleep")
    dialog.show()
    with qtbot.waitSignal(dialog.started, timeout=5000):
        dialog.start()
    qtbot.waitUntil(lambda: "sleeping" in dialog.log_view.toPlainText(), timeout=5000)
    monkeypatch.setattr(dialog, "confirm_close", lambda: False)
    dialog.reject()
    assert dialog.isVisible() and dialog.is_running()
    monkeypatch.setattr(dialog, "confirm_close", lambda: True)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=5000):
        dialog.reject()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=2000)


def test_train_dialog_real_smoke_run(qtbot, tmp_path):
    """REAL training.run through the dialog: 2 steps of a shrunken synthetic preset with random weights
    (8-20 s on a CPU, most of it generating the synthetic dataset and building the random backbone and VGG)."""
    dialog = TrainDialog(data_folder=tmp_path / "synthetic", runs_dir=tmp_path / "runs", device="cpu")
    qtbot.addWidget(dialog)
    dialog.preset_combo.setCurrentText("synthetic")
    assert dialog.command()[-2:] == ["--device", "cpu"]
    dialog.extra_edit.setText("--max-steps 2 --log-every 1 --allow-random-weights --quiet --workers 0 "
                              "--batch-size 4 --image-size 56 --num-parts 4")
    with qtbot.waitSignal(dialog.trainingFinished, timeout=120000) as finished:
        assert dialog.start()
    assert finished.args == [0], dialog.log_view.toPlainText()[-2000:]
    assert dialog.plot.point_count("total") == 2
    assert (dialog.run_dir() / "checkpoints" / "last.safetensors").is_file()
    assert dialog.load_button.isEnabled()
    assert "step 2/2" in dialog.progress.format()


# ----- ExportDialog --------------------------------------------------------------------------------------------------
def _export(qtbot, dialog: ExportDialog) -> None:
    with qtbot.waitSignal(dialog.ended, timeout=20000) as ended:
        assert dialog.start_export()
    assert ended.args == ["done"], dialog.message_label.text()


def test_export_dialog_writes_png_and_coco(qtbot, tmp_path, predicted_project):
    out = tmp_path / "export"
    dialog = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(dialog)
    dialog.show()
    plain = ExportDialog(predicted_project)
    qtbot.addWidget(plain)
    images = predicted_project.images_folder
    assert plain.out_dir() == images.parent / f"{images.name}-labels"  # beside the photos, not among them
    _export(qtbot, dialog)
    result = dialog.result()
    assert result is not None and result.images == 6
    assert len(list((out / "masks").glob("*.png"))) == 6
    assert (out / "labels.txt").is_file() and (out / "labels.json").is_file()
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 6 and len(coco["annotations"]) == result.annotations > 0
    assert dialog.progress.value() == dialog.progress.maximum() == 6
    assert "Exported 6 images" in dialog.message_label.text()
    assert dialog.open_button.isVisible()
    qtbot.waitUntil(lambda: dialog.cancel_button.text() == "Close", timeout=2000)
    dialog.open_folder()  # harmless offscreen
    qtbot.wait(50)
    _save_screenshot(dialog, "export_dialog.png")


def test_export_dialog_asks_before_replacing_an_earlier_export_and_removes_its_leftovers(qtbot, tmp_path,
                                                                                       predicted_project, monkeypatch):
    import os

    out = tmp_path / "labels"
    asked = []
    monkeypatch.setattr(ExportDialog, "ask_overwrite", lambda self, check: asked.append(check) or "overwrite")
    first = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(first)
    old_umask = os.umask(0o022)
    try:
        _export(qtbot, first)
    finally:
        os.umask(old_umask)
    assert asked == [] and len(list((out / "masks").glob("*.png"))) == 6
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes  # normal permissions, not mkstemp's 0600
    (out / "my-notes.txt").write_text("not the export's")

    relpath = predicted_project.relpaths()[2]
    predicted_project.mark_reviewed(relpath)
    second = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(second)
    second.reviewed_radio.setChecked(True)
    _export(qtbot, second)
    assert [check.state.value for check in asked] == ["export"]
    assert "holds an earlier export of 6 images" in asked[0].question()
    assert [p.name for p in (out / "masks").glob("*.png")] == [Path(relpath).with_suffix(".png").name]
    assert len(json.loads((out / "coco.json").read_text())["images"]) == 1
    assert (out / "my-notes.txt").read_text() == "not the export's"
    assert "Deleted 5 files of the earlier export" in second.message_label.text()


def test_export_dialog_cancel_or_another_folder_leaves_the_folder_alone(qtbot, tmp_path, predicted_project,
                                                                        monkeypatch):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.pdf").write_bytes(b"%PDF")
    dialog = ExportDialog(predicted_project, default_out_dir=busy)
    qtbot.addWidget(dialog)
    monkeypatch.setattr(ExportDialog, "ask_overwrite", lambda self, check: "cancel")
    assert not dialog.start_export()
    assert sorted(p.name for p in busy.iterdir()) == ["thesis.pdf"]
    assert "Nothing was exported" in dialog.message_label.text()
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setattr(ExportDialog, "ask_overwrite", lambda self, check: "choose")
    monkeypatch.setattr(ExportDialog, "_browse", lambda self: self.out_edit.setText(str(elsewhere)) or True)
    with qtbot.waitSignal(dialog.ended, timeout=20000) as ended:
        assert dialog.start_export()
    assert ended.args == ["done"] and dialog.out_dir() == elsewhere
    assert len(list((elsewhere / "masks").glob("*.png"))) == 6
    assert sorted(p.name for p in busy.iterdir()) == ["thesis.pdf"]
    # the image folder itself is refused outright
    dialog.out_edit.setText(str(predicted_project.images_folder))
    assert not dialog.start_export()
    assert "is the image folder itself" in dialog.message_label.text()


def test_export_dialog_overwrite_question_screenshot(qtbot, tmp_path, predicted_project):
    from mpae_core.annotation.export_folder import check_export_folder

    out = tmp_path / "labels"
    dialog = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(dialog)
    _export(qtbot, dialog)
    box, buttons = dialog.overwrite_question(check_export_folder(out))
    assert box.windowTitle() == "Replace the earlier export?"
    assert [buttons[a].text() for a in ("overwrite", "choose")] == ["Overwrite", "Choose another folder…"]
    assert box.defaultButton() is buttons["choose"]
    box.show()
    qtbot.wait(50)
    _save_screenshot(box, "export_overwrite_question.png")
    box.close()


def test_export_dialog_writes_the_other_formats_with_coco_polygons(qtbot, tmp_path, predicted_project):
    out = tmp_path / "export"
    dialog = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(dialog)
    assert not dialog.yolo_check.isChecked() and dialog.coco_style() == "rle"  # the defaults stay PNG + COCO RLE
    dialog.png_check.setChecked(False)
    for box in (dialog.yolo_check, dialog.labelme_check, dialog.cvat_check, dialog.voc_check):
        box.setChecked(True)
    dialog.coco_style_combo.setCurrentIndex(dialog.coco_style_combo.findData("polygons"))
    assert dialog.formats() == ("coco", "yolo", "labelme", "cvat", "voc")
    _export(qtbot, dialog)
    result = dialog.result()
    assert set(result.outputs) == {"coco", "yolo", "labelme", "cvat", "voc"} and not (out / "masks").exists()
    coco = json.loads((out / "coco.json").read_text())
    assert coco["annotations"] and all(isinstance(a["segmentation"], list) for a in coco["annotations"])
    relpath = predicted_project.relpaths()[0]
    stem = Path(relpath).with_suffix("").as_posix()
    assert (out / "yolo" / "images" / relpath).read_bytes() == predicted_project.image_path(relpath).read_bytes()
    assert (out / "yolo" / "labels" / f"{stem}.txt").is_file() and (out / "voc" / "labelmap.txt").is_file()
    assert json.loads((out / "labelme" / f"{stem}.json").read_text())["imageData"] is None
    assert "yolo" in dialog.message_label.text() and "cvat/annotations.xml" in dialog.message_label.text()
    dialog.coco_check.setChecked(False)
    assert not dialog.coco_style_combo.isEnabled()


def test_export_dialog_needs_a_format(qtbot, predicted_project):
    dialog = ExportDialog(predicted_project)
    qtbot.addWidget(dialog)
    dialog.png_check.setChecked(False)
    dialog.coco_check.setChecked(False)
    assert not dialog.export_button.isEnabled()
    assert not dialog.start_export()
    assert "at least one format" in dialog.message_label.text()
    dialog.coco_check.setChecked(True)
    assert dialog.export_button.isEnabled()


def test_export_dialog_cancel_writes_no_coco(qtbot, tmp_path, predicted_project, monkeypatch):
    from app import export_dialog as module

    out = tmp_path / "export"
    dialog = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(dialog)
    real = module.ExportWorker._on_image

    def slow(worker, relpath):  # give the Cancel time to land mid-export
        import time

        time.sleep(0.15)
        real(worker, relpath)

    monkeypatch.setattr(module.ExportWorker, "_on_image", slow)
    dialog.show()
    with qtbot.waitSignal(dialog.ended, timeout=10000) as ended:
        assert dialog.start_export()
        qtbot.wait(50)
        dialog.cancel_button.click()  # Cancel while running cancels instead of closing
    assert ended.args == ["cancelled"]
    assert "cancelled" in dialog.message_label.text()
    assert dialog.isVisible() and dialog.cancel_button.text() == "Close"
    assert dialog.result() is None
    assert len(list((out / "masks").glob("*.png"))) < 6
    assert not (out / "coco.json").exists()
    assert not list(out.glob(".coco.json.*"))  # no temporary parts left behind


def test_export_dialog_reviewed_only(qtbot, tmp_path, predicted_project):
    relpath = predicted_project.relpaths()[2]
    predicted_project.mark_reviewed(relpath)
    out = tmp_path / "reviewed"
    dialog = ExportDialog(predicted_project, default_out_dir=out)
    qtbot.addWidget(dialog)
    dialog.reviewed_radio.setChecked(True)
    _export(qtbot, dialog)
    assert dialog.result().images == 1
    assert [p.name for p in (out / "masks").glob("*.png")] == [Path(relpath).with_suffix(".png").name]
    assert json.loads((out / "coco.json").read_text())["images"][0]["file_name"] == relpath
    # the live project was saved first, so the on-disk copy the worker read knows the review
    assert AnnotationProject.open(predicted_project.project_dir).record(relpath).status == ImageStatus.REVIEWED


def test_export_dialog_reviewed_only_needs_a_reviewed_image(qtbot, predicted_project):
    dialog = ExportDialog(predicted_project)
    qtbot.addWidget(dialog)
    dialog.reviewed_radio.setChecked(True)
    assert not dialog.export_button.isEnabled()
    assert "reviewed" in dialog.hint_label.text()


def test_export_dialog_reports_an_unwritable_folder(qtbot, tmp_path, predicted_project):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dialog = ExportDialog(predicted_project, default_out_dir=blocker / "export")
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.ended, timeout=10000) as ended:
        assert dialog.start_export()
    assert ended.args == ["failed"]
    assert "Cannot write the export" in dialog.message_label.text()
    message = dialog.message_label.text()
    assert str(blocker) in message and "choose a folder you can write to" in message
    assert dialog.result() is None
    assert dialog.export_button.isEnabled()


def test_train_dialog_weights_fields_come_from_the_app_and_go_to_the_command(qtbot, tmp_path, fake_trainer):
    from app.settings import AppSettings

    backbone = tmp_path / "dinov2.safetensors"
    backbone.write_bytes(b"weights")
    settings = AppSettings(backbone_weights=str(backbone))
    dialog = _dialog(qtbot, tmp_path, fake_trainer, settings=settings)
    assert dialog.backbone_field.text() == str(backbone) and dialog.vgg_field.text() == ""
    command = dialog.command()
    assert command[command.index("--backbone-weights") + 1] == str(backbone)
    assert "--vgg-weights" not in command
    dialog.preset_combo.setCurrentText("synthetic")  # random frozen networks: a DINOv2 file would not even fit
    assert "--backbone-weights" not in dialog.command() and not dialog.backbone_field.isEnabled()
    dialog.preset_combo.setCurrentText("folder")
    assert dialog.backbone_field.isEnabled()
    dialog.vgg_field.edit.setText(str(tmp_path / "missing-vgg.safetensors"))
    assert not dialog.start()
    assert "VGG-19 weights file" in dialog.error_label.text() and "does not exist" in dialog.error_label.text()
    vgg = tmp_path / "vgg19.safetensors"
    vgg.write_bytes(b"weights")
    dialog.vgg_field.edit.setText(str(vgg))
    assert "--vgg-weights" in dialog.command_edit.text()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=15000):
        assert dialog.start()
    assert settings.vgg_weights == str(vgg)  # remembered for the next time
    assert f"--vgg-weights {vgg}" in dialog.log_view.toPlainText()


def test_train_dialog_words_missing_weights_in_its_own_terms(qtbot, tmp_path, fake_trainer):
    from mpae_core.errors import BackboneWeightsError
    from mpae_core.perceptual import MISSING_VGG

    cli = str(BackboneWeightsError.for_missing(MISSING_VGG.because("offline mode: HF_HUB_OFFLINE is set")))
    dialog = _dialog(qtbot, tmp_path, fake_trainer, mode="no-vgg")
    dialog._extra_env["FAKE_ERROR"] = cli
    dialog.show()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=10000) as finished:
        dialog.start()
    assert finished.args == [1]
    status = dialog.status_label.text()
    assert "The VGG-19 weights (vgg19.tv_in1k) are not on this machine" in status
    assert "choose it in 'VGG-19 weights' above" in status and "https://huggingface.co/timm/vgg19.tv_in1k" in status
    assert "--vgg-weights" not in status and "MPAE_VGG_WEIGHTS" not in status
    assert dialog.vgg_field.edit.hasFocus()
    assert cli in dialog.log_view.toPlainText()  # the log keeps what the trainer said


def test_loading_a_model_without_its_backbone_speaks_of_the_app_not_of_flags(qtbot, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from app.model_session import LoadRequest
    from app.workers import ModelLoadWorker
    from conftest import tiny_model
    from mpae_core.checkpoint import save_checkpoint

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("MPAE_BACKBONE_WEIGHTS", raising=False)
    light = save_checkpoint(tiny_model(), tmp_path / "light.safetensors")
    worker = ModelLoadWorker(LoadRequest(light, device="cpu"))
    failed = []
    worker.failed.connect(lambda kind, message, request: failed.append((kind, message)))
    worker.run()
    assert failed == [("backbone", "The DINOv2 backbone weights (vit_small_patch14_reg4_dinov2) are not on this "
                                   "machine and could not be downloaded (offline mode: HF_HUB_OFFLINE is set).")]

"""A batch run's project (OUT/.mpae, mpae_core.batch.store): reviewed in the window without predicting again, its
write lock respected, a person's work never predicted over, re-runs kept consistent. Tiny random model, CPU."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from app.main import main
from conftest import tiny_model
from mpae_core.annotation import AnnotationProject, ImageStatus, unique_mask_relpaths
from mpae_core.annotation.labels import UNSET
from mpae_core.annotation.project_recovery import read_prediction_file
from mpae_core.batch import BatchConfig, run_batch
from mpae_core.batch.store import PredictionFiles, record_written_prediction
from mpae_core.checkpoint import load_checkpoint, model_fingerprint, save_checkpoint
from mpae_core.inference import PartPrediction, Predictor, label_map_at

pytestmark = pytest.mark.usefixtures("private_settings")  # settings in tmp_path (conftest)

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"p0.jpg": (48, 64), "p1.png": (40, 52), "sub_a.png": (36, 36), "wide.jpg": (30, 90)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tiny_model(seed=5), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors",
                           embed_backbone=True)


def make_images(folder: Path, broken: bool = True) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for name, (height, width) in GOOD.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = (200, 40, 40)
        Image.fromarray(pixels).save(folder / name, quality=92)
    if broken:
        (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


def batch(images: Path, out: Path, checkpoint: Path, *extra: str) -> int:
    return main(["batch", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "1",
                 "--batch-size", "2", *extra])


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def batch_masks(out: Path) -> dict[str, np.ndarray]:
    masks = {}
    for entry in report_of(out)["images"]:
        if entry["mask"]:
            with Image.open(out / entry["mask"]) as im:
                masks[entry["file"]] = np.asarray(im)
    return masks


def digests(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: content digest and modification time (but the lock's note of its holder)."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "lock"}


def assert_store_shows_the_masks(out: Path, fingerprint: str) -> None:
    """Every good image is predicted by this model in OUT's project, and its label map, exported through the
    project's part table, is the batch's mask pixel for pixel."""
    project = AnnotationProject.open(out, write=False)
    masks = batch_masks(out)
    assert set(masks) == set(GOOD)
    for relpath, mask in masks.items():
        record = project.record(relpath)
        assert record.status is ImageStatus.PREDICTED and record.model == fingerprint, relpath
        assert record.size == GOOD[relpath] and record.stamp is not None
        np.testing.assert_array_equal(project.parts.to_export(project.label_map(relpath)), mask, err_msg=relpath)


# ----- review in the window ---------------------------------------------------------------------------------------
def test_batch_output_opens_in_the_window_edits_and_exports_without_predicting(qtbot, checkpoint, tmp_path,
                                                                               monkeypatch):
    from app.export_dialog import ExportDialog
    from app.settings import AppSettings
    from app.window import MainWindow

    images, out = make_images(tmp_path / "images"), tmp_path / "run"
    assert batch(images, out, checkpoint) == 1  # the broken file fails
    masks = batch_masks(out)

    def no_prediction(*args, **kwargs):
        raise AssertionError("a prediction ran while reviewing a batch run")

    for name in ("logits", "predict", "maps_at_sizes", "logits_and_maps"):
        monkeypatch.setattr(Predictor, name, no_prediction)
    monkeypatch.setattr(PartPrediction, "from_logits", no_prediction)
    window = MainWindow(AppSettings())
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.show()
    assert window.open_folder(out, load_project_checkpoint=False)  # OUT, whose images live in IMAGES
    project = window.project
    assert not window.session.loaded and not window.predicting
    assert project.images_folder == images.resolve() and project.checkpoint == checkpoint.resolve()
    assert {r.relpath: r.status for r in project.records()} == {
        **{rel: ImageStatus.PREDICTED for rel in GOOD}, "broken.jpg": ImageStatus.ERROR}
    assert window.problems.count() == 1 and "broken.jpg" in window.problems.item(0).text()
    assert window.settings.recent_folders[0] == str(out.resolve())  # Recent reopens the run, not IMAGES
    for relpath in GOOD:  # what the canvas shows is the batch's mask
        window.show_image(relpath)
        assert window.wait_for_display()
        np.testing.assert_array_equal(project.parts.to_export(window.canvas.labels()), masks[relpath])

    # correct one image with the brush on the canvas
    edited = "p0.jpg"
    window.show_image(edited)
    assert window.wait_for_display()
    window.set_tool("brush")
    window.brush_size.setValue(8)
    window.paint_label.setCurrentIndex(window.paint_label.findText("part_02"))
    window.canvas.zoom_fit()
    qtbot.wait(50)
    viewport = window.canvas.viewport()
    start, end = window.canvas.mapFromScene(8.0, 24.0), window.canvas.mapFromScene(56.0, 24.0)
    qtbot.mousePress(viewport, Qt.LeftButton, pos=start)
    for t in np.linspace(0, 1, 5)[1:]:
        qtbot.mouseMove(viewport, QPoint(int(start.x() + t * (end.x() - start.x())), start.y()))
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=end)
    layer = project.edits(edited)
    assert layer.has_edits and project.record(edited).status is ImageStatus.EDITED
    painted = layer.data != UNSET
    window.save_project()

    export_dir = tmp_path / "export"
    dialog = ExportDialog(project, window, default_out_dir=export_dir)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.ended, timeout=60_000) as ended:
        assert dialog.start_export()
    assert ended.args == ["done"] and dialog.result().images == len(GOOD)
    dialog.close()
    names = unique_mask_relpaths(project.relpaths())
    part_02 = project.parts.to_export(np.array([[2]], np.uint16))[0, 0]
    for relpath, mask in masks.items():
        with Image.open(export_dir / "masks" / names[relpath]) as im:
            exported = np.asarray(im)
        if relpath != edited:
            np.testing.assert_array_equal(exported, mask, err_msg=relpath)
            continue
        assert painted.sum() > 100 and (exported[painted] == part_02).all()
        np.testing.assert_array_equal(exported[~painted], mask[~painted])
    window.close()

    # a re-run that redoes everything leaves the corrected image, and only it, as the person left it
    prediction_file = out / ".mpae" / "predictions" / f"{edited}.npz"
    kept = prediction_file.read_bytes()
    monkeypatch.undo()
    assert batch(images, out, checkpoint, "--overwrite") == 1
    statuses = {e["file"]: e["status"] for e in report_of(out)["images"]}
    assert statuses == {**{rel: "ok" for rel in GOOD if rel != edited}, edited: "skipped", "broken.jpg": "error"}
    reopened = AnnotationProject.open(out, write=False)
    assert reopened.record(edited).status is ImageStatus.EDITED and prediction_file.read_bytes() == kept
    assert (reopened.edits(edited).data != UNSET).sum() == painted.sum()


# ----- the write lock -----------------------------------------------------------------------------------------------
HOLD = ("import sys; from mpae_core.annotation import AnnotationProject; "
        "p = AnnotationProject.open(sys.argv[1]); assert p.read_only is None; print('ready', flush=True); "
        "sys.stdin.read()")


def test_batch_refuses_a_project_open_elsewhere_and_recovers_a_crashed_holders_lock(checkpoint, tmp_path,
                                                                                    capsys):
    images, out = make_images(tmp_path / "images", broken=False), tmp_path / "run"
    assert batch(images, out, checkpoint) == 0
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = digests(out)
        assert batch(images, out, checkpoint, "--overwrite") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: The project in ") and "\n" not in err, err
        assert f"is open in another window or process (process {holder.pid} on this computer" in err
        assert "close it there and run the batch again." in err
        assert digests(out) == before  # nothing written, not even the report
    finally:
        holder.kill()  # a crash: the kernel frees its lock
        holder.wait(timeout=30)
    assert batch(images, out, checkpoint, "--overwrite") == 0
    assert {e["status"] for e in report_of(out)["images"]} == {"ok"}
    assert_store_shows_the_masks(out, model_fingerprint(load_checkpoint(checkpoint)))


# ----- a person's work, other models, re-runs -----------------------------------------------------------------------
def test_rerun_never_predicts_over_edits_or_reviews_and_another_model_is_refused_then(checkpoint, tmp_path, capsys):
    images, out = make_images(tmp_path / "images", broken=False), tmp_path / "run"
    assert batch(images, out, checkpoint) == 0
    with AnnotationProject.open(out) as project:
        project.edits("p1.png").brush(10, 10, 4, 3)
        project.mark_reviewed("wide.jpg")
    predictions = out / ".mpae" / "predictions"
    kept = {rel: (predictions / f"{rel}.npz").read_bytes() for rel in ("p1.png", "wide.jpg")}
    mtimes = {rel: (predictions / f"{rel}.npz").stat().st_mtime_ns for rel in GOOD}

    assert batch(images, out, checkpoint, "--overwrite") == 0
    statuses = {e["file"]: e["status"] for e in report_of(out)["images"]}
    assert statuses == {"p0.jpg": "ok", "sub_a.png": "ok", "p1.png": "skipped", "wide.jpg": "skipped"}
    assert all((predictions / f"{rel}.npz").read_bytes() == data for rel, data in kept.items())
    assert all((predictions / f"{rel}.npz").stat().st_mtime_ns != mtimes[rel] for rel in ("p0.jpg", "sub_a.png"))
    project = AnnotationProject.open(out, write=False)
    assert project.record("p1.png").status is ImageStatus.EDITED
    assert project.record("wide.jpg").status is ImageStatus.REVIEWED

    capsys.readouterr()
    before = digests(out)
    other = save_checkpoint(tiny_model(seed=6), tmp_path / "other.safetensors", embed_backbone=True)
    assert batch(images, out, other) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a person's edits, reviews or part names" in err and "another --out folder" in err
    assert "\n" not in err and digests(out) == before


def test_another_model_starts_an_untouched_project_again(checkpoint, tmp_path):
    images, out = make_images(tmp_path / "images", broken=False), tmp_path / "run"
    assert batch(images, out, checkpoint) == 0
    other = save_checkpoint(tiny_model(seed=6), tmp_path / "other.safetensors", embed_backbone=True)
    assert batch(images, out, other) == 0
    fingerprint = model_fingerprint(load_checkpoint(other))
    assert AnnotationProject.open(out, write=False).model_family == [fingerprint]
    assert_store_shows_the_masks(out, fingerprint)

    # a person renames a part: that is work, and the first model is refused now
    with AnnotationProject.open(out) as project:
        project.parts.rename(0, "beak")
    assert batch(images, out, checkpoint) == 2
    assert AnnotationProject.open(out, write=False).parts.display_name(0) == "beak"


def test_rerun_predicts_what_the_project_lacks_or_what_changed_on_disk(checkpoint, tmp_path):
    images, out = make_images(tmp_path / "images", broken=False), tmp_path / "run"
    assert batch(images, out, checkpoint) == 0
    fingerprint = model_fingerprint(load_checkpoint(checkpoint))
    rng = np.random.default_rng(9)
    Image.fromarray(rng.integers(0, 256, size=(*GOOD["p1.png"], 3), dtype=np.uint8)).save(images / "p1.png")
    assert batch(images, out, checkpoint) == 0
    assert {e["file"]: e["status"] for e in report_of(out)["images"]} == {
        **{rel: "skipped" for rel in GOOD}, "p1.png": "ok"}
    assert_store_shows_the_masks(out, fingerprint)

    # an output folder from before the project (or one whose project was deleted) gets it on the next run
    for path in sorted((out / ".mpae").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert batch(images, out, checkpoint) == 0
    assert {e["status"] for e in report_of(out)["images"]} == {"ok"}
    assert_store_shows_the_masks(out, fingerprint)


def test_maps_made_on_the_device_store_the_same_predictions(checkpoint, tmp_path):
    """The GPU path (label maps on the model's device), run on the CPU: the project gets the logits too."""
    images = make_images(tmp_path / "images", broken=False)
    for maps_on_device in (False, True):
        out = tmp_path / f"out-{maps_on_device}"
        config = BatchConfig(images=images, checkpoint=checkpoint, out=out, workers=0, encoders=1,
                             maps_on_device=maps_on_device)
        report = run_batch(config)
        assert report.succeeded and report.project_dir == out / ".mpae"
        assert_store_shows_the_masks(out, model_fingerprint(load_checkpoint(checkpoint)))
    first, second = (AnnotationProject.open(tmp_path / f"out-{d}", write=False) for d in (False, True))
    for relpath in GOOD:
        torch.testing.assert_close(first.prediction(relpath).logits, second.prediction(relpath).logits)


def test_prediction_files_are_the_projects_layout_with_exact_logits(tmp_path):
    """What the encoders write is read back by the project as the very logits the masks were made from."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (50, 30)).save(tmp_path / "images" / "a b.png")
    project = AnnotationProject.create(tmp_path / "images", project_dir=tmp_path / "store")
    logits = np.random.default_rng(0).normal(size=(5, 16, 16)).astype(np.float32)
    files = PredictionFiles(project.project_dir, (128, 128))
    stored = files.write("a b.png", logits, (30, 50), (123, 456))
    reference = PartPrediction.from_logits(torch.from_numpy(logits), (30, 50), (128, 128))
    project.set_prediction("other.png", reference)  # the project's own file of the same prediction
    record_written_prediction(project, "a b.png", stored, "fp")
    project.close()

    project = AnnotationProject.open(tmp_path / "store", write=False)
    record = project.record("a b.png")
    assert (record.status, record.size, record.model, record.stamp) == (ImageStatus.PREDICTED, (30, 50), "fp",
                                                                        (123, 456))
    assert record.present == tuple(np.flatnonzero(reference.presence))
    read = project.prediction("a b.png")
    assert torch.equal(read.logits, torch.from_numpy(logits)) and read.confidence == pytest.approx(
        reference.confidence)
    np.testing.assert_array_equal(project.label_map("a b.png"), label_map_at(logits, (30, 50)))
    ours = np.load(tmp_path / "store" / "predictions" / "a b.png.npz")
    theirs = np.load(tmp_path / "store" / "predictions" / "other.png.npz")
    assert set(ours.files) == set(theirs.files)
    assert all(ours[k].dtype == theirs[k].dtype for k in ours.files if k != "logits")
    assert read_prediction_file(tmp_path / "store" / "predictions" / "a b.png.npz").image_size == (30, 50)

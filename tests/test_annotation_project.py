"""Annotation project: per-image state, edits and part table survive save/reopen; formats and atomic writes."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mpae_core.annotation import project as project_module
from mpae_core.annotation.labels import UNSET
from mpae_core.annotation.parts import PartTable
from mpae_core.annotation.project import AnnotationProject, ImageStatus, normalize_relpath
from mpae_core.errors import MPAEError
from mpae_core.inference import PartPrediction

K = 4


def make_prediction(seed: int, size: tuple[int, int], num_parts: int = K) -> PartPrediction:
    generator = torch.Generator().manual_seed(seed)
    return PartPrediction.from_logits(torch.randn(num_parts + 1, 6, 6, generator=generator) * 3, size)


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name, size in [("a.jpg", (40, 30)), ("b.png", (24, 32)), ("sub/ç.png", (20, 20)), ("d.png", (16, 16))]:
        Image.new("RGB", size, (90, 120, 200)).save(images / name)
    return images


def filled_project(folder) -> AnnotationProject:
    project = AnnotationProject.create(folder, checkpoint=folder.parent / "model.safetensors", recursive=True)
    for i, rel in enumerate(["a.jpg", "b.png", "sub/ç.png"]):
        width, height = Image.open(folder / rel).size
        project.set_prediction(rel, make_prediction(i, (height, width)))
    project.set_error("d.png", "Cannot read 'd.png': the file is truncated; re-export or remove it.")
    layer = project.edits("b.png")
    layer.brush(10, 10, 4, 3)
    layer.fill(0, 0, 0, project.prediction("b.png").label_map())
    project.mark_reviewed("sub/ç.png")
    project.parts.rename(0, "head")
    project.parts.merge(2, 0)
    project.parts.set_as_background(3)
    return project


def test_create_scans_the_folder_but_not_its_own_output(folder):
    (folder / "out").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "out" / "mask.png")
    project = AnnotationProject.create(folder, recursive=True, project_dir=folder / "out")
    assert project.relpaths() == ["a.jpg", "b.png", "d.png", "sub/ç.png"]
    assert all(r.status is ImageStatus.NEW for r in project.records())
    assert (folder / "out" / "project.json").is_file()
    with pytest.raises(MPAEError, match="already holds an MPAE project"):
        AnnotationProject.create(folder, project_dir=folder / "out")


def test_save_and_reopen_restore_everything(folder):
    project = filled_project(folder)
    maps = {rel: project.label_map(rel) for rel in ["a.jpg", "b.png", "sub/ç.png"]}
    edits = project.edits("b.png").data.copy()
    project.save()

    reopened = AnnotationProject.open(folder)
    assert reopened.parts == project.parts and reopened.parts.display_name(2) == "head"
    assert reopened.checkpoint == folder.parent / "model.safetensors"
    assert reopened.images_folder == folder
    statuses = {r.relpath: r.status for r in reopened.records()}
    assert statuses == {"a.jpg": ImageStatus.PREDICTED, "b.png": ImageStatus.EDITED,
                        "d.png": ImageStatus.ERROR, "sub/ç.png": ImageStatus.REVIEWED}
    assert "truncated" in reopened.record("d.png").error
    assert reopened.record("a.jpg").size == (30, 40)
    assert reopened.record("a.jpg").confidence == pytest.approx(project.prediction("a.jpg").confidence, abs=1e-6)
    for rel, expected in maps.items():
        np.testing.assert_array_equal(reopened.label_map(rel), expected)
    np.testing.assert_array_equal(reopened.edits("b.png").data, edits)
    stored = reopened.prediction("a.jpg")
    np.testing.assert_array_equal(stored.presence, project.prediction("a.jpg").presence)
    assert stored.logits.dtype == torch.float32 and stored.logits.shape == (K + 1, 6, 6)
    root = folder / ".mpae"
    assert (root / "predictions" / "sub" / "ç.png.npz").is_file()
    assert sorted(p.relative_to(root / "edits").as_posix() for p in (root / "edits").rglob("*.png")) == ["b.png.png"]


def test_label_maps_come_from_the_stored_float16_logits(folder):
    project = AnnotationProject.create(folder)
    prediction = make_prediction(3, (30, 40))
    project.set_prediction("a.jpg", prediction)
    rounded = PartPrediction.from_logits(prediction.logits.half().float(), (30, 40))
    np.testing.assert_array_equal(project.label_map("a.jpg"), rounded.label_map())
    project.save()
    np.testing.assert_array_equal(AnnotationProject.open(folder).label_map("a.jpg"), rounded.label_map())


def test_status_follows_edits_review_and_undo(folder):
    project = AnnotationProject.create(folder)
    project.set_prediction("a.jpg", make_prediction(0, (30, 40)))
    project.mark_reviewed("a.jpg")
    layer = project.edits("a.jpg")
    layer.brush(5, 5, 2, 1)
    assert project.record("a.jpg").status is ImageStatus.EDITED  # an edit re-opens a reviewed image
    project.save()
    edit_file = folder / ".mpae" / "edits" / "a.jpg.png"
    assert edit_file.is_file()
    layer.undo()
    assert project.record("a.jpg").status is ImageStatus.PREDICTED and not project.record("a.jpg").has_edits
    project.save()
    assert not edit_file.exists()
    with pytest.raises(ValueError, match="no prediction or edits"):
        project.mark_reviewed("b.png")
    project.set_error("a.jpg", "out of memory")
    project.set_prediction("a.jpg", make_prediction(1, (30, 40)))
    assert project.record("a.jpg").status is ImageStatus.PREDICTED and project.record("a.jpg").error is None


def test_edit_cache_is_small_and_evicted_edits_are_saved(folder):
    project = AnnotationProject.create(folder, recursive=True, edit_cache_size=1)
    for i, (rel, size) in enumerate([("a.jpg", (30, 40)), ("b.png", (32, 24))]):
        project.set_prediction(rel, make_prediction(i, size))
    first = project.edits("a.jpg")
    first.brush(3, 3, 2, 2)
    project.edits("b.png").brush(3, 3, 2, 1)  # evicts a.jpg's layer: written now, not lost
    assert (folder / ".mpae" / "edits" / "a.jpg.png").is_file()
    assert len(project._edit_cache) == 1
    assert project.label_map("a.jpg")[3, 3] == 2
    first.brush(30, 20, 1, 3)  # a view still holding the evicted layer keeps working
    project.save()
    reopened = AnnotationProject.open(folder)
    assert reopened.label_map("a.jpg")[20, 30] == 3 and reopened.label_map("b.png")[3, 3] == 1


def test_newer_format_is_refused_and_older_ones_upgrade_or_say_why(folder, monkeypatch):
    AnnotationProject.create(folder)
    index = folder / ".mpae" / "project.json"
    data = json.loads(index.read_text())

    data["format_version"] = project_module.PROJECT_VERSION + 1
    index.write_text(json.dumps(data))
    with pytest.raises(MPAEError, match="newer MPAE Annotator.*update the app"):
        AnnotationProject.open(folder)

    data["format_version"] = 0
    index.write_text(json.dumps(data))
    with pytest.raises(MPAEError, match="format 0, which this version cannot upgrade"):
        AnnotationProject.open(folder)

    def from_v0(old):
        new = dict(old)
        new["images"] = [{"path": p, "status": "new"} for p in old.pop("image_list")]
        return new

    monkeypatch.setitem(project_module.MIGRATIONS, 0, from_v0)
    data.pop("images")
    data["image_list"] = ["a.jpg"]
    index.write_text(json.dumps(data))
    assert AnnotationProject.open(folder).relpaths() == ["a.jpg"]

    index.write_text('{"format": "something-else", "format_version": 1}')
    with pytest.raises(MPAEError, match="not an MPAE Annotator project"):
        AnnotationProject.open(folder)
    index.write_text("{broken")
    with pytest.raises(MPAEError, match="not readable JSON"):
        AnnotationProject.open(folder)
    with pytest.raises(MPAEError, match="no MPAE project"):
        AnnotationProject.open(folder / "sub")


def test_a_failed_write_leaves_the_old_index_intact(folder, monkeypatch):
    project = AnnotationProject.create(folder)
    project.set_prediction("a.jpg", make_prediction(0, (30, 40)))
    project.save()
    index = folder / ".mpae" / "project.json"
    before = index.read_bytes()
    project.parts.rename(1, "tail")
    project.set_error("b.png", "broken")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        project.save()
    assert index.read_bytes() == before
    assert not [p for p in index.parent.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    project.save()  # the change was not lost: the next save writes it
    assert AnnotationProject.open(folder).parts.display_name(1) == "tail"


def test_part_count_must_match_and_paths_stay_inside(folder):
    project = AnnotationProject.create(folder, parts=PartTable.default(K))
    with pytest.raises(MPAEError, match="has 2 parts but the project"):
        project.set_prediction("a.jpg", make_prediction(0, (30, 40), num_parts=2))
    with pytest.raises(ValueError, match="not a path inside the image folder"):
        project.set_prediction("../x.jpg", make_prediction(0, (30, 40)))
    with pytest.raises(ValueError, match="not a path inside"):
        normalize_relpath("/etc/passwd")
    assert normalize_relpath("./sub//x.jpg") == "sub/x.jpg"
    with pytest.raises(MPAEError, match="no prediction or edits yet"):
        project.label_map("b.png")
    with pytest.raises(KeyError, match="not an image of the project"):
        project.record("missing.jpg")


def test_a_project_folder_outside_the_images_stores_absolute_paths(folder, tmp_path):
    out = tmp_path / "elsewhere"
    project = AnnotationProject.create(folder, project_dir=out)
    project.set_prediction("a.jpg", make_prediction(0, (30, 40)))
    project.save()
    assert json.loads((out / "project.json").read_text())["images_folder"] == str(folder)
    assert AnnotationProject.open(out).images_folder == folder
    assert not (folder / ".mpae").exists()


def test_the_default_project_folder_moves_with_the_images(folder, tmp_path):
    project = AnnotationProject.create(folder)
    project.set_prediction("a.jpg", make_prediction(0, (30, 40)))
    project.save()
    assert json.loads((folder / ".mpae" / "project.json").read_text())["images_folder"] == ".."
    moved = folder.rename(tmp_path / "moved")
    reopened = AnnotationProject.open(moved)
    assert reopened.images_folder == moved and reopened.label_map("a.jpg").shape == (30, 40)


def test_label_maps_are_streamed_for_exportable_images_only(folder):
    project = filled_project(folder)
    items = project.iter_label_maps()
    first = next(items)
    assert first[0] == "a.jpg" and first[1].shape == (30, 40) and first[1].dtype == np.uint16
    assert [rel for rel, _ in items] == ["b.png", "sub/ç.png"]  # d.png failed: not exported
    b = project.label_map("b.png")
    assert (b[project.edits("b.png").data != UNSET] == project.edits("b.png").data[
        project.edits("b.png").data != UNSET]).all()


def test_part_image_counts_follow_predictions_and_survive_reopen(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    project = AnnotationProject.create(folder)
    for name, hot in (("a.png", 0), ("b.png", 2)):
        logits = torch.full((4, 2, 2), -5.0)
        logits[hot] = 5.0
        project.set_prediction(name, PartPrediction.from_logits(logits, (8, 8)))
    assert project.part_image_counts().tolist() == [1, 0, 1]
    project.save()
    assert AnnotationProject.open(folder).part_image_counts().tolist() == [1, 0, 1]

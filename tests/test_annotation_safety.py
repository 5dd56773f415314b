"""The store never loses or downgrades a person's work: derived statuses, recovery after a crash, changed files,
one writer per project, user labels, and files other tools can read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpae_core.annotation import AnnotationProject, FileState, ImageStatus, ModelFit, PartTable
from mpae_core.annotation.export import export_annotations
from mpae_core.annotation.labels import IGNORE_LABEL, USER_LABEL_BASE
from mpae_core.annotation.project_format import PROJECT_VERSION
from mpae_core.annotation.records import file_stamp
from mpae_core.errors import MPAEError
from mpae_core.inference import PartPrediction

from test_annotation_project import K, make_prediction


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, size in [("a.jpg", (40, 30)), ("b.png", (24, 32)), ("c.png", (20, 20))]:
        Image.new("RGB", size, (90, 120, 200)).save(images / name)
    return images


def predicted(folder) -> AnnotationProject:
    project = AnnotationProject.create(folder, parts=PartTable.default(K))
    for i, rel in enumerate(["a.jpg", "b.png", "c.png"]):
        width, height = Image.open(folder / rel).size
        project.set_prediction(rel, make_prediction(i, (height, width)), model="m1")
    return project


def test_a_failure_or_a_new_prediction_never_downgrades_reviewed_or_edited_images(folder):
    project = predicted(folder)
    project.mark_reviewed("a.jpg")
    project.edits("b.png").brush(5, 5, 3, 2)
    project.set_error("a.jpg", "CUDA out of memory")
    project.set_error("b.png", "CUDA out of memory")
    project.set_error("c.png", "CUDA out of memory")
    statuses = {r.relpath: r.status for r in project.records()}
    assert statuses == {"a.jpg": ImageStatus.REVIEWED, "b.png": ImageStatus.EDITED, "c.png": ImageStatus.PREDICTED}
    assert project.record("a.jpg").error == "CUDA out of memory"  # still reported, beside the work
    edited = project.label_map("b.png")
    project.set_prediction("a.jpg", make_prediction(7, (30, 40)), model="m2")
    project.set_prediction("b.png", make_prediction(8, (32, 24)), model="m2")
    assert project.record("a.jpg").status is ImageStatus.REVIEWED and project.record("a.jpg").error is None
    assert project.record("a.jpg").model == "m2"
    assert (project.label_map("b.png") == edited)[project.edits("b.png").data != 65535].all()
    assert project.untouched_relpaths() == ["c.png"]


def test_an_image_without_prediction_can_be_painted_and_exported(folder, tmp_path):
    project = AnnotationProject.create(folder, parts=PartTable.default(K))
    project.add_image("a.jpg", (30, 40))
    project.edits("a.jpg").brush(10, 10, 4, 2)
    labels = project.label_map("a.jpg")
    assert labels.shape == (30, 40) and labels[10, 10] == 2 and labels[0, 0] == 0
    assert project.record("a.jpg").status is ImageStatus.EDITED
    project.save()
    reopened = AnnotationProject.open(folder, write=False)
    np.testing.assert_array_equal(reopened.label_map("a.jpg"), labels)
    result = export_annotations(reopened, reopened.parts, tmp_path / "out", formats=("png",))
    assert result.images == 1


def test_user_labels_are_painted_exported_after_the_parts_and_survive_reopening(folder, tmp_path):
    project = predicted(folder)
    project.parts.set_as_background(3)
    value = project.parts.add_user_label("antenna", (1, 2, 3))
    assert value == USER_LABEL_BASE
    with pytest.raises(ValueError, match="already called 'part_01'"):
        project.parts.add_user_label("part_01")
    layer = project.edits("a.jpg")
    layer.brush(5, 5, 2, value)
    layer.brush(20, 20, 2, IGNORE_LABEL)
    labels = [(l.index, l.name) for l in project.parts.export_labels()]
    assert labels == [(1, "part_01"), (2, "part_02"), (3, "part_03"), (4, "antenna")]
    exported = project.parts.to_export(project.label_map("a.jpg"))
    assert exported[5, 5] == 4 and exported[20, 20] == 255
    with pytest.raises(ValueError, match="'antenna' is painted on 'a.jpg'"):
        project.remove_last_user_label()
    project.save()
    reopened = AnnotationProject.open(folder, write=False)
    assert reopened.parts == project.parts and reopened.parts.value_name(value) == "antenna"
    with pytest.raises(ValueError, match="value 32769"):
        project.parts.to_export(np.array([[USER_LABEL_BASE + 1]], dtype=np.uint16))
    export_annotations(reopened, reopened.parts, tmp_path / "out", formats=("png",))
    assert (tmp_path / "out" / "labels.txt").read_text().split("\n")[4] == "antenna"


def test_a_crash_before_the_index_is_written_loses_no_prediction_or_edit(folder):
    project = predicted(folder)
    project.save()
    index_before = (project.project_dir / "project.json").read_bytes()
    # what a run does after the last index write: more predictions and a stroke reach their files...
    project.set_prediction("a.jpg", make_prediction(9, (30, 40)))
    layer = project.edits("c.png")
    layer.brush(4, 4, 3, 1)
    for job in project.save_jobs()[:-1]:  # ...the edit layer is written, then the process dies before the index
        job()
    (project.project_dir / "project.json").write_bytes(index_before)
    fresh = json.loads(index_before)
    fresh["images"] = [r for r in fresh["images"] if r["path"] != "b.png"]  # even an image the index never had
    (project.project_dir / "project.json").write_text(json.dumps(fresh))
    (project.project_dir / ".project.json.x1.tmp").write_text("half")
    project._lock.release()

    reopened = AnnotationProject.open(folder)
    assert reopened.record("b.png").status is ImageStatus.PREDICTED
    assert reopened.record("c.png").status is ImageStatus.EDITED
    np.testing.assert_array_equal(reopened.edits("c.png").data, layer.data)
    assert not list(reopened.project_dir.glob(".*.tmp"))
    assert reopened.dirty


def test_save_jobs_write_the_data_as_it_was_when_they_were_made(folder):
    project = predicted(folder)
    layer = project.edits("a.jpg")
    layer.brush(5, 5, 2, 1)
    jobs = project.save_jobs()
    layer.brush(20, 20, 2, 2)  # painting goes on while the jobs run elsewhere
    for job in jobs:
        job()
    project._lock.release()
    reopened = AnnotationProject.open(folder, write=False)
    saved = reopened.edits("a.jpg").data
    assert saved[5, 5] == 1 and saved[20, 20] == 65535
    assert project.dirty  # the second stroke is still to be saved


def test_changed_and_deleted_images_are_flagged_and_not_exported_as_if_nothing_happened(folder, tmp_path):
    project = predicted(folder)
    assert project.check_files() == []
    Image.new("RGB", (40, 30), (1, 2, 3)).save(folder / "a.jpg")  # a replaced photo (same name)
    os.utime(folder / "a.jpg", ns=(1, 1))
    (folder / "b.png").unlink()
    assert sorted(project.check_files()) == ["a.jpg", "b.png"]
    assert project.record("a.jpg").file_state is FileState.CHANGED
    assert project.record("b.png").file_state is FileState.MISSING
    assert project.changed_relpaths() == ["a.jpg"]
    assert [rel for rel, _ in project.iter_label_maps()] == ["b.png", "c.png"]
    project.set_prediction("a.jpg", make_prediction(3, (30, 40)))  # predicting it again clears the flag
    assert project.record("a.jpg").file_state is FileState.UNCHANGED
    assert project.record("a.jpg").stamp == file_stamp(folder / "a.jpg")


def test_model_fit_knows_the_family_and_refuses_another_size(folder):
    project = predicted(folder)
    assert project.model_fit(K, "m1") is ModelFit.FITS  # an old project without fingerprints trusts its model
    project.adopt_model("m1")
    assert project.model_fit(K, "m1") is ModelFit.FITS
    assert project.model_fit(K, "refined", lineage=["m1"]) is ModelFit.FITS
    assert project.model_fit(K, "other") is ModelFit.UNKNOWN
    assert project.model_fit(K + 1, "m1") is ModelFit.WRONG_SIZE
    assert "has 5 parts but this project's part table has 4" in project.describe_misfit("x.pth", K + 1)
    names = PartTable.default(K)
    names.rename(0, "wing")
    project.adopt_model("other", names)
    assert project.model_family == ["other"] and project.parts.display_name(0) == "wing"
    with pytest.raises(MPAEError, match="has 5 parts"):
        project.adopt_model("x", PartTable.default(K + 1))


def test_version_1_projects_upgrade_reviews_and_background_flags(folder):
    project = predicted(folder)
    project.mark_reviewed("a.jpg")
    project.parts.set_as_background(2)
    project.save()
    project._lock.release()
    index = project.project_dir / "project.json"
    data = json.loads(index.read_text())
    data["format_version"] = 1
    data.pop("model_family")
    for record in data["images"]:
        record.pop("reviewed", None)
    for slot in data["parts"]["slots"]:
        slot["ignored"] = slot.pop("as_background")
    index.write_text(json.dumps(data))
    upgraded = AnnotationProject.open(folder)
    assert upgraded.record("a.jpg").status is ImageStatus.REVIEWED
    assert upgraded.parts.is_background(2) and not upgraded.parts.is_background(1)
    upgraded.save()
    assert json.loads(index.read_text())["format_version"] == PROJECT_VERSION


def test_files_are_readable_by_others(folder, tmp_path):
    project = predicted(folder)
    project.save()
    old = os.umask(0o022)
    try:
        result = export_annotations(project, project.parts, tmp_path / "out", formats=("png", "coco"))
    finally:
        os.umask(old)
    for path in [project.index_path, result.coco_path, *(tmp_path / "out" / "masks").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o644, path


_HOLDER = textwrap.dedent("""
    import sys, time
    from mpae_core.annotation import AnnotationProject
    project = AnnotationProject.open(sys.argv[1])
    print("writable" if project.read_only is None else "read-only", flush=True)
    time.sleep(60)
""")


def test_a_second_process_opens_read_only_and_a_crashed_holder_leaves_no_lock(folder):
    predicted(folder).close()
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "writable"
        second = AnnotationProject.open(folder)
        assert second.read_only is not None and f"process {holder.pid}" in second.read_only
        second.mark_reviewed("a.jpg")
        with pytest.raises(MPAEError, match="read-only here|Cannot save"):
            second.save()
        with pytest.raises(MPAEError, match="read-only here"):
            second.set_prediction("a.jpg", make_prediction(1, (30, 40)))
    finally:
        holder.kill()  # like kill -9: no clean-up runs in the holder
        holder.wait()
    third = AnnotationProject.open(folder)
    assert third.read_only is None
    third.mark_reviewed("a.jpg")
    third.save()


def test_part_counts_and_present_labels_include_hand_edits(folder):
    project = predicted(folder)
    logits = torch.zeros(K + 1, 6, 6)
    logits[0] = 10.0  # c.png shows part 1 only
    project.set_prediction("c.png", PartPrediction.from_logits(logits, (20, 20)))
    before = project.part_image_counts().copy()
    slot = 2
    assert project.record("c.png").present == (0,)
    value = project.parts.add_user_label("antenna")
    layer = project.edits("c.png")
    layer.brush(10, 10, 6, slot + 1)
    layer.brush(3, 3, 2, value)
    assert project.part_image_counts()[slot] == before[slot] + 1
    record = project.record("c.png")
    assert slot in record.present and record.user_present == (value,)
    project.add_image("new.png", (16, 16))  # an image painted before any prediction counts too
    project.edits("new.png").brush(8, 8, 20, slot + 1)
    assert project.part_image_counts()[slot] == before[slot] + 2
    project.save()
    assert AnnotationProject.open(folder, write=False).record("c.png").user_present == (value,)


def test_an_older_write_of_an_edit_layer_never_lands_after_a_newer_one(folder):
    """The background saver may still be writing an older version of a layer when the layer leaves the cache and
    is written on the GUI thread; whichever finishes last, the newer edits stay on disk."""
    project = predicted(folder)
    project.edit_cache_size = 1
    layer = project.edits("a.jpg")
    layer.brush(5, 5, 2, 1)
    older = project.save_jobs()  # handed to the saver thread, which has not run them yet
    layer.brush(20, 20, 2, 2)
    project.edits("b.png")  # a.jpg leaves the cache: its newest version is written at once
    newest = layer.data.copy()
    for job in older:  # the saver finishes late
        job()
    project._lock.release()
    np.testing.assert_array_equal(AnnotationProject.open(folder, write=False).edits("a.jpg").data, newest)


def test_a_save_makes_index_entries_only_for_the_images_that_changed(folder, monkeypatch):
    from mpae_core.annotation import records

    project = predicted(folder)
    project.save()
    made = []
    original = records.ImageRecord.to_dict
    monkeypatch.setattr(records.ImageRecord, "to_dict", lambda self: made.append(self.relpath) or original(self))
    project.mark_reviewed("b.png")
    project.set_error("c.png", "read error")
    project.save()
    assert sorted(made) == ["b.png", "c.png"]
    monkeypatch.undo()
    reopened = AnnotationProject.open(folder, write=False)
    assert reopened.record("b.png").status is ImageStatus.REVIEWED and reopened.record("c.png").error == "read error"

"""Reading an image's stored edit layer off the GUI thread (issue 11 store leftover): the reader touches no project
state, the project adopts what it read on its own thread, and a layer the project cached meanwhile wins."""
from __future__ import annotations

import threading

import numpy as np

from conftest import make_predicted_project
from mpae_core.annotation import AnnotationProject, ImageStatus
from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.labels import UNSET


def edited_project(tmp_path) -> tuple[AnnotationProject, str]:
    project = make_predicted_project(tmp_path / "images", num_images=2)
    relpath = project.relpaths()[1]
    project.edits(relpath).brush(40, 30, 6, 3)
    project.close()
    return AnnotationProject.open(tmp_path / "images"), relpath


def test_a_stored_layer_is_read_on_another_thread_and_adopted_on_this_one(tmp_path):
    project, relpath = edited_project(tmp_path)
    assert project.edits_loader(project.relpaths()[0]) is None  # nothing stored: edits() is cheap
    load = project.edits_loader(relpath)
    assert load is not None
    read: list[EditLayer] = []
    worker = threading.Thread(target=lambda: read.append(load()))
    worker.start()
    worker.join()
    assert not project._edit_cache  # the reader cached nothing
    layer = project.install_edit_layer(relpath, read[0])
    assert layer is read[0] and project.edits(relpath) is layer and layer.data[30, 40] == 3
    assert project.edits_loader(relpath) is None  # cached now
    layer.brush(10, 10, 2, 1)  # the project follows the adopted layer
    project.mark_reviewed(relpath, True)
    layer.brush(12, 10, 2, 2)
    assert project.record(relpath).status is ImageStatus.EDITED and project.dirty
    project.close()
    again = AnnotationProject.open(tmp_path / "images")
    assert again.edits(relpath).data[10, 12] == 2 and again.edits(relpath).data[30, 40] == 3
    again.close()


def test_a_layer_the_project_cached_meanwhile_wins(tmp_path):
    project, relpath = edited_project(tmp_path)
    late = project.edits_loader(relpath)()
    current = project.edits(relpath)  # e.g. an export or a count read it first, then someone painted
    current.brush(5, 5, 1, 2)
    assert project.install_edit_layer(relpath, late) is current
    assert project.label_map(relpath)[5, 5] == 2
    project.close()


def test_fill_region_applies_a_region_flooded_elsewhere_as_one_step():
    from mpae_core.annotation.fill import flood_region

    labels = np.zeros((6, 8), np.uint16)
    labels[:, 4:] = 2
    layer = EditLayer((6, 8), num_parts=3)
    box, inside = flood_region(labels, 6, 3)
    assert layer.fill_region(box, inside, 1) == 24
    assert (layer.data[:, 4:] == 1).all() and (layer.data[:, :4] == UNSET).all()
    assert layer.undo() and not layer.has_edits


def test_a_layer_whose_write_is_still_on_its_way_is_never_read_back_stale(tmp_path):
    """The background saver holds a layer's new pixels while the layer leaves the cache (the person browses on);
    opening the image again must give those pixels, not the file as it was before the write lands."""
    project = make_predicted_project(tmp_path / "images", num_images=3)
    project.close()
    project = AnnotationProject.open(tmp_path / "images", edit_cache_size=1)
    first, second, third = project.relpaths()
    project.edits(first).brush(40, 30, 6, 3)
    jobs = project.save_jobs()  # handed to the saver thread, not run yet
    project.edits(second)  # browsing on: the first layer leaves the cache
    assert project.edits_loader(first) is None  # nothing to read: the layer itself is still at hand
    layer = project.edits(first)
    assert layer.data[30, 40] == 3 and project.label_map(first)[30, 40] == 3
    project.edits(third)  # it leaves again, its write still not landed
    assert project.label_map(first)[30, 40] == 3 and 2 in project.record(first).present
    for job in jobs:
        job()
    project.edits(second)
    load = project.edits_loader(first)  # written now: read from disk (off the GUI thread in the app)
    assert load is not None and load().data[30, 40] == 3
    project.close()
    again = AnnotationProject.open(tmp_path / "images")
    assert again.edits(first).data[30, 40] == 3
    again.close()


def test_a_failed_write_of_a_layer_that_left_the_cache_is_written_again(tmp_path, monkeypatch):
    project = make_predicted_project(tmp_path / "images", num_images=3)
    project.close()
    project = AnnotationProject.open(tmp_path / "images", edit_cache_size=1)
    first, second, _ = project.relpaths()
    project.edits(first).brush(40, 30, 6, 3)
    jobs = project.save_jobs()
    project.edits(second)  # the first layer leaves the cache while its write is queued
    project.mark_unsaved()  # ... and that write failed (a full disk)
    del jobs
    project.save()
    assert AnnotationProject.open(tmp_path / "images", write=False).edits(first).data[30, 40] == 3
    project.close()

"""Re-prediction with a refined model, and switching the project to it: edits and reviewed masks are never rewritten."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mpae_core.annotation import AnnotationProject, ImageStatus
from mpae_core.annotation.models import list_models, new_model_path
from mpae_core.annotation.repredict import repredict
from mpae_core.checkpoint import load_checkpoint, model_fingerprint
from mpae_core.images import load_image
from mpae_core.inference import Predictor
from refine_helpers import make_images, predicted_project, tiny_checkpoint, tree_digest
from training.run import main


@pytest.fixture
def mixed(tmp_path) -> AnnotationProject:
    """img_0 edited, img_1 reviewed, img_2 edited and reviewed, img_3/img_4 predicted, img_5 new."""
    project = predicted_project(tmp_path, count=5)
    project.edits("img_0.png").brush(10, 10, 5, 2)
    project.mark_reviewed("img_1.png")
    project.edits("img_2.png").brush(30, 20, 4, 0)
    project.mark_reviewed("img_2.png")
    make_images(tmp_path / "more", 6)
    (tmp_path / "more" / "img_5.png").rename(project.images_folder / "img_5.png")
    project.scan()
    project.save()
    return project


def protected_files(project: AnnotationProject) -> dict[str, str]:
    digests = tree_digest(project.project_dir)
    return {k: v for k, v in digests.items()
            if k.startswith(("edits/", "predictions/img_0", "predictions/img_1", "predictions/img_2"))}


def test_only_images_nobody_touched_are_predicted_again(mixed, tmp_path):
    assert mixed.untouched_relpaths() == ["img_3.png", "img_4.png"]
    protected = protected_files(mixed)
    maps = {rel: mixed.label_map(rel) for rel in ("img_0.png", "img_1.png", "img_2.png")}
    statuses = {r.relpath: r.status for r in mixed.records()}
    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    progress = []
    summary = repredict(mixed, Predictor(other, "cpu"), model=model_fingerprint(other), batch_size=1,
                        progress=lambda done, total: progress.append((done, total)))
    mixed.close()

    assert summary.relpaths == ["img_3.png", "img_4.png"] and summary.images == 2
    assert summary.model == model_fingerprint(other) and progress[-1] == (2, 2)
    assert summary.changed_images >= 1 and 0 < summary.changed_fraction <= 1
    reopened = AnnotationProject.open(mixed.images_folder)
    assert protected_files(reopened) == protected  # edit layers and the touched images' predictions, byte for byte
    for rel, expected in maps.items():
        np.testing.assert_array_equal(reopened.label_map(rel), expected)
    assert {r.relpath: r.status for r in reopened.records()} == statuses
    assert reopened.record("img_3.png").model == model_fingerprint(other)  # the index says which model predicted it
    expected = Predictor(other, "cpu").predict_one(load_image(reopened.image_path("img_3.png"))).label_map()
    np.testing.assert_array_equal(reopened.label_map("img_3.png"), expected)


def test_listed_images_with_a_persons_work_are_still_skipped(mixed, tmp_path):
    protected = protected_files(mixed)
    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    summary = repredict(mixed, Predictor(other, "cpu"),
                        ["img_0.png", "img_1.png", "img_2.png", "img_4.png", "img_5.png"])
    mixed.save()
    assert summary.relpaths == ["img_4.png", "img_5.png"]  # a new image is predicted when asked for
    assert summary.changed_fraction > 0 and mixed.record("img_5.png").status is ImageStatus.PREDICTED
    assert protected_files(mixed) == protected


def test_a_vanished_image_is_reported_and_the_rest_go_on(mixed, tmp_path):
    (mixed.images_folder / "img_3.png").unlink()
    cancel_after_first = iter([False, True])
    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    summary = repredict(mixed, Predictor(other, "cpu"), ["img_3.png", "img_4.png", "img_5.png"], batch_size=2,
                        cancelled=lambda: next(cancel_after_first))
    assert "does not exist" in summary.failed["img_3.png"] and summary.relpaths == ["img_4.png"]  # then cancelled
    assert "does not exist" in mixed.record("img_3.png").error
    assert mixed.record("img_3.png").status is ImageStatus.PREDICTED  # its earlier prediction is kept
    assert mixed.record("img_5.png").status is ImageStatus.NEW


def test_switching_the_project_to_its_refined_model(mixed, tmp_path):
    """Refine → the new model is listed in the project's models folder → the project switches to it and the
    unreviewed images are re-predicted by it, while the corrections stay as they were."""
    assert main(["refine", "--project", str(mixed.images_folder), "--out", str(tmp_path / "run"), "--steps", "2",
                 "--batch-size", "4", "--corrected-per-step", "2", "--device", "cpu", "--name", "after fixes"]) == 0
    project = mixed  # the refinement only read the project: the window that holds it open goes on with it
    models = list_models(project.models_dir)
    assert [m.name for m in models] == ["after fixes"]
    assert models[0].provenance["corrected_images"] == 3
    assert new_model_path(project.models_dir, "after fixes").name == "after fixes-2.safetensors"

    refined = load_checkpoint(models[0].path)
    start = load_checkpoint(project.checkpoint)
    project.adopt_model(model_fingerprint(start))
    assert project.model_fit(refined.cfg.num_parts, model_fingerprint(refined), refined.info.provenance["lineage"]) \
        .value == "fits"  # the refined model's slots are the ones the project named
    protected = protected_files(project)
    project.set_checkpoint(models[0].path)
    project.adopt_model(model_fingerprint(refined))
    repredict(project, Predictor(refined, "cpu"), model=model_fingerprint(refined))
    project.close()
    reopened = AnnotationProject.open(mixed.images_folder)
    assert reopened.checkpoint == models[0].path
    assert protected_files(reopened) == protected
    fresh = Predictor(refined, "cpu").predict_one(load_image(reopened.image_path("img_4.png")))
    expected = dataclasses.replace(fresh, logits=fresh.logits.half().float()).label_map()  # stored as float16
    np.testing.assert_array_equal(reopened.label_map("img_4.png"), expected)
    assert reopened.record("img_4.png").model == model_fingerprint(refined)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["fingerprint"] == model_fingerprint(refined)


def test_model_names_are_file_names(tmp_path):
    from mpae_core.annotation.models import check_model_name

    assert check_model_name("refined 1.safetensors") == "refined 1"
    for bad in ("", "a/b", "..", ".hidden", "x:y"):
        with pytest.raises(ValueError, match="cannot be a model name"):
            check_model_name(bad)
    assert list_models(tmp_path / "nowhere") == []

"""Re-prediction with a refined model, and switching the project to it: edits and reviewed masks are never rewritten."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpae_core.annotation import AnnotationProject, ImageStatus
from mpae_core.annotation.models import list_models, new_model_path
from mpae_core.annotation.repredict import repredict, repredictable
from mpae_core.checkpoint import load_checkpoint
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
    assert repredictable(mixed) == ["img_3.png", "img_4.png", "img_5.png"]
    protected = protected_files(mixed)
    maps = {rel: mixed.label_map(rel) for rel in ("img_0.png", "img_1.png", "img_2.png")}
    statuses = {r.relpath: r.status for r in mixed.records()}
    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    progress = []
    summary = repredict(mixed, Predictor(other, "cpu"), model_id="other", batch_size=2,
                        progress=lambda done, total: progress.append((done, total)))
    mixed.save()

    assert summary.relpaths == ["img_3.png", "img_4.png", "img_5.png"] and summary.images == 3
    assert summary.model == "other" and progress[-1] == (3, 3)
    assert summary.changed_images >= 1 and 0 < summary.changed_fraction <= 1  # img_5 had no mask before
    reopened = AnnotationProject.open(mixed.images_folder)
    assert protected_files(reopened) == protected  # edit layers and the touched images' predictions, byte for byte
    for rel, expected in maps.items():
        np.testing.assert_array_equal(reopened.label_map(rel), expected)
    after = {r.relpath: r.status for r in reopened.records()}
    assert {rel: after[rel] for rel in ("img_0.png", "img_1.png", "img_2.png")} == \
        {rel: statuses[rel] for rel in ("img_0.png", "img_1.png", "img_2.png")}
    assert after["img_5.png"] is ImageStatus.PREDICTED
    expected = Predictor(other, "cpu").predict_one(load_image(reopened.image_path("img_3.png"))).label_map()
    np.testing.assert_array_equal(reopened.label_map("img_3.png"), expected)


def test_listed_images_that_are_edited_or_reviewed_are_still_skipped(mixed, tmp_path):
    protected = protected_files(mixed)
    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    summary = repredict(mixed, Predictor(other, "cpu"), ["img_0.png", "img_1.png", "img_2.png", "img_4.png"])
    mixed.save()
    assert summary.relpaths == ["img_4.png"]
    assert protected_files(mixed) == protected


def test_a_vanished_image_is_reported_and_the_rest_go_on(mixed, tmp_path):
    (mixed.images_folder / "img_3.png").unlink()
    cancel_after_first = iter([False, True])
    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    summary = repredict(mixed, Predictor(other, "cpu"), batch_size=2, cancelled=lambda: next(cancel_after_first))
    assert "does not exist" in summary.failed["img_3.png"] and summary.relpaths == ["img_4.png"]  # then cancelled
    assert mixed.record("img_3.png").status is ImageStatus.ERROR
    assert mixed.record("img_5.png").status is ImageStatus.NEW


def test_switching_the_project_to_its_refined_model(mixed, tmp_path):
    """Refine → the new model is listed in the project's models folder → the project switches to it and the
    unreviewed images are re-predicted by it, while the corrections stay as they were."""
    assert main(["refine", "--project", str(mixed.images_folder), "--out", str(tmp_path / "run"), "--steps", "2",
                 "--batch-size", "4", "--corrected-per-step", "2", "--device", "cpu", "--name", "after fixes"]) == 0
    project = AnnotationProject.open(mixed.images_folder)
    models = list_models(project.project_dir)
    assert [m.name for m in models] == ["after fixes"]
    assert models[0].provenance["corrected_images"] == 3
    assert new_model_path(project.project_dir, "after fixes").name == "after fixes-2.safetensors"

    protected = protected_files(project)
    refined = load_checkpoint(models[0].path)
    project.set_checkpoint(models[0].path)
    repredict(project, Predictor(refined, "cpu"), model_id=models[0].name)
    project.save()
    reopened = AnnotationProject.open(mixed.images_folder)
    assert reopened.checkpoint == models[0].path
    assert protected_files(reopened) == protected
    expected = Predictor(refined, "cpu").predict_one(load_image(reopened.image_path("img_4.png"))).label_map()
    np.testing.assert_array_equal(reopened.label_map("img_4.png"), expected)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["checkpoint"] == str(models[0].path)


def test_model_names_are_file_names(tmp_path):
    from mpae_core.annotation.models import check_model_name

    assert check_model_name("refined 1.safetensors") == "refined 1"
    for bad in ("", "a/b", "..", ".hidden", "x:y"):
        with pytest.raises(ValueError, match="cannot be a model name"):
            check_model_name(bad)
    assert list_models(tmp_path) == []

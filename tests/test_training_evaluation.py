"""The evaluation protocols run end to end on tiny datasets in each benchmark's real file format."""
from __future__ import annotations

import math

import pytest

from conftest import tiny_model
from test_training_data import celeba_root, cub_root, ood_root, seg_root  # noqa: F401 (fixtures)
from training.evaluation import EvalOptions, evaluate

OPTIONS = EvalOptions(batch_size=2, num_workers=0, progress=False)
CLUSTERING = {"nmi", "ari", "fg_nmi", "fg_ari"}


def _finite_percentages(metrics: dict) -> bool:
    return all(math.isfinite(v) and -100 <= v <= 100 for v in metrics.values())


@pytest.fixture(scope="module")
def model():
    return tiny_model(image_size=56).eval()


def test_cub_keypoints_and_nme(model, cub_root):  # noqa: F811
    metrics = evaluate(model, "cub", str(cub_root), OPTIONS)
    assert set(metrics) == CLUSTERING | {"nme"} and _finite_percentages({k: metrics[k] for k in CLUSTERING})
    assert metrics["nme"] >= 0


def test_celeba_keypoints_and_mafl_nme(model, celeba_root):  # noqa: F811
    metrics = evaluate(model, "celeba", str(celeba_root), OPTIONS)
    assert set(metrics) == CLUSTERING | {"nme"} and metrics["nme"] >= 0


def test_celeba_without_mafl_train_list_skips_nme(model, celeba_root):  # noqa: F811
    (celeba_root / "MAFL_train_lm.txt").unlink()
    assert set(evaluate(model, "celeba", str(celeba_root), OPTIONS)) == CLUSTERING


@pytest.mark.parametrize("name, fixture", [("partimagenet_ood", "ood_root"), ("partimagenet_seg", "seg_root")])
def test_partimagenet_pixels(model, name, fixture, request):
    metrics = evaluate(model, name, str(request.getfixturevalue(fixture)), OPTIONS)
    assert set(metrics) == CLUSTERING and _finite_percentages(metrics)


def test_unknown_dataset(model):
    with pytest.raises(ValueError, match="Unknown evaluation dataset"):
        evaluate(model, "imagenet", ".", OPTIONS)

"""The image confidence (issue 11: "every demo image shows 100 %"): the share of clearly labelled pixels, which
tells a clear image from an ambiguous one even when MPAE's unscaled logits saturate the softmax; a summary only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.records import CONFIDENCE_KEY, ImageRecord
from mpae_core.inference import PartPrediction, clear_pixel_share


def _saturated_logits(runner_up_gap: float) -> torch.Tensor:
    """K=2 logits hundreds apart, as MPAE's dot products are: background on the right half, slot 0 on the left
    half with slot 1 ``runner_up_gap`` below it there."""
    logits = torch.zeros(3, 8, 8)
    logits[2, :, 4:] = 500.0
    logits[0, :, :4] = 500.0
    logits[1, :, :4] = 500.0 - runner_up_gap
    return logits


def test_confidence_separates_a_clear_image_from_an_ambiguous_one_when_the_softmax_saturates():
    clear = PartPrediction.from_logits(_saturated_logits(300.0), (64, 64))
    ambiguous = PartPrediction.from_logits(_saturated_logits(20.0), (64, 64))  # still p > 0.999 everywhere
    for prediction in (clear, ambiguous):  # what the figure used to be: ~100 % for both
        assert prediction.confidence_map((128, 128)).mean() > 0.99
    assert clear.confidence > 0.9
    assert 0.35 < ambiguous.confidence < 0.65  # the left half is a near tie between two parts
    # a summary only: labels and probabilities are the argmax / softmax of the same logits as before
    np.testing.assert_array_equal(clear.label_map(), ambiguous.label_map())
    assert ambiguous.presence.tolist() == [True, False]


def test_clear_pixel_share_edge_cases():
    assert clear_pixel_share(torch.zeros(4, 5, 5)) == 0.0  # all channels equal: nothing is clear
    one_winner = torch.zeros(4, 5, 5)
    one_winner[1] = 3.0
    assert clear_pixel_share(one_winner, (16, 16)) == 1.0
    scaled = _saturated_logits(20.0)
    assert clear_pixel_share(scaled) == pytest.approx(clear_pixel_share(scaled / 100.0))  # scale-free


def test_the_index_stores_the_new_figure_and_drops_the_old_saturated_one(tmp_path):
    record = ImageRecord("a.jpg", has_prediction=True, confidence=0.4321)
    data = record.to_dict()
    assert data[CONFIDENCE_KEY] == 0.4321 and "confidence" not in data
    assert ImageRecord.from_dict(data).confidence == 0.4321
    # an index written before: "confidence" held the mean max-probability (~100 % everywhere); it is not read back
    assert ImageRecord.from_dict({"path": "a.jpg", "prediction": True, "confidence": 0.9991}).confidence is None

    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 24), (90, 120, 40)).save(folder / "a.png")
    project = AnnotationProject.create(folder)
    project.set_prediction("a.png", PartPrediction.from_logits(_saturated_logits(20.0), (24, 32)))
    project.close()
    index = json.loads(project.index_path.read_text())
    entry = index["images"][0]
    assert 0.35 < entry[CONFIDENCE_KEY] < 0.65
    entry["confidence"] = entry.pop(CONFIDENCE_KEY)  # as an older version wrote it
    project.index_path.write_text(json.dumps(index))
    reopened = AnnotationProject.open(folder, write=False)
    assert reopened.record("a.png").has_prediction and reopened.record("a.png").confidence is None

"""The saved weights' moving average, the learning-rate schedule, and the app's default steps."""
from __future__ import annotations

import math

import pytest
import torch

from training.refine import RefineConfig
from training.refine.averaging import WeightAverage


def test_the_average_follows_the_formula_and_becomes_the_models_weights():
    param = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([param], decay=0.9)
    expected = torch.zeros(3)
    for n, value in enumerate((1.0, 2.0, 4.0, 8.0), start=1):
        with torch.no_grad():
            param.fill_(value)
        average.update()
        decay = min(0.9, (1 + n) / (10 + n))  # warm-up: early updates are not drowned by the start weights
        expected = decay * expected + (1 - decay) * value
    torch.testing.assert_close(average.shadow[0], expected)
    assert torch.equal(param.detach(), torch.full((3,), 8.0))  # training goes on with its own weights
    average.copy_to_params()
    torch.testing.assert_close(param.detach(), expected)


def test_a_decay_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        WeightAverage([torch.nn.Parameter(torch.zeros(1))], decay=1.0)


def test_the_cosine_schedule_ends_at_zero_and_constant_stays(tmp_path):
    from refine_helpers import predicted_project
    from training.refine import Refiner, open_session

    project = predicted_project(tmp_path, count=3)
    project.mark_reviewed("img_0.png")
    project.save()
    session = open_session(project.images_folder)
    cosine = Refiner(session, tmp_path / "a", RefineConfig(schedule="cosine", lr=1e-3, disk_cache=False), device="cpu")
    assert [cosine._learning_rate(p) for p in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([1e-3, 5e-4, 0.0, 0.0])
    constant = Refiner(session, tmp_path / "b", RefineConfig(lr=1e-3, disk_cache=False), device="cpu")
    assert constant._learning_rate(0.7) == 1e-3 and not math.isnan(constant._learning_rate(1.0))
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'linear'"):
        Refiner(session, tmp_path / "c", RefineConfig(schedule="linear", disk_cache=False), device="cpu")


def test_the_apps_default_steps_are_the_commands():
    from app.refine_dialog import DEFAULT_STEPS

    assert DEFAULT_STEPS == RefineConfig().steps


def test_the_saved_model_holds_the_averaged_weights(tmp_path):
    from mpae_core.checkpoint import load_checkpoint
    from refine_helpers import predicted_project
    from training.refine import Refiner, open_session

    project = predicted_project(tmp_path, count=3)
    project.mark_reviewed("img_0.png")
    project.save()
    cfg = RefineConfig(steps=3, batch_size=2, corrected_per_step=1, lr=1e-2, disk_cache=False)
    refiner = Refiner(open_session(project.images_folder), tmp_path / "run", cfg, device="cpu")
    result = refiner.run()
    saved = load_checkpoint(result.checkpoint)
    trained = dict(saved.partformer.named_parameters())
    for (name, _), average in zip(refiner.model.partformer.named_parameters(), refiner.average.shadow[1:]):
        torch.testing.assert_close(trained[name].detach(), average)

"""The model, losses and official-checkpoint loader reproduce the reference implementation's numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fixture_path
from mpae_core.losses import constraint_losses

LOSS_KEYS = ("foreground_presence", "background_presence", "semantic", "total_variation", "entropy")


@pytest.fixture(scope="module")
def loss_fixture():
    return np.load(fixture_path("reference_losses_seed10.npz"))


def test_constraint_losses_values_and_gradients_match_reference(loss_fixture):
    d = loss_fixture
    logits = torch.tensor(d["logits"], requires_grad=True)
    descriptors = torch.tensor(d["descriptors"], requires_grad=True)
    features = torch.tensor(d["features"], requires_grad=True)
    terms = constraint_losses(logits.softmax(dim=1), descriptors, features, int(d["group_size"]))
    assert set(terms) == set(LOSS_KEYS)
    for key in LOSS_KEYS:
        np.testing.assert_allclose(terms[key].item(), float(d[key]), rtol=1e-5, atol=1e-6, err_msg=key)
    total = (
        1.0 * (terms["foreground_presence"] + terms["background_presence"])
        + 0.5 * (terms["total_variation"] + terms["entropy"])
        + 0.25 * terms["semantic"]
    )
    np.testing.assert_allclose(total.item(), float(d["weighted_total"]), rtol=1e-5, atol=1e-6)
    total.backward()
    for name, tensor in (("grad_logits", logits), ("grad_descriptors", descriptors), ("grad_features", features)):
        np.testing.assert_allclose(tensor.grad.numpy(), d[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_weighted_total_uses_reference_weights(loss_fixture):
    from mpae_core.config import MPAEConfig
    from mpae_core.losses import weighted_total

    d = loss_fixture
    terms = constraint_losses(torch.tensor(d["logits"]).softmax(1), torch.tensor(d["descriptors"]),
                              torch.tensor(d["features"]), int(d["group_size"]))
    np.testing.assert_allclose(weighted_total(terms, MPAEConfig()).item(), float(d["weighted_total"]), rtol=1e-5)


def test_official_checkpoint_inference_matches_reference(official_celeba_model):
    d = np.load(fixture_path("reference_inference_celeba_k16_seed0.npz"))
    with torch.inference_mode():
        probs = official_celeba_model.predict_probs(torch.from_numpy(d["images"]), output_size=(128, 128)).numpy()
    reference = d["probs"]
    assert probs.shape == reference.shape == (2, 17, 128, 128)
    assert np.abs(probs - reference).max() <= 1e-3
    assert (probs.argmax(1) == reference.argmax(1)).mean() >= 0.999


def test_default_output_size_is_reference_128(official_celeba_model):
    d = np.load(fixture_path("reference_inference_celeba_k16_seed0.npz"))
    with torch.inference_mode():
        probs = official_celeba_model.predict_probs(torch.from_numpy(d["images"][:1]))
    assert probs.shape == (1, 17, 128, 128)

"""One CPU training step of the full objective, with random weights asked for explicitly."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from mpae_core.model import restoration_target
from mpae_core.perceptual import resolve_perceptual_network
from mpae_core.restoration import RandomMask

TERMS = {"foreground_presence", "background_presence", "semantic", "total_variation", "entropy",
         "reconstruction_pixel", "reconstruction_perceptual", "reconstruction", "total"}


@pytest.fixture(scope="module")
def perceptual():
    return resolve_perceptual_network(allow_random=True)


def test_one_training_step_reaches_exactly_the_trainable_modules(perceptual):
    model = tiny_model().train()
    assert not model.backbone.training and not perceptual.training  # frozen nets stay in eval mode
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=5e-4)
    images = torch.randn(4, 3, 224, 224)
    out = model.training_losses(images, perceptual, generator=torch.Generator().manual_seed(0))
    assert set(out.losses) == TERMS
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert out.restored.shape == (4, 3, 128, 128) and out.probs.shape == (4, 5, 16, 16)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    out.losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 2.0)
    optimizer.step()

    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad is None for p in perceptual.parameters())
    assert {n.split(".")[0] for n, _ in model.named_parameters() if _.requires_grad} == {
        "compress", "partformer", "restoration"}
    # the restoration network's sin-cos tables are fixed buffers, never parameters
    assert {n for n, _ in model.named_buffers()} >= {"restoration.pos_embed", "restoration.decoder_pos_embed"}
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert len(changed) == len(before)


def test_reconstruction_loss_reaches_descriptors_through_fill_tokens(perceptual):
    model = tiny_model()
    images = torch.randn(2, 3, 224, 224)
    out = model.training_losses(images, perceptual, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(out.losses["reconstruction"], [model.partformer.proj.weight, model.compress.weight])
    assert all(g.abs().sum() > 0 for g in grads)


def test_masking_keeps_int_n_times_point_one_tokens():
    mask = RandomMask.sample(3, 256, 25, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert mask.keep.shape == (3, 25) and mask.masked.shape == (3, 231)
    for b in range(3):
        assert sorted(torch.cat([mask.keep[b], mask.masked[b]]).tolist()) == list(range(256))
        order = torch.cat([mask.keep[b], mask.masked[b]])[mask.restore[b]]
        assert order.tolist() == list(range(256))
    pixels = mask.masked_pixels(16, 8)
    assert pixels.shape == (3, 1, 128, 128) and pixels.sum().item() == 3 * 231 * 64


def test_visible_patches_do_not_see_fill_tokens_of_other_positions(perceptual):
    """Changing the fill at a visible position changes nothing: only masked positions take Σ P·D."""
    model = tiny_model()
    images = torch.randn(1, 3, 224, 224)
    mask = RandomMask.sample(1, 256, 25, device=torch.device("cpu"), generator=torch.Generator().manual_seed(3))
    fill = torch.randn(1, 256, 256)
    base = model.restoration(images, fill, mask)
    altered = fill.clone()
    altered[0, mask.keep[0]] += 10.0
    assert torch.equal(model.restoration(images, altered, mask), base)
    altered[0, mask.masked[0, :1]] += 10.0
    assert not torch.equal(model.restoration(images, altered, mask), base)


@pytest.mark.parametrize("variant", [{"reconstruction_loss": "paper"}, {"semantic_loss": "paper"},
                                     {"entropy_loss": "paper"}])
def test_paper_variants_train(variant, perceptual):
    model = tiny_model(**variant)
    out = model.training_losses(torch.randn(2, 3, 224, 224), perceptual, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.losses["total"])
    out.losses["total"].backward()


def test_restoration_target_is_bilinear_to_grid_times_eight():
    cfg = tiny_model(image_size=448).cfg
    assert restoration_target(torch.randn(1, 3, 448, 448), cfg).shape == (1, 3, 256, 256)


def test_predict_probs_sums_to_one_with_background_last():
    model = tiny_model().eval()
    with torch.inference_mode():
        probs = model.predict_probs(torch.randn(2, 3, 224, 224), output_size=(40, 30))
    assert probs.shape == (2, 5, 40, 30)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 40, 30))


def test_partformer_last_block_shortcut_is_exact():
    """The PartFormer evaluates its last block for the query tokens only; that must equal the full block."""
    partformer = tiny_model().partformer
    images = torch.randn(2, 3, 224, 224)
    x = partformer.patch_embed(images).flatten(2).transpose(1, 2)
    x = torch.cat([partformer.queries.expand(2, -1, -1), x], dim=1) + partformer.pos_embed
    full = partformer.blocks(partformer.norm_pre(x))[:, : partformer.num_slots]
    expected = partformer.proj(partformer.norm(full))
    torch.testing.assert_close(partformer(images), expected, rtol=1e-5, atol=1e-5)

from __future__ import annotations

import pytest

from mpae_core.config import PRESETS, MPAEConfig, preset_config


def test_defaults_are_the_reference():
    cfg = MPAEConfig()
    assert (cfg.descriptor_dim, cfg.partformer_depth, cfg.partformer_heads) == (256, 6, 8)
    assert (cfg.restoration_encoder_depth, cfg.restoration_decoder_depth, cfg.restoration_output_patch) == (2, 2, 8)
    assert cfg.mask_ratio == 0.9
    assert (cfg.presence_weight, cfg.semantic_weight, cfg.distribution_weight) == (1.0, 0.25, 0.5)
    assert (cfg.arcface_scale, cfg.arcface_margin, cfg.l1_weight) == (20.0, 0.5, 0.1)
    assert cfg.perceptual_weights == (5 / 32, 5 / 16, 5 / 8, 5 / 4, 5.0)
    assert cfg.backbone == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert (cfg.reconstruction_loss, cfg.semantic_loss, cfg.entropy_loss, cfg.inference_resolution) == (
        "reference", "reference", "reference", "reference")


@pytest.mark.parametrize(
    "name, size, k, group, grid, keep, restored",
    [
        ("celeba", 224, 16, 8, 16, 25, 128),
        ("cub", 448, 16, 8, 32, 102, 256),
        ("partimagenet_ood", 224, 50, 64, 16, 25, 128),
        ("partimagenet_seg", 224, 50, 64, 16, 25, 128),
    ],
)
def test_presets_follow_reference_table(name, size, k, group, grid, keep, restored):
    cfg = PRESETS[name]
    assert (cfg.image_size, cfg.num_parts, cfg.group_size) == (size, k, group)
    assert (cfg.grid_size, cfg.num_visible, cfg.restoration_size, cfg.num_slots) == (grid, keep, restored, k + 1)
    assert cfg.default_output_size == (128, 128)


def test_json_round_trip_keeps_every_field():
    cfg = preset_config("cub", num_parts=8, semantic_loss="paper", backbone_kwargs={"depth": 3})
    again = MPAEConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_paper_full_resolution_inference():
    assert MPAEConfig(image_size=448, inference_resolution="full").default_output_size == (448, 448)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"image_size": 225}, "multiple of the patch size"),
        ({"num_parts": 0}, "num_parts"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"semantic_loss": "eq7"}, "semantic_loss"),
    ],
)
def test_invalid_config_is_one_clear_error(changes, words):
    with pytest.raises(ValueError, match=words):
        MPAEConfig(**changes)


def test_unknown_keys_and_presets_are_refused():
    with pytest.raises(ValueError, match="Unknown MPAE configuration keys: num_part"):
        MPAEConfig.from_dict({"num_part": 3})
    with pytest.raises(ValueError, match="Unknown preset"):
        preset_config("imagenet")

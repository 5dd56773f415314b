"""Reading the MPAE authors' released checkpoints (``model_best.pth`` / ``final_state.pth``).

They are a plain state_dict of the reference ``MPAE`` module (layout: shared/fixtures/official_manifest.json):
``backbone1.*`` DINOv2 in torch.hub naming, ``Transformer.*`` the PartFormer, ``Decoder.*`` the restoration network,
``compress_layer.weight`` and an unused ``ArcMarginProduct.weight``. K and the input size are read off the shapes;
the mini-group size is not stored, so it comes from the benchmark preset with the same size and K.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from .config import MPAEConfig, PRESETS
from .errors import CheckpointError

REQUIRED_KEYS = ("Transformer.class_embedding", "Transformer.pos_embed", "compress_layer.weight")
UNUSED_KEYS = ("ArcMarginProduct.weight", "Decoder.cls_token", "Decoder.mask_token")

_PARTFORMER_RENAMES = (
    (r"^Transformer\.conv1\.", "partformer.patch_embed."),
    (r"^Transformer\.class_embedding$", "partformer.queries"),
    (r"^Transformer\.pos_embed$", "partformer.pos_embed"),
    (r"^Transformer\.ln_pre\.", "partformer.norm_pre."),
    (r"^Transformer\.ln_post\.", "partformer.norm."),
    (r"^Transformer\.proj\.", "partformer.proj."),
    (r"^Transformer\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", r"partformer.blocks.\1.attn.qkv.\2"),
    (r"^Transformer\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"partformer.blocks.\1.attn.proj."),
    (r"^Transformer\.transformer\.resblocks\.(\d+)\.ln_1\.", r"partformer.blocks.\1.norm1."),
    (r"^Transformer\.transformer\.resblocks\.(\d+)\.ln_2\.", r"partformer.blocks.\1.norm2."),
    (r"^Transformer\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"partformer.blocks.\1.mlp.fc1."),
    (r"^Transformer\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"partformer.blocks.\1.mlp.fc2."),
    (r"^Decoder\.", "restoration."),
    (r"^compress_layer\.", "compress."),
)


def is_official_state_dict(state: Mapping[str, torch.Tensor]) -> bool:
    return all(k in state for k in REQUIRED_KEYS)


def strip_dataparallel_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys saved from a ``DataParallel``/DDP wrapper start with ``module.``; the released files do not."""
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def official_config(state: Mapping[str, torch.Tensor], source: str, backbone: str | None = None) -> MPAEConfig:
    """The MPAEConfig that the released weights were trained with, inferred from tensor shapes."""
    num_slots = state["Transformer.class_embedding"].shape[1]
    num_patches = state["Transformer.pos_embed"].shape[1] - num_slots
    grid = int(round(num_patches**0.5))
    if grid * grid != num_patches or num_slots < 2:
        raise CheckpointError(
            f"Cannot load '{source}': its PartFormer tables have unexpected shapes "
            f"({tuple(state['Transformer.pos_embed'].shape)}); it is not an MPAE checkpoint."
        )
    patch = state["Transformer.conv1.weight"].shape[-1] if "Transformer.conv1.weight" in state else 14
    image_size, num_parts = grid * patch, num_slots - 1
    base = next(
        (p for p in PRESETS.values() if p.image_size == image_size and p.num_parts == num_parts),
        MPAEConfig(),
    )
    changes = dict(image_size=image_size, num_parts=num_parts, patch_size=patch,
                   descriptor_dim=state["Transformer.class_embedding"].shape[2])
    if backbone:
        changes["backbone"] = backbone
    return base.replace(**changes)


def convert_official_state_dict(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split an official state_dict into (our MPAE keys without the backbone, the backbone's torch.hub keys)."""
    ours: dict[str, torch.Tensor] = {}
    backbone: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone1."):
            backbone[key[len("backbone1."):]] = value
            continue
        if key in UNUSED_KEYS:
            continue
        for pattern, replacement in _PARTFORMER_RENAMES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                ours[new_key] = value
                break
        else:
            ours[key] = value  # left as is: load_state_dict will name it as unexpected
    return ours, backbone

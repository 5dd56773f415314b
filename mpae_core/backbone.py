"""The frozen DINOv2 backbone (timm) and where its weights come from.

Weights are resolved in a fixed order (design.md): weights handed in by the caller (e.g. embedded in a checkpoint)
→ an explicit local file (argument or ``MPAE_BACKBONE_WEIGHTS``) → timm's weights in the local Hugging Face cache
(read without any network call) → a download into that cache, tried only after the hub answered a short probe
(``HF_HUB_OFFLINE=1`` skips it) → a clear error saying what to download (:mod:`.hub_weights`). Random weights are
used only when the caller asks for them (tests, the demo), never as a silent fallback.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from .errors import BackboneWeightsError, MissingWeights
from .hub_weights import HUB, hub_repository, hub_weights_file
from .weights_io import read_state_dict

logger = logging.getLogger(__name__)

BACKBONE_WEIGHTS_ENV = "MPAE_BACKBONE_WEIGHTS"
OFFICIAL_BACKBONE_PREFIX = "backbone1."


class FrozenBackbone(nn.Module):
    """A timm ViT that returns its final-norm patch tokens as a [B, D, h, w] grid; never trained."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.embed_dim = vit.embed_dim
        self.patch_size = vit.patch_embed.patch_size[0]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenBackbone":
        # The reference keeps the backbone in eval mode during training (reference §1.2).
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(images)[:, self.num_prefix_tokens :]
        b, n, d = tokens.shape
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(b, d, h, w)


def create_backbone_architecture(name: str, image_size: int, *, on_meta: bool = False, **kwargs: Any) -> FrozenBackbone:
    """The backbone with random weights, or without storage (``on_meta``) when real weights will be assigned."""
    try:
        with torch.device("meta") if on_meta else contextlib.nullcontext():
            vit = timm.create_model(name, pretrained=False, num_classes=0, img_size=image_size, **kwargs)
    except RuntimeError as exc:  # timm raises RuntimeError for an unknown model name
        raise ValueError(f"Unknown backbone {name!r}: {exc}") from None
    if not isinstance(vit, VisionTransformer):
        raise ValueError(f"Backbone {name!r} is not a timm VisionTransformer with a patch grid.")
    return FrozenBackbone(vit)


def load_backbone_state(backbone: FrozenBackbone, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load weights in timm or torch.hub (DINOv2) naming, resampling the position table to our grid.

    Tensors are assigned, not copied, so a backbone built on the meta device costs no random initialisation.
    """
    state = dict(state_dict)
    if any(k.startswith(OFFICIAL_BACKBONE_PREFIX) for k in state):  # a whole official MPAE checkpoint
        state = {k[len(OFFICIAL_BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(OFFICIAL_BACKBONE_PREFIX)}
    if any(k.startswith("vit.") for k in state):  # our own embedded layout
        state = {k[len("vit.") :]: v for k, v in state.items() if k.startswith("vit.")}
    converted = checkpoint_filter_fn(state, backbone.vit)
    missing, unexpected = backbone.vit.load_state_dict(converted, strict=False, assign=True)
    still_meta = [n for n, t in [*backbone.vit.named_parameters(), *backbone.vit.named_buffers()] if t.is_meta]
    if missing or unexpected or still_meta:
        raise BackboneWeightsError(
            f"The backbone weights in {source} do not fit {type(backbone.vit).__name__} "
            f"(missing: {', '.join((missing or still_meta)[:5]) or 'none'}; "
            f"unexpected: {', '.join(unexpected[:5]) or 'none'}); "
            "check that they belong to the backbone named in the model config."
        )
    backbone.requires_grad_(False)


def missing_backbone(name: str) -> MissingWeights:
    """What to tell a user whose machine lacks backbone ``name``'s weights."""
    return MissingWeights("DINOv2 backbone", name, f"{HUB}/{hub_repository(name) or 'timm/' + name}",
                          "--backbone-weights", BACKBONE_WEIGHTS_ENV)


def _load_file(backbone: FrozenBackbone, name: str, path: Path) -> FrozenBackbone:
    state = read_state_dict(path, what="backbone weights", error=BackboneWeightsError)
    load_backbone_state(backbone, state, f"'{path}'")
    logger.info("Backbone %s: weights from %s", name, path)
    return backbone


def resolve_backbone(
    name: str,
    image_size: int,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    weights_path: str | os.PathLike | None = None,
    allow_random: bool = False,
    **kwargs: Any,
) -> FrozenBackbone:
    """Build the frozen backbone with weights from the first source that has them (see module docstring)."""
    if state_dict is not None:
        backbone = create_backbone_architecture(name, image_size, on_meta=True, **kwargs)
        load_backbone_state(backbone, state_dict, "the checkpoint")
        return backbone
    path = weights_path or os.environ.get(BACKBONE_WEIGHTS_ENV) or None
    if not path and allow_random:
        logger.warning("Backbone %s: RANDOM weights (asked for explicitly); predictions are meaningless.", name)
        return create_backbone_architecture(name, image_size, **kwargs)
    backbone = create_backbone_architecture(name, image_size, on_meta=True, **kwargs)  # an unknown name fails here
    return _load_file(backbone, name, Path(path) if path else hub_weights_file(name, missing_backbone(name)))

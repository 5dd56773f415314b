"""Frozen VGG-19 feature slices for the perceptual part of the restoration loss (reference §1.6).

The five slices end at relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (torchvision/timm ``features`` indices
[0:2], [2:7], [7:12], [12:21], [21:30]). Only the convolutional trunk up to relu5_1 is built, so the 100 M-parameter
classifier is never allocated. Weights resolve like the backbone's: explicit file / ``MPAE_VGG_WEIGHTS`` → timm's
``vgg19.tv_in1k`` (local Hugging Face cache, else a download after a short probe) → a clear error; random only
when asked for.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from timm.models.vgg import VGG, cfgs
from torch import nn

from .errors import BackboneWeightsError, MissingWeights
from .hub_weights import HUB, hub_weights_file
from .weights_io import read_state_dict

logger = logging.getLogger(__name__)

VGG_WEIGHTS_ENV = "MPAE_VGG_WEIGHTS"
VGG_PRETRAINED_TAG = "vgg19.tv_in1k"
SLICE_BOUNDS = (0, 2, 7, 12, 21, 30)
MISSING_VGG = MissingWeights("VGG-19", VGG_PRETRAINED_TAG, f"{HUB}/timm/{VGG_PRETRAINED_TAG}", "--vgg-weights",
                             VGG_WEIGHTS_ENV)


class PerceptualNetwork(nn.Module):
    """Returns the five relu_k_1 feature maps of a batch of ImageNet-normalised images; never trained."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.slices = nn.ModuleList(
            features[a:b] for a, b in zip(SLICE_BOUNDS[:-1], SLICE_BOUNDS[1:])
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualNetwork":
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = images
        for block in self.slices:
            x = block(x)
            outputs.append(x)
        return outputs


def _vgg19_trunk(device: torch.device | str = "cpu") -> nn.Sequential:
    """The VGG-19 convolutional trunk up to relu5_1, built without the classifier."""
    with torch.device("meta"):
        model = VGG(cfgs["vgg19"], num_classes=0)
    trunk = model.features[: SLICE_BOUNDS[-1]].to_empty(device=device)
    for m in trunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return trunk


def _load_trunk(trunk: nn.Sequential, state: dict[str, torch.Tensor], source: str) -> None:
    wanted = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    own = trunk.state_dict()
    missing = [k for k in own if k not in wanted]
    if missing:
        raise BackboneWeightsError(
            f"The VGG-19 weights in {source} lack {', '.join(missing[:4])}; use torchvision's or timm's vgg19 weights."
        )
    trunk.load_state_dict({k: wanted[k] for k in own})


def resolve_perceptual_network(
    weights_path: str | os.PathLike | None = None, *, allow_random: bool = False
) -> PerceptualNetwork:
    """The frozen VGG-19 perceptual network with weights from the first source that has them."""
    trunk = _vgg19_trunk()
    path = weights_path or os.environ.get(VGG_WEIGHTS_ENV) or None
    if not path and allow_random:
        logger.warning("VGG-19 perceptual network: RANDOM weights (asked for explicitly).")
        return PerceptualNetwork(trunk)
    path = Path(path) if path else hub_weights_file(VGG_PRETRAINED_TAG, MISSING_VGG)
    _load_trunk(trunk, read_state_dict(path, what="VGG-19 weights", error=BackboneWeightsError), f"'{path}'")
    return PerceptualNetwork(trunk)

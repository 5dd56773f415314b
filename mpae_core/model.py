"""The MPAE model: frozen backbone → compressed features F, PartFormer → descriptors D, P = softmax(D·F).

Training adds the restoration network (masked positions filled with Σ_q P_q·D_q) and the losses; inference only
needs the backbone, the compress conv and the PartFormer (docs/mpae-reference.md §1, §3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FrozenBackbone
from .config import MPAEConfig
from .losses import constraint_losses, reconstruction_loss, weighted_total
from .palette import default_part_color, default_part_name
from .partformer import PartFormer
from .restoration import RandomMask, RestorationNetwork


@dataclass
class ModelInfo:
    """What a checkpoint says about its parts and its origin (kept with the weights, not per image)."""

    part_names: list[str]
    part_colors: list[tuple[int, int, int]]
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # file the model was loaded from, if any
    source_format: str = "new"  # "mpae-safetensors", "official-pth" or "new"

    @classmethod
    def default(cls, num_parts: int) -> "ModelInfo":
        return cls(
            part_names=[default_part_name(k) for k in range(num_parts)],
            part_colors=[default_part_color(k) for k in range(num_parts)],
        )


@dataclass
class TrainingOutput:
    """Every loss term by name (``total`` included), plus what is worth logging or showing."""

    losses: dict[str, torch.Tensor]
    probs: torch.Tensor  # [B, Q, h, w]
    restored: torch.Tensor | None  # [B, 3, r, r], ImageNet-normalised; None without the reconstruction term


def restoration_target(images: torch.Tensor, cfg: MPAEConfig) -> torch.Tensor:
    """The reference's ``Small_input``: the normalised input, bilinearly resized (no antialias) to r×r."""
    size = cfg.restoration_size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def upsample_logits(logits: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling in fp32.

    Bilinear interpolation is linear, so upsampling the Q logits equals the reference's upsampling of the
    256-channel features followed by the dot product, at a fraction of the cost.
    """
    logits = logits.float()
    if tuple(logits.shape[-2:]) == tuple(output_size):
        return logits
    return F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False)


class MPAE(nn.Module):
    def __init__(self, cfg: MPAEConfig, backbone: FrozenBackbone) -> None:
        super().__init__()
        if backbone.patch_size != cfg.patch_size:
            raise ValueError(
                f"Backbone {cfg.backbone!r} has patch size {backbone.patch_size}, the config says {cfg.patch_size}."
            )
        self.cfg = cfg
        self.backbone = backbone
        self.compress = nn.Conv2d(backbone.embed_dim, cfg.descriptor_dim, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.compress.weight)
        self.partformer = PartFormer(cfg)
        self.restoration = RestorationNetwork(cfg)
        self.info = ModelInfo.default(cfg.num_parts)
        self._side_streams: dict[torch.device, torch.cuda.Stream] = {}

    # ------------------------------------------------------------------ shared path
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """F = compress(backbone patch tokens): [B, C, h, w]. The backbone is frozen, so it keeps no graph."""
        with torch.no_grad():
            tokens = self.backbone(images)
        return self.compress_tokens(tokens)

    def compress_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """F from backbone tokens [B, D, h, w] in fp32: what ``features`` does after the backbone, so a caller that
        caches the frozen backbone's tokens (refinement) computes the same F."""
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            return self.compress(tokens.float())

    @staticmethod
    def match(descriptors: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Eq. 1's logits D·F: [B, Q, C] × [B, C, h, w] → [B, Q, h, w], in fp32."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            return torch.einsum("bqc,bchw->bqhw", descriptors, features)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ImageNet-normalised [B, 3, S, S] → (logits [B, Q, h, w], descriptors D [B, Q, C], features F)."""
        if images.is_cuda and not torch.is_grad_enabled():
            descriptors, features = self._descriptors_and_features_concurrently(images)
        else:
            features = self.features(images)
            descriptors = self.partformer(images).float()
        return self.match(descriptors, features), descriptors, features

    def _descriptors_and_features_concurrently(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference on CUDA: the PartFormer reads pixels, not backbone features, so it runs on a side stream
        beside the backbone. At small batches neither fills the GPU and most of the PartFormer's time is hidden
        (H100, batch 1: it alone costs 41 % of the backbone's time, the whole forward 14 % more than the backbone).

        No ``record_stream`` is needed: the side stream waits for the main stream before starting and the main
        stream waits for it before returning, so no block is reused while the other stream still reads it.
        """
        main = torch.cuda.current_stream(images.device)
        side = self._side_streams.get(images.device)
        if side is None:
            side = self._side_streams[images.device] = torch.cuda.Stream(images.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            descriptors = self.partformer(images).float()
        features = self.features(images)
        main.wait_stream(side)
        return descriptors, features

    # ------------------------------------------------------------------ inference
    def part_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Q logits at feature resolution, background last (fp32)."""
        return self.forward(images)[0]

    def predict_probs(self, images: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """[B, Q, H, W] part probabilities, background LAST, exactly as the reference's inference.

        ``output_size`` defaults to the config's (128×128 for the reference, the input size for the paper).
        """
        size = output_size or self.cfg.default_output_size
        return upsample_logits(self.part_logits(images), size).softmax(dim=1)

    # ------------------------------------------------------------------ training
    def training_losses(
        self,
        images: torch.Tensor,
        perceptual: nn.Module,
        targets: torch.Tensor | None = None,
        *,
        mask: RandomMask | None = None,
        generator: torch.Generator | None = None,
    ) -> TrainingOutput:
        """The full MPAE objective for one batch; ``losses['total']`` is what the reference back-propagates."""
        logits, descriptors, features = self.forward(images)
        return self.losses_from_outputs(images, logits, descriptors, features, perceptual, targets, mask=mask,
                                        generator=generator)

    def losses_from_outputs(
        self,
        images: torch.Tensor,
        logits: torch.Tensor,
        descriptors: torch.Tensor,
        features: torch.Tensor,
        perceptual: nn.Module | None,
        targets: torch.Tensor | None = None,
        *,
        mask: RandomMask | None = None,
        generator: torch.Generator | None = None,
    ) -> TrainingOutput:
        """The objective from a forward pass's outputs. ``perceptual=None`` leaves out the restoration network and
        the reconstruction term (the five constraint terms only; ``restored`` is then None): refinement from an
        inference-only checkpoint, which has no restoration network."""
        cfg = self.cfg
        probs = logits.softmax(dim=1)
        losses = constraint_losses(
            probs, descriptors, features, cfg.group_size,
            arcface_scale=cfg.arcface_scale, arcface_margin=cfg.arcface_margin,
            semantic_variant=cfg.semantic_loss, entropy_variant=cfg.entropy_loss,
        )
        if perceptual is None:
            losses["total"] = weighted_total(losses, cfg)
            return TrainingOutput(losses=losses, probs=probs.detach(), restored=None)
        b, c = descriptors.shape[0], descriptors.shape[2]
        fill = torch.einsum("bqhw,bqc->bhwc", probs, descriptors).reshape(b, -1, c)  # eq. 2, background included
        if mask is None:
            mask = self.restoration.sample_mask(b, images.device, generator)
        restored = self.restoration(images, fill, mask)
        if targets is None:
            targets = restoration_target(images, cfg)
        masked = mask.masked_pixels(cfg.grid_size, cfg.restoration_output_patch)
        losses.update(reconstruction_loss(restored, targets, perceptual, cfg, masked))
        losses["total"] = weighted_total(losses, cfg)
        return TrainingOutput(losses=losses, probs=probs.detach(), restored=restored.detach())

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

"""MPAE training losses, exactly as the reference computes them (docs/mpae-reference.md §1.6-1.8).

All constraint terms work on the similarity map P = softmax(D·F) at feature resolution, background LAST. They are
computed in fp32 even under autocast: the ArcFace term exponentiates s·cos with s = 20 (e^20 overflows fp16).
Paper variants (reference §6) are selected by the config; the reference behaviour is the default.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import MPAEConfig

PRESENCE_THRESHOLD = 1e-3  # a part is "present" in an image when Σ_ij P > 1e-3 (reference §1.7)


def _pooled_maps(probs: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 average pooling without padding, applied before every presence max (reference §6.5)."""
    return F.avg_pool2d(probs, kernel_size=3, stride=1)


def foreground_presence_loss(fg_probs: torch.Tensor, group_size: int) -> torch.Tensor:
    """L_f: every part appears at least once per mini-group, every image holds at least one part.

    ``fg_probs`` is P[:, :K]. The batch is cut into consecutive groups of ``group_size`` samples (the last one may be
    smaller); per group: (1 − mean_k max_g A) + (1 − mean_g max_k A), with A the pooled per-map maximum.
    """
    peaks = _pooled_maps(fg_probs).amax(dim=(2, 3))  # [B, K]
    terms = [
        (1 - group.amax(dim=0).mean()) + (1 - group.amax(dim=1).mean()) for group in torch.split(peaks, group_size)
    ]
    return torch.stack(terms).mean()


def _centre_distance(height: int, width: int, device: torch.device) -> torch.Tensor:
    """d ∈ [0, 1]: squared distance to the map centre on a [−1, 1] grid, normalised to 1 at the corners."""
    ys = torch.linspace(-1.0, 1.0, height, device=device) if height > 1 else torch.zeros(1, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device) if width > 1 else torch.zeros(1, device=device)
    dist = ys[:, None] ** 2 + xs[None, :] ** 2
    return dist / dist.max().clamp_min(1e-12)


def background_presence_loss(probs: torch.Tensor) -> torch.Tensor:
    """L_b: the background must reach the image border: BCE(max_ij d·P_bg, 1) on the pooled map (PDiscoFormer)."""
    pooled_bg = _pooled_maps(probs[:, -1:])
    distance = _centre_distance(pooled_bg.shape[-2], pooled_bg.shape[-1], probs.device)
    peak = (pooled_bg * distance).amax(dim=(1, 2, 3))
    return F.binary_cross_entropy(peak, torch.ones_like(peak))


def region_means(probs: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """F̄[b, q] = mean_ij P[b, q, i, j]·F[b, :, i, j] → [B, Q, C], without materialising P·F."""
    h, w = probs.shape[-2:]
    return torch.einsum("bqhw,bchw->bqc", probs, features) / (h * w)


def _arcface_logits(means: torch.Tensor, descriptors: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """s·cos(F̄_t, D_k) for every region t and descriptor k, with the additive angular margin on t = k."""
    cos = torch.einsum("btc,bkc->btk", F.normalize(means, dim=-1), F.normalize(descriptors, dim=-1))
    sin = torch.sqrt((1.0 - cos**2).clamp(0, 1))
    phi = cos * math.cos(margin) - sin * math.sin(margin)
    # Past θ + m > π, cos(θ + m) stops decreasing; the reference falls back to cos θ − m·sin(π − m).
    phi = torch.where(cos > math.cos(math.pi - margin), phi, cos - math.sin(math.pi - margin) * margin)
    eye = torch.eye(cos.shape[-1], dtype=torch.bool, device=cos.device)
    return torch.where(eye, phi, cos) * scale


def semantic_loss(
    fg_probs: torch.Tensor,
    fg_descriptors: torch.Tensor,
    fg_means: torch.Tensor,
    *,
    scale: float = 20.0,
    margin: float = 0.5,
    variant: str = "reference",
) -> torch.Tensor:
    """L_s (ArcFace): region t's mean feature must match descriptor t and no other.

    Reference: softmax over descriptors k for each region t; the presence flag M_t (from a detached P) multiplies
    the per-region loss, and the mean runs over all B·K entries. Paper (eq. 7 as written): softmax over regions t
    for each descriptor k, absent regions left out of the denominator, averaged over present parts with 1/K.
    """
    present = fg_probs.detach().sum(dim=(2, 3)) > PRESENCE_THRESHOLD  # [B, K]
    logits = _arcface_logits(fg_means, fg_descriptors, scale, margin)  # [B, t, k]
    if variant == "reference":
        per_region = -torch.diagonal(F.log_softmax(logits, dim=-1), dim1=1, dim2=2)
        return (per_region * present).mean()
    # Absent regions leave the denominator; a finite fill (|logits| ≤ s) keeps all-absent rows free of NaN.
    by_descriptor = logits.transpose(1, 2).masked_fill(~present[:, None, :], -1e4)  # [B, k, t]
    log_probs = torch.diagonal(F.log_softmax(by_descriptor, dim=-1), dim1=1, dim2=2)
    return -(torch.where(present, log_probs, torch.zeros_like(log_probs))).sum(dim=1).div(present.shape[1]).mean()


def total_variation_loss(probs: torch.Tensor) -> torch.Tensor:
    """L_v: anisotropic L1 spatial gradient summed over all Q maps, divided by B·h·w.

    The reference caches B from the first batch; we use each batch's own size, which is the same except on an
    epoch's smaller last batch.
    """
    b, _, h, w = probs.shape
    vertical = (probs[:, :, 1:, :] - probs[:, :, :-1, :]).abs().sum()
    horizontal = (probs[:, :, :, 1:] - probs[:, :, :, :-1]).abs().sum()
    return (vertical + horizontal) / (b * h * w)


def entropy_loss(probs: torch.Tensor, variant: str = "reference") -> torch.Tensor:
    """L_e: per-pixel entropy over the Q slots.

    Reference: mean over B·h·w (as torch's Categorical computes it, probabilities clamped to [eps, 1 − eps]).
    Paper (eq. 11): Σ_ij of the per-pixel entropy divided by K + 1, averaged over the batch.
    """
    eps = torch.finfo(probs.dtype).eps
    p = probs / probs.sum(dim=1, keepdim=True)
    per_pixel = -(p * torch.log(p.clamp(eps, 1 - eps))).sum(dim=1)  # [B, h, w]
    if variant == "reference":
        return per_pixel.mean()
    return per_pixel.sum(dim=(1, 2)).mean() / probs.shape[1]


def constraint_losses(
    probs: torch.Tensor,
    descriptors: torch.Tensor,
    features: torch.Tensor,
    group_size: int,
    *,
    arcface_scale: float = 20.0,
    arcface_margin: float = 0.5,
    semantic_variant: str = "reference",
    entropy_variant: str = "reference",
) -> dict[str, torch.Tensor]:
    """The five constraint terms on P [B, Q, h, w], D [B, Q, C] and F [B, C, h, w] (background last).

    Returns ``foreground_presence``, ``background_presence``, ``semantic``, ``total_variation`` and ``entropy``,
    each a scalar in fp32.
    """
    with torch.autocast(device_type=probs.device.type, enabled=False):
        probs, descriptors, features = probs.float(), descriptors.float(), features.float()
        k = probs.shape[1] - 1
        means = region_means(probs[:, :k], features)
        return {
            "foreground_presence": foreground_presence_loss(probs[:, :k], group_size),
            "background_presence": background_presence_loss(probs),
            "semantic": semantic_loss(
                probs[:, :k], descriptors[:, :k], means,
                scale=arcface_scale, margin=arcface_margin, variant=semantic_variant,
            ),
            "total_variation": total_variation_loss(probs),
            "entropy": entropy_loss(probs, entropy_variant),
        }


def reconstruction_loss(
    restored: torch.Tensor,
    target: torch.Tensor,
    perceptual: torch.nn.Module,
    cfg: MPAEConfig,
    masked_pixels: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """L_r and its parts: pixel L1 plus VGG relu_k_1 feature L1s.

    Reference: 0.1·mean|R − T| + Σ_l w_l·mean|Φ_l(R) − Φ_l(T)| over the whole image. Paper (eq. 3, masked patches
    only): ½·L1 over masked pixels + ½·Σ_l w_l·L1 of the features of R with its visible patches replaced by T, so
    only masked content can differ. The target's features are computed without a graph.
    """
    with torch.autocast(device_type=restored.device.type, enabled=False):
        restored, target = restored.float(), target.float()
        if cfg.reconstruction_loss == "paper":
            if masked_pixels is None:
                raise ValueError("The paper's reconstruction loss needs the mask of the restored patches.")
            masked = masked_pixels.expand_as(restored)
            pixel = ((restored - target).abs() * masked).sum() / masked.sum().clamp_min(1.0)
            restored = restored * masked + target * (1 - masked)
            pixel_weight, feature_scale = 0.5, 0.5
        else:
            pixel = (restored - target).abs().mean()
            pixel_weight, feature_scale = cfg.l1_weight, 1.0
        with torch.no_grad():
            target_features = perceptual(target)
        restored_features = perceptual(restored)
        perceptual_term = sum(
            w * (a - b).abs().mean() for w, a, b in zip(cfg.perceptual_weights, restored_features, target_features)
        )
        pixel_term = pixel_weight * pixel
        feature_term = feature_scale * perceptual_term
        return {"reconstruction_pixel": pixel_term, "reconstruction_perceptual": feature_term,
                "reconstruction": pixel_term + feature_term}


def weighted_total(terms: dict[str, torch.Tensor], cfg: MPAEConfig) -> torch.Tensor:
    """L = L_r + λp·(L_f + L_b) + λd·(L_v + L_e) + λs·L_s (reference §1.8)."""
    total = (
        cfg.presence_weight * (terms["foreground_presence"] + terms["background_presence"])
        + cfg.distribution_weight * (terms["total_variation"] + terms["entropy"])
        + cfg.semantic_weight * terms["semantic"]
    )
    if "reconstruction" in terms:
        total = total + terms["reconstruction"]
    return total

"""The refinement objective: the MPAE losses on every image of the batch plus a supervised term on corrected pixels.

Supervised term: cross-entropy on log-probabilities, where a pixel's target is a *group* of slots (a merged label
is the sum of its members' probabilities, background the background channel; see ``targets``):
``−log Σ_{q ∈ group} softmax(logits)_q``, averaged over every target pixel of the batch.

Resolution: the image, not the feature grid. The logits (h×w, 8×8 to 32×32) are bilinearly upsampled to the model
input's S×S and the loss is taken there, because that is exactly how the label maps people see and correct are
made (``PartPrediction.label_map``: argmax of the bilinearly upsampled logits). On the grid a patch that straddles
a boundary would need one made-up label for pixels of two parts, and parts thinner than a patch (legs, eyes, the
strokes a person paints along a boundary) would vanish from the target; at S×S every corrected pixel counts as the
person painted it and the gradient reaches the grid through the same interpolation the app uses. The cost is
Q·S² values per corrected image, small next to the PartFormer.

Averaging: by default over *labels* (each target group present in the batch contributes its mean), so a part that
covers 2 % of the pixels weighs as much as the background covering 80 %; ``--unbalanced`` averages over pixels.

Weight: ``DEFAULT_SUPERVISED_WEIGHT`` multiplies the supervised term next to the MPAE total (whose own weights are
the model config's λs); override it with ``--supervised-weight``.
"""
from __future__ import annotations

import torch
from torch import nn

from mpae_core.model import MPAE, TrainingOutput, upsample_logits

from .targets import NO_TARGET, SlotGroups

#: Weight of the supervised term next to the MPAE total (chosen with benchmarks/bench_refine.py).
DEFAULT_SUPERVISED_WEIGHT = 1.0


def group_log_likelihood(log_probs: torch.Tensor, targets: torch.Tensor, groups: SlotGroups) -> torch.Tensor:
    """[B, H, W] log Σ_{q ∈ target group} p_q (0 where there is no target), from [B, Q, H, W] log-probabilities."""
    lut = groups.channel_lut().to(log_probs.device)
    index = lut[targets.clamp_min(0).long()]
    picked = log_probs.gather(1, index.unsqueeze(1)).squeeze(1)
    for group, channels in groups.merged():  # only merged labels need the log-sum over their members
        inside = targets == group
        if bool(inside.any()):
            picked = torch.where(inside, torch.logsumexp(log_probs[:, list(channels)], dim=1), picked)
    return torch.where(targets != NO_TARGET, picked, torch.zeros_like(picked))


def supervised_loss(logits: torch.Tensor, targets: torch.Tensor, groups: SlotGroups,
                    balanced: bool = False) -> torch.Tensor:
    """Mean −log p(target group) over the target pixels of [B, Q, h, w] logits and [B, S, S] targets (0 if none).

    ``balanced`` averages each target group's mean instead, so a part covering 2 % of the pixels counts as much as
    the background covering 80 %."""
    log_probs = upsample_logits(logits, tuple(targets.shape[-2:])).log_softmax(dim=1)
    valid = targets != NO_TARGET
    count = valid.sum()
    if int(count) == 0:
        return log_probs.sum() * 0.0  # keeps the graph (and DDP-style hooks) without a NaN
    nll = -group_log_likelihood(log_probs, targets, groups)
    if not balanced:
        return nll.sum() / count
    present = [g for g in targets.unique().tolist() if g != NO_TARGET]
    return torch.stack([nll[targets == g].mean() for g in present]).mean()


@torch.no_grad()
def agreement(logits: torch.Tensor, targets: torch.Tensor, groups: SlotGroups) -> tuple[int, int]:
    """(target pixels whose argmax channel is in their target group, target pixels): how well a model fits the
    corrections, at the targets' resolution."""
    channel = upsample_logits(logits, tuple(targets.shape[-2:])).argmax(dim=1)
    membership = torch.zeros(len(groups.members), logits.shape[1], dtype=torch.bool, device=logits.device)
    for g, channels in enumerate(groups.members):
        membership[g, list(channels)] = True
    valid = targets != NO_TARGET
    hit = membership[targets.clamp_min(0).long(), channel] & valid
    return int(hit.sum()), int(valid.sum())


def refine_losses(model: MPAE, pixels: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor,
                  groups: SlotGroups, supervised_weight: float, perceptual: nn.Module | None,
                  balanced: bool = False) -> TrainingOutput:
    """MPAE losses on the whole batch plus the supervised term on its first ``len(targets)`` images.

    ``pixels`` are ImageNet-normalised [B, 3, S, S], ``tokens`` the cached backbone tokens [B, D, h, w] of the same
    pixels; ``perceptual=None`` runs the five constraint terms without the reconstruction term.
    """
    features = model.compress_tokens(tokens)
    descriptors = model.partformer(pixels).float()
    logits = model.match(descriptors, features)
    out = model.losses_from_outputs(pixels, logits, descriptors, features, perceptual)
    supervised = supervised_loss(logits[: targets.shape[0]], targets, groups, balanced)
    out.losses["mpae_total"] = out.losses["total"]
    out.losses["supervised"] = supervised
    out.losses["total"] = out.losses["total"] + supervised_weight * supervised
    return out

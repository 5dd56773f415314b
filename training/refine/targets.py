"""A person's corrections as per-pixel targets in the model's slots (the supervised half of refinement).

Label values (``mpae_core.annotation.labels``) map to *target groups*, sets of model channels whose summed probability
the supervised term raises:

* ``k + 1`` (slot k) → the whole group of k's root, ``members(root(k))``: a merged label is one part to the person, so
  the model may spread it over any of its member slots (loss = −log Σ_{q ∈ group} p_q). A slot the person set to
  *export as background* is still the slot they confirmed: that changes the export, not the target.
* ``0`` (background) → the background channel alone (the model's last channel).
* user-added labels (``USER_LABEL_BASE`` ≤ v < ``IGNORE_LABEL``: no slot), ``IGNORE_LABEL`` ("don't care") and
  ``UNSET`` (not edited) → no target.

Which pixels are corrected: every pixel of a *reviewed* image (the unedited ones are predictions the person
confirmed, so its composed label map is the target) and the edited pixels of an *edited* image that was not
reviewed (its unedited pixels were never looked at, so they carry no target).

Targets are kept at the model's input resolution S×S, sampled with nearest (pixel centres) from the image-sized
label map: the same squash as the model's input, so target pixel (i, j) lies on input pixel (i, j).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mpae_core.annotation import AnnotationProject, ImageRecord, ImageStatus, PartTable
from mpae_core.annotation.labels import IGNORE_LABEL, UNSET, USER_LABEL_BASE
from mpae_core.errors import MPAEError

NO_TARGET = -1


@dataclass(frozen=True)
class SlotGroups:
    """The target groups of one part table: ``members[g]`` are the model channels group g sums (background last)."""

    members: tuple[tuple[int, ...], ...]
    value_to_group: np.ndarray  # [K + 1] int16: label value 0..K → group index

    @classmethod
    def from_parts(cls, parts: PartTable) -> "SlotGroups":
        k = parts.num_parts
        roots = sorted({parts.root(slot) for slot in range(k)})
        group_of_root = {root: g for g, root in enumerate(roots)}
        members = tuple(tuple(parts.members(root)) for root in roots) + ((k,),)  # background = channel K
        lut = np.empty(k + 1, dtype=np.int16)
        lut[0] = len(roots)
        for slot in range(k):
            lut[slot + 1] = group_of_root[parts.root(slot)]
        return cls(members, lut)

    @property
    def num_parts(self) -> int:
        return len(self.value_to_group) - 1

    @property
    def background(self) -> int:
        return len(self.members) - 1

    def channel_lut(self) -> torch.Tensor:
        """[G] the first channel of each group (the whole target for single-channel groups)."""
        return torch.tensor([m[0] for m in self.members], dtype=torch.long)

    def merged(self) -> list[tuple[int, tuple[int, ...]]]:
        """(group, channels) of the groups with more than one channel: the only ones needing a log-sum."""
        return [(g, m) for g, m in enumerate(self.members) if len(m) > 1]

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """Label values (uint16, UNSET for unconfirmed pixels) → int16 group indices, NO_TARGET where no loss."""
        labels = np.asarray(labels)
        k = self.num_parts
        out = np.full(labels.shape, NO_TARGET, dtype=np.int16)
        known = labels <= k
        out[known] = self.value_to_group[labels[known]]
        unknown = ~known & (labels < USER_LABEL_BASE)
        if unknown.any():
            value = int(labels[unknown].flat[0])
            raise ValueError(f"The label value {value} names slot {value - 1}, but the model has only {k} slots "
                             f"(values 0..{k}).")
        # user labels [USER_LABEL_BASE, IGNORE_LABEL), IGNORE_LABEL and UNSET stay NO_TARGET
        assert USER_LABEL_BASE < IGNORE_LABEL < UNSET
        return out


def sample_to_grid(labels: np.ndarray, size: int) -> np.ndarray:
    """[H, W] → [size, size] by nearest pixel centres: the label under each input pixel of the S×S squash."""
    height, width = labels.shape
    rows = np.minimum(((np.arange(size) + 0.5) * height / size).astype(np.intp), height - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * width / size).astype(np.intp), width - 1)
    return labels[rows[:, None], cols[None, :]]


def is_corrected(record: ImageRecord) -> bool:
    """A person looked at it: reviewed (every pixel confirmed) or edited (the edited pixels)."""
    return record.has_work


def corrected_label_values(project: AnnotationProject, record: ImageRecord) -> np.ndarray:
    """[H, W] uint16 values at the image's size whose non-UNSET pixels are the person's corrections."""
    if record.status is ImageStatus.REVIEWED:
        return project.label_map(record.relpath)
    return project.edits(record.relpath).data  # UNSET where not edited: those pixels carry no target


def corrected_targets(project: AnnotationProject, record: ImageRecord, groups: SlotGroups, size: int) -> np.ndarray:
    """[size, size] int16 target groups of one corrected image (NO_TARGET where there is no loss)."""
    values = corrected_label_values(project, record)
    try:
        return groups.targets(sample_to_grid(values, size))
    except ValueError as exc:
        raise MPAEError(f"The corrections of '{record.relpath}' do not fit the model: {exc} Refine with the "
                        "project's own checkpoint.") from None


def target_counts(targets: np.ndarray) -> int:
    """Pixels that carry a target."""
    return int(np.count_nonzero(targets != NO_TARGET))


__all__ = ["NO_TARGET", "SlotGroups", "sample_to_grid", "is_corrected", "corrected_label_values", "corrected_targets",
           "target_counts", "IGNORE_LABEL", "UNSET"]

"""Everything refinement needs from a project, checked before anything is written.

The project is only read (the app owns its index and edits while it is open). Bad input stops here with one
sentence and nothing changed: no corrected image, a missing checkpoint, a checkpoint whose K differs from the
project's part table, a corrected image whose file vanished, cannot be read or changed size (its corrections no
longer sit on its pixels: restore the file, or clear its edits and review). An *uncorrected* image that vanished
or cannot be read is only left out, with a warning: it would have fed the unsupervised terms, and refusing to learn
from fifty corrected photos because an unrelated one was deleted would help nobody.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpae_core.annotation import AnnotationProject, ImageRecord, ImageStatus
from mpae_core.checkpoint import load_checkpoint, model_fingerprint, model_lineage
from mpae_core.errors import MPAEError
from mpae_core.images import ImageLoadError, image_size
from mpae_core.model import MPAE

from .targets import SlotGroups, corrected_targets, is_corrected, target_counts

logger = logging.getLogger(__name__)


class RefineInputError(MPAEError):
    """The project or the checkpoint cannot be refined as they are; the message says why and what to do."""


@dataclass
class CorrectedImage:
    relpath: str
    path: Path
    targets: np.ndarray  # [S, S] int16 target groups (targets.NO_TARGET where no loss)
    reviewed: bool


@dataclass
class RefineSession:
    project: AnnotationProject
    model: MPAE
    checkpoint: Path
    groups: SlotGroups
    corrected: list[CorrectedImage]
    pool: list[tuple[str, Path]]  # every usable image (relpath, file): the unsupervised terms' data
    lineage: list[str]  # fingerprints of the starting model and of the models it descends from, nearest first
    skipped: list[str] = field(default_factory=list)  # uncorrected images left out, with why

    @property
    def target_pixels(self) -> int:
        return sum(target_counts(c.targets) for c in self.corrected)


def _corrected_file(project: AnnotationProject, record: ImageRecord) -> Path:
    """The file of a corrected image, or a RefineInputError when it vanished, is unreadable or changed size."""
    path = project.image_path(record.relpath)
    what = "reviewed" if record.status is ImageStatus.REVIEWED else "corrected"
    try:
        width, height = image_size(path)
    except ImageLoadError as exc:
        raise RefineInputError(f"The {what} image '{record.relpath}' cannot be used ({exc.reason}); restore "
                               f"'{path}', or clear its edits and review in the app, then refine again.") from None
    if record.size is not None and tuple(record.size) != (height, width):
        raise RefineInputError(f"The {what} image '{record.relpath}' is now {width}×{height} but its corrections are "
                               f"{record.size[1]}×{record.size[0]}; restore the original file, or clear its edits "
                               "and review in the app, then refine again.")
    return path


def open_session(project_path: str | Path, checkpoint: str | Path | None = None, *,
                 backbone_weights: str | None = None, allow_random_backbone: bool = False) -> RefineSession:
    """Open the project and its model and gather the corrections; RefineInputError (nothing written) if unusable."""
    project = AnnotationProject.open(project_path, write=False)  # the app may hold the write lock: never needed
    records = list(project.records())
    corrected_records = [r for r in records if is_corrected(r)]
    if project.parts is None or not corrected_records:
        raise RefineInputError(f"The project '{project.project_dir}' has no corrected image yet: edit or review at "
                               "least one image, save, then refine.")
    chosen = Path(checkpoint) if checkpoint is not None else project.checkpoint
    if chosen is None:
        raise RefineInputError(f"The project '{project.project_dir}' names no checkpoint; pass the model it was "
                               "predicted with as --checkpoint.")
    if not chosen.is_file():
        raise RefineInputError(f"The checkpoint '{chosen}' does not exist; restore it or pass the project's model "
                               "as --checkpoint.")
    model = load_checkpoint(chosen, backbone_weights=backbone_weights, allow_random_backbone=allow_random_backbone)
    if model.cfg.num_parts != project.parts.num_parts:
        raise RefineInputError(f"The checkpoint '{chosen}' has {model.cfg.num_parts} part slots but the project's "
                               f"part table has {project.parts.num_parts}; refine with the checkpoint the project "
                               "was predicted with.")
    groups = SlotGroups.from_parts(project.parts)
    size = model.cfg.image_size
    corrected = []
    for record in corrected_records:
        path = _corrected_file(project, record)
        targets = corrected_targets(project, record, groups, size)
        if target_counts(targets):
            corrected.append(CorrectedImage(record.relpath, path, targets, record.status is ImageStatus.REVIEWED))
    if not corrected:
        raise RefineInputError(f"The corrections in '{project.project_dir}' only hold 'ignore' or labels the model "
                               "has no slot for, so there is nothing to learn; paint or review model parts first.")
    pool, skipped = [], []
    for record in records:
        path = project.image_path(record.relpath)
        if path.is_file():
            pool.append((record.relpath, path))
        else:
            skipped.append(record.relpath)
    if skipped:
        logger.warning("Leaving out %d image(s) whose files are gone (%s%s); they are not corrected, so the "
                       "refinement goes on without them.", len(skipped), ", ".join(skipped[:3]),
                       ", ..." if len(skipped) > 3 else "")
    lineage = [model_fingerprint(model), *model_lineage(model)]  # taken before any weight changes
    return RefineSession(project, model, chosen, groups, corrected, pool, lineage, skipped)

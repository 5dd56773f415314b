"""The batch's annotation project (``OUT/.mpae``): a batch run opens in the app for review without predicting again.

Where it lives: in OUT, with its ``images_folder`` pointing at IMAGES. OUT is the one folder a run may write (the
images folder is often read-only on a cluster); two runs with different checkpoints write different OUTs, so
each gets its own project; and a project a person keeps in ``IMAGES/.mpae`` is never touched by a batch. The app
opens OUT like any folder (``find_project_dir`` finds ``OUT/.mpae``, whose images live elsewhere).

What it holds: the project format of :class:`~mpae_core.annotation.AnnotationProject` — the checkpoint's part table
and path, the model's fingerprint (``adopt_model``), and per image a prediction file plus a record with the model
fingerprint and the image file's stamp as it was read. The logits are kept at float32, not rounded to float16 as
``set_prediction`` does: the masks and COCO this run writes come from the float32 logits, and rounding moves a few
boundary pixels, so only float32 makes the app show, and an export of unedited images give, exactly the batch's
masks (about 19 kB per image for 16 parts at a 16x16 grid; the project reads either precision).

Who writes what: the encoder processes write the prediction files (one small file per image, beside the PNG and
the RLE, off the model loop); the process holding the project records the index once the images are done — under
torchrun every rank hands in ``OUT/.mpae-batch/project.rank{r}.json`` and rank 0 records them after the barrier.

Safety: the run holds the project's write lock from before its first output until the index is written, so a
project open in the app (or in another run) makes the batch stop with one sentence before it writes anything. An
image a person edited or reviewed there is never predicted again, not even with ``--overwrite``. A project of
another model or image folder is started again only when no one put work into it (edits, reviews, part names);
otherwise the run is refused. A re-run predicts again what the project lacks or what changed on disk since.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

from ..annotation.lock import ProjectLock
from ..annotation.parts import PartTable
from ..annotation.project import AnnotationProject, ModelFit
from ..annotation.project_format import INDEX_NAME, PROJECT_DIRNAME
from ..annotation.project_recovery import write_prediction_file
from ..annotation.records import FileState, ImageRecord, compare_file, normalize_relpath
from ..annotation.storage import atomic_write_json
from ..checkpoint import model_fingerprint, model_lineage
from ..errors import MPAEError
from ..inference import PartPrediction
from .config import CACHE_DIR, CANCELLED, ERROR, OK, BatchConfig, BatchUsageError, ImageResult
from .listing import ImageItem

if TYPE_CHECKING:
    from .shards import Shard

logger = logging.getLogger(__name__)

PARTS_FILE = "project-parts.json"  # in OUT/.mpae-batch: the part table the batch gave the project


# ----- encoder side: one prediction file per image ----------------------------------------------------------------
@dataclass(frozen=True)
class PredictionFiles:
    """Writes images' predictions into the project folder; picklable, so each encoder process holds a copy."""

    project_dir: Path
    summary_size: tuple[int, int]  # the app's per-part summary size (the model's default output size)

    def write(self, relpath: str, logits: np.ndarray, size: tuple[int, int],
              stamp: tuple[int, int] | None) -> dict[str, Any]:
        """Write one image's prediction file; returns what its index record needs (JSON-ready)."""
        prediction = PartPrediction.from_logits(torch.from_numpy(np.asarray(logits, np.float32)), size,
                                                self.summary_size)
        write_prediction_file(self.project_dir / "predictions" / f"{normalize_relpath(relpath)}.npz", prediction,
                              torch.float32)
        return {"size": [int(size[0]), int(size[1])], "confidence": prediction.confidence,
                "present": [int(s) for s in np.flatnonzero(prediction.presence)],
                "stamp": None if stamp is None else [int(stamp[0]), int(stamp[1])]}


def record_written_prediction(project: AnnotationProject, relpath: str, stored: dict[str, Any],
                              model: str) -> None:
    """Record in the index a prediction file an encoder already wrote (only for images without a person's work)."""
    stamp = stored["stamp"]
    project.record_prediction(relpath, size=(int(stored["size"][0]), int(stored["size"][1])),
                              confidence=float(stored["confidence"]), present=stored["present"], model=model,
                              stamp=None if stamp is None else (int(stamp[0]), int(stamp[1])))


# ----- main process: the project of one run --------------------------------------------------------------------------
class BatchStore:
    """One rank's view of the batch's project: which images it must leave alone or may skip, and on rank 0 the
    project itself, whose write lock it holds from :meth:`open` to :meth:`close`."""

    def __init__(self, project: AnnotationProject, fingerprint: str, out: Path, summary_size: tuple[int, int],
                 shard: Shard) -> None:
        self.project = project  # rank 0: writable; the other ranks: a read-only view of what rank 0 prepared
        self.fingerprint = fingerprint
        self.out = out
        self.shard = shard
        self.files = PredictionFiles(project.project_dir, summary_size)

    @property
    def project_dir(self) -> Path:
        return self.project.project_dir

    @classmethod
    def open(cls, config: BatchConfig, items: Sequence[ImageItem], model, table: PartTable,
             shard: Shard) -> "BatchStore":
        """Rank 0 opens (or starts) ``OUT/.mpae`` and takes its write lock; the other ranks then read it. Raises
        BatchUsageError on every rank, before anything is written, when the run must not write there."""
        fingerprint = model_fingerprint(model)
        store_dir = config.out / PROJECT_DIRNAME
        failure: BaseException | None = None
        message = None
        project = None
        if shard.rank == 0:
            try:
                project = _prepare(config, items, model, table, fingerprint)
            except BatchUsageError as exc:
                failure, message = exc, str(exc)
            except BaseException as exc:  # the other ranks must not wait at the broadcast for a rank 0 that died
                failure, message = exc, f"rank 0 could not prepare the project in '{store_dir}': {exc}"
        message = _agree(shard, message)
        if failure is not None:
            raise failure
        if message is not None:
            raise BatchUsageError(message)
        if project is None:
            project = AnnotationProject.open(store_dir, write=False)
        return cls(project, fingerprint, config.out, model.cfg.default_output_size, shard)

    # ----- which images the run predicts ---------------------------------------------------------------------
    def leaves_alone(self, relpath: str) -> bool:
        """A person edited or reviewed this image in the project: the batch never predicts it again."""
        record = self._record(relpath)
        return record is not None and record.has_work

    def holds(self, item: ImageItem) -> bool:
        """The project has this model's prediction of the file as it is now (so a re-run may skip it)."""
        record = self._record(item.relpath)
        return (record is not None and record.has_prediction and record.model in (None, self.fingerprint)
                and compare_file(Path(item.path), record) is FileState.UNCHANGED)

    def left_alone_error(self, relpath: str) -> ImageResult:
        """The report line of an image left alone that no earlier run made outputs for: where its annotation is."""
        return ImageResult(relpath, ERROR, f"'{relpath}' was edited or reviewed in '{self.project_dir}' before a "
                           "batch made its mask; the batch leaves it alone: export it from the app.")

    def _record(self, relpath: str) -> ImageRecord | None:
        return self.project.record(relpath) if relpath in self.project else None

    # ----- recording the run ------------------------------------------------------------------------------------
    def hand_in(self, results: Iterable[ImageResult]) -> None:
        """This rank's results: recorded at once on rank 0, handed to rank 0 through a file by the others."""
        entries = [{"file": r.file, "status": r.status, "error": r.error, "stored": r.stored} for r in results]
        if self.shard.rank == 0:
            self._record_entries(entries)
        else:
            atomic_write_json(self._rank_file(self.shard.rank), entries, fsync=False, indent=None)

    def merge_ranks(self) -> None:
        """Rank 0, after the barrier: record what the other ranks handed in, then remove their files."""
        for rank in range(1, self.shard.world_size):
            path = self._rank_file(rank)
            self._record_entries(json.loads(path.read_text(encoding="utf-8")))
            path.unlink()

    def close(self) -> None:
        """Rank 0: write the index and give the lock back (also after a failure: what was recorded stays)."""
        if self.shard.rank == 0:
            self.project.close()

    def _record_entries(self, entries: Iterable[dict[str, Any]]) -> None:
        project = self.project
        for entry in entries:
            relpath = entry["file"]
            if self.leaves_alone(relpath):
                continue
            if entry["status"] == OK and entry["stored"] is not None:
                record_written_prediction(project, relpath, entry["stored"], self.fingerprint)
            elif entry["status"] == ERROR:
                project.set_error(relpath, entry["error"])
            elif entry["status"] == CANCELLED or relpath not in project:
                project.add_image(relpath)

    def _rank_file(self, rank: int) -> Path:
        return self.out / CACHE_DIR / f"project.rank{rank}.json"


def _agree(shard: Shard, message: str | None) -> str | None:
    """Rank 0's verdict on the project, on every rank (no-op without torchrun)."""
    if not shard.distributed:
        return message
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _prepare(config: BatchConfig, items: Sequence[ImageItem], model, table: PartTable,
             fingerprint: str) -> AnnotationProject:
    """Open or start the project with its write lock, make it this run's, list every image and save it."""
    store_dir = config.out / PROJECT_DIRNAME
    images = config.images.resolve()
    try:
        if (store_dir / INDEX_NAME).is_file():
            project = AnnotationProject.open(store_dir)
            if project.read_only is not None:
                project.close()
                raise BatchUsageError(f"The project in '{store_dir}' is open in "
                                      f"{ProjectLock(store_dir).describe_holder()}; close it there and run the batch "
                                      "again.")
            if not _belongs(project, images, model, fingerprint):
                project = _start_again(project, config, table)
        else:
            project = _create(config, table)
    except (MPAEError, OSError) as exc:
        if isinstance(exc, BatchUsageError):
            raise
        raise BatchUsageError(f"Cannot write the project in '{store_dir}': {exc}") from None
    try:
        if project.parts is None:
            project.adopt_model(fingerprint, parts=table)
            _save_parts(config.out, table)
        else:
            project.adopt_model(fingerprint)
        if config.checkpoint is not None:
            project.set_checkpoint(config.checkpoint.resolve())
        for item in items:
            if item.relpath not in project:
                project.add_image(item.relpath)
        project.save()
    except BaseException as exc:
        with contextlib.suppress(MPAEError, OSError):
            project.close()  # gives the lock back even when this save fails too
        if isinstance(exc, (MPAEError, OSError)):
            raise BatchUsageError(f"Cannot write the project in '{store_dir}': {exc}") from None
        raise
    return project


def _create(config: BatchConfig, table: PartTable) -> AnnotationProject:
    project = AnnotationProject.create(config.images.resolve(), project_dir=config.out / PROJECT_DIRNAME,
                                       parts=table, recursive=config.recursive, scan=False)
    _save_parts(config.out, table)
    return project


def _belongs(project: AnnotationProject, images: Path, model, fingerprint: str) -> bool:
    """The project is of these images and its part table names this model's slots."""
    fit = project.model_fit(model.cfg.num_parts, fingerprint, model_lineage(model))
    return project.images_folder.resolve() == images and fit in (ModelFit.FITS, ModelFit.NO_TABLE)


def _start_again(project: AnnotationProject, config: BatchConfig, table: PartTable) -> AnnotationProject:
    """Replace a project of another model or image folder, as the run replaces its masks; refused when a person
    put work into it. Its predictions go (they would be adopted again as this model's); refined models stay."""
    store_dir = project.project_dir
    if _has_persons_work(project, config.out):
        project.close()
        raise BatchUsageError(f"'{store_dir}' holds a person's edits, reviews or part names for another model or "
                              "image folder; write this run to another --out folder (that work stays where it is).")
    logger.warning("Starting the project in %s again: it was made for another model or image folder.", store_dir)
    shutil.rmtree(store_dir / "predictions", ignore_errors=True)
    project.index_path.unlink(missing_ok=True)
    project.read_only = "replaced by this run"  # close() then only gives the lock back, for create() to take
    project.close()
    return _create(config, table)


def _has_persons_work(project: AnnotationProject, out: Path) -> bool:
    """Edits, reviews, user labels, or a part table other than the one the batch gave the project."""
    if any(record.has_work for record in project.records()):
        return True
    if project.parts is None:
        return False
    try:
        saved = json.loads((out / CACHE_DIR / PARTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # unknown origin: treat the names as a person's
    return project.parts.to_dict() != saved


def _save_parts(out: Path, table: PartTable) -> None:
    atomic_write_json(out / CACHE_DIR / PARTS_FILE, table.to_dict(), fsync=False)

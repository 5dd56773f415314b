"""The one import loop under ``mpae-annotate import`` and the app's File ▸ Import: a source → the project's edits.

Each imported mask becomes the image's edit layer, every pixel set (the import is the person's annotation, so a
later prediction never replaces it), as one undo step. An image that already has edits or a review is kept as it
is unless ``replace`` says otherwise. One image's mask is in memory at a time; the index is saved every few seconds,
so a crash loses at most the last ones. Every image that cannot be imported gets one sentence in the report and the
import goes on.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable

import numpy as np

from ...errors import MPAEError
from ...images import ImageLoadError, image_size
from ..parts import PartTable
from ..project import AnnotationProject
from .matching import ImageMatcher, LabelMatch, apply_plan, plan_labels
from .source import AnnotationReadError, ImportSource, check_size

logger = logging.getLogger(__name__)

SAVE_EVERY_S = 5.0


@dataclass
class SkippedImage:
    """An annotation that was not imported: ``name`` as the source calls it, ``reason`` one sentence."""

    name: str
    reason: str
    relpath: str | None = None  # the project image, when one was found
    kept: bool = False  # True: the image had work of its own and was left as it was (not a failure)


@dataclass
class ImportReport:
    format: str
    source: str
    labels: list[LabelMatch] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # new user labels
    imported: list[str] = field(default_factory=list)  # project relpaths
    skipped: list[SkippedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # "'x.json': 2 line shapes left out"
    cancelled: bool = False

    @property
    def failed(self) -> list[SkippedImage]:
        return [s for s in self.skipped if not s.kept]

    @property
    def kept(self) -> list[SkippedImage]:
        return [s for s in self.skipped if s.kept]

    def summary(self, into: str | os.PathLike | None = None) -> str:
        """One line: what was imported (into the folder ``into``, when given), skipped and kept."""
        where = f" into {into}" if into is not None else ""
        parts = [f"Imported {len(self.imported)} image{'s' if len(self.imported) != 1 else ''}{where} from "
                 f"{self.source}"]
        if self.failed:
            parts.append(f"{len(self.failed)} not imported")
        if self.kept:
            parts.append(f"{len(self.kept)} kept as they were (already annotated)")
        if self.created:
            parts.append(f"{len(self.created)} new label{'s' if len(self.created) != 1 else ''}")
        return ", ".join(parts) + (" (cancelled)" if self.cancelled else "") + "."


@dataclass
class ImportPreview:
    """What an import would do, from metadata only (the dialog shows it before anything changes)."""

    format: str
    source: str
    labels: list[LabelMatch]
    annotated: int = 0  # annotated images in the source
    matched: int = 0  # of which the project has the photo
    with_work: int = 0  # of which already edited or reviewed (kept unless replacing)
    not_found: list[str] = field(default_factory=list)  # one sentence each


def preview_import(source: ImportSource, relpaths: Iterable[str], parts: PartTable | None, *,
                   with_work: Collection[str] = (), images_folder: str | os.PathLike | None = None,
                   should_stop: Callable[[], bool] | None = None) -> ImportPreview:
    """Labels and image matches of ``source`` for a project with these images and table; reads no pixels and takes
    plain data (not the project), so it may run on a worker thread."""
    preview = ImportPreview(source.format, source.describe(), plan_labels(source.labels, parts))
    matcher = ImageMatcher(relpaths, None if images_folder is None else Path(images_folder))
    with_work = set(with_work)
    for item in source.images():
        if should_stop is not None and should_stop():
            break
        preview.annotated += 1
        found = matcher.match(item.names, item.path)
        if found.relpath is None:
            preview.not_found.append(f"{item.origin}: {found.problem}")
            continue
        preview.matched += 1
        preview.with_work += found.relpath in with_work
    return preview


class ImportCancelled(Exception):
    """Raised by an ``on_image`` callback to stop the import (what was imported stays)."""


def import_annotations(source: ImportSource, project: AnnotationProject, *, replace: bool = False,
                       reviewed: bool = False, on_image: Callable[[int, str], None] | None = None) -> ImportReport:
    """Import every annotated image of ``source`` into ``project`` (see the module docstring).

    ``on_image(done, name)`` runs after each annotation (progress; raise :class:`ImportCancelled` in it to stop).
    A read-only project is refused with :class:`MPAEError`.
    """
    if project.read_only is not None:
        raise MPAEError(f"Cannot import into '{project.project_dir}': {project.read_only}.")
    report = ImportReport(source.format, source.describe())
    if project.parts is None:
        project.set_parts(PartTable.empty())
    report.labels, report.created = apply_plan(plan_labels(source.labels, project.parts), project.parts)
    lut = np.zeros(max([m.source.key for m in report.labels], default=0) + 1, dtype=np.uint16)
    for match in report.labels:
        lut[match.source.key] = match.value
    project.save()  # the new labels are on disk before any edit that paints with them
    matcher = ImageMatcher(project.relpaths(), project.images_folder)
    done_from: dict[str, str] = {}
    last_save = time.monotonic()
    done = 0
    try:
        for item in source.images():
            relpath = _import_one(item, project, matcher, lut, done_from, report, replace=replace,
                                  reviewed=reviewed)
            if relpath is not None:
                report.imported.append(relpath)
            done += 1
            if time.monotonic() - last_save > SAVE_EVERY_S:
                project.save()
                last_save = time.monotonic()
            if on_image is not None:
                on_image(done, item.origin)
    except ImportCancelled:
        report.cancelled = True
    finally:
        project.save()
    logger.info("%s", report.summary())
    return report


def _import_one(item, project: AnnotationProject, matcher: ImageMatcher, lut: np.ndarray, done_from: dict[str, str],
                report: ImportReport, *, replace: bool, reviewed: bool) -> str | None:
    """Import one annotation; returns the relpath, or None after adding the reason to the report."""
    def skip(reason: str, kept: bool = False) -> None:
        report.skipped.append(SkippedImage(item.origin, reason, relpath, kept))

    found = matcher.match(item.names, item.path)
    relpath = found.relpath
    if relpath is None:
        skip(f"{item.origin}: {found.problem}")
        return None
    if relpath in done_from:
        skip(f"{item.origin} is for '{relpath}', which {done_from[relpath]} already gave; only the first was "
             "imported.")
        return None
    record = project.record(relpath)
    if record.has_work and not replace:
        skip(f"'{relpath}' already has {'edits' if record.has_edits else 'a review'}; it was kept as it was (choose "
             "Replace to overwrite it with the import).", kept=True)
        return None
    try:
        width, height = image_size(project.image_path(relpath))
    except ImageLoadError as exc:
        skip(str(exc))
        return None
    size = (height, width)
    if record.has_prediction and record.size is not None and record.size != size:
        skip(f"'{relpath}' changed since it was predicted ({record.size[1]}×{record.size[0]}, now {width}×{height}); "
             "predict it again, then import.")
        return None
    notes: list[str] = []
    try:
        check_size(item.origin, item.size, size)
        keys = item.read(size, notes)
    except AnnotationReadError as exc:
        skip(str(exc))
        return None
    if keys.shape != size:
        skip(f"{item.origin} gave a {keys.shape[1]}×{keys.shape[0]} mask for a {width}×{height} photo; it was not "
             "imported.")
        return None
    values = lut[keys]
    del keys
    try:
        project.add_image(relpath, size)
        project.edits(relpath).set_all(values)  # one undo step
    except (MPAEError, ValueError) as exc:
        skip(f"'{relpath}': {exc}")
        return None
    if reviewed:
        project.mark_reviewed(relpath)
    done_from[relpath] = item.origin
    if notes:
        report.notes.append(f"{item.origin}: {'; '.join(notes)}.")
    return relpath
